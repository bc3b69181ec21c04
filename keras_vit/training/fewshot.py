"""Few-shot linear evaluation (the paper's, as big_vision's ``fewshot_lsr`` evaluator).

Frozen features (the input of the ``head``) of ``shots`` training images per
class are whitened, given a constant bias feature of 100 (almost
unregularised), and fitted by closed-form L2-regularised least squares to
one-hot targets in {-1, 1}; accuracy is measured on the test split, for
several random draws of the shots.

Example:
    >>> import numpy as np
    >>> from keras_vit.training.fewshot import lsr_accuracy
    >>> rng = np.random.default_rng(0)
    >>> centers = rng.normal(size=(3, 8)) * 5
    >>> y = np.repeat(np.arange(3), 4); y_test = np.repeat(np.arange(3), 10)
    >>> x = centers[y] + rng.normal(size=(12, 8)); x_test = centers[y_test] + rng.normal(size=(30, 8))
    >>> float(lsr_accuracy(x, y, x_test, y_test, num_classes=3, l2_reg=1.0))
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from keras_vit.data import Source, eval_dataset

BIAS_CONSTANT = 100.0
L2_REG = 2.0**10  # big_vision's few-shot configs
SHOTS = (1, 5, 10, 25)


def lsr_accuracy(
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    num_classes: int,
    l2_reg: float = L2_REG,
) -> float:
    """Accuracy on ``(x_test, y_test)`` of least squares fitted on ``(x, y)``.

    Args:
        x: training features ``[n, d]``.
        y: integer labels ``[n]``.
        x_test: test features ``[m, d]``.
        y_test: test labels ``[m]``.
        num_classes: number of classes.
        l2_reg: L2 regularisation strength.

    Returns:
        The fraction of test examples classified correctly.
    """
    x, x_test = np.asarray(x, np.float64), np.asarray(x_test, np.float64)
    mean, std = x.mean(0, keepdims=True), x.std(0, keepdims=True) + 1e-5
    x, x_test = (x - mean) / std, (x_test - mean) / std
    x = np.pad(x, ((0, 0), (0, 1)), constant_values=BIAS_CONSTANT)
    x_test = np.pad(x_test, ((0, 0), (0, 1)), constant_values=BIAS_CONSTANT)
    targets = 2.0 * np.eye(num_classes)[np.asarray(y)] - 1.0
    n, d = x.shape
    if n >= d:  # (x^T x + l2 I)^-1 x^T y
        w = np.linalg.solve(x.T @ x + l2_reg * np.eye(d), x.T @ targets)
    else:  # x^T (x x^T + l2 I)^-1 y: the same solution, the smaller system
        w = x.T @ np.linalg.solve(x @ x.T + l2_reg * np.eye(n), targets)
    return float(np.mean(np.argmax(x_test @ w, axis=1) == np.asarray(y_test)))


def fewshot(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    num_classes: int,
    shots: Sequence[int] = SHOTS,
    seeds: int = 3,
    l2_reg: float = L2_REG,
) -> dict[int, list[float]]:
    """Few-shot accuracies of ``lsr_accuracy`` for several shot counts and draws.

    Each seed draws, per class, a random order of its training examples and
    takes the first ``shots`` (all of them when a class has fewer).

    Args:
        train_x: training features ``[n, d]`` to draw the shots from.
        train_y: their integer labels ``[n]``.
        test_x: test features ``[m, d]``.
        test_y: test labels ``[m]``.
        num_classes: number of classes.
        shots: training examples per class, one evaluation each.
        seeds: random draws per shot count.
        l2_reg: L2 regularisation strength.

    Returns:
        ``{shots: [accuracy of each seed]}``.
    """
    train_y = np.asarray(train_y)
    results: dict[int, list[float]] = {s: [] for s in shots}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        orders = [rng.permutation(np.flatnonzero(train_y == c)) for c in range(num_classes)]
        for s in shots:
            chosen = np.concatenate([order[:s] for order in orders])
            results[s].append(
                lsr_accuracy(train_x[chosen], train_y[chosen], test_x, test_y, num_classes, l2_reg)
            )
    return results


def extract_features(
    model: keras.Model, source: Source, split: str, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """The frozen features (the ``head``'s input) and labels of a whole split.

    Args:
        model: a classifier with a layer named ``head``.
        source: the dataset.
        split: the split, read once, in order (plain resize to the model's input).
        batch_size: images per batch.

    Returns:
        ``(features [n, d], integer labels [n])`` without padding examples.
    """
    features = keras.Model(model.inputs, model.get_layer("head").input)
    image_size = int(model.input_shape[1])
    xs, ys = [], []
    for images, labels, weights in eval_dataset(source, split, image_size, batch_size):
        keep = weights.numpy() > 0
        xs.append(np.asarray(features(images, training=False))[keep])
        ys.append(np.argmax(labels.numpy(), -1)[keep])
    return np.concatenate(xs), np.concatenate(ys)
