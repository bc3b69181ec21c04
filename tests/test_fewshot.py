"""Few-shot linear evaluation: closed-form least squares against explicit formulas."""

import numpy as np
import pytest

from keras_vit.training.fewshot import BIAS_CONSTANT, fewshot, lsr_accuracy


def _whitened(x, reference):
    mean, std = reference.mean(0, keepdims=True), reference.std(0, keepdims=True) + 1e-5
    return np.pad((x - mean) / std, ((0, 0), (0, 1)), constant_values=BIAS_CONSTANT)


@pytest.mark.parametrize("n", [40, 6])  # more points than features, and fewer (the dual form)
def test_least_squares_matches_the_normal_equations(n):
    rng = np.random.default_rng(n)
    x, x_test = rng.normal(size=(n, 12)), rng.normal(size=(200, 12))
    y, y_test = rng.integers(0, 3, n), rng.integers(0, 3, 200)
    l2 = 3.0
    a = _whitened(x, x)
    w = np.linalg.inv(a.T @ a + l2 * np.eye(a.shape[1])) @ a.T @ (2.0 * np.eye(3)[y] - 1.0)
    expected = np.mean(np.argmax(_whitened(x_test, x) @ w, 1) == y_test)
    assert lsr_accuracy(x, y, x_test, y_test, 3, l2) == pytest.approx(expected)


def test_fewshot_draws_shots_per_class_and_seed():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 16)) * 4
    train_y, test_y = np.repeat(np.arange(4), 30), np.repeat(np.arange(4), 20)
    train_x = centers[train_y] + rng.normal(size=(120, 16))
    test_x = centers[test_y] + rng.normal(size=(80, 16))
    results = fewshot(train_x, train_y, test_x, test_y, 4, shots=(1, 5, 25), seeds=3)
    assert sorted(results) == [1, 5, 25] and all(len(v) == 3 for v in results.values())
    assert np.mean(results[25]) == 1.0  # well-separated classes
    assert len(set(results[1])) > 1 or results[1][0] == 1.0  # the seeds draw different shots
    noise = fewshot(rng.normal(size=(120, 16)), train_y, test_x, test_y, 4, shots=(5,), seeds=2)
    assert np.mean(noise[5]) < 0.6  # features that carry nothing give about chance (0.25)
