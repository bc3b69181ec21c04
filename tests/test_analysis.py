"""The analyses, checked on cases with a known answer."""

import csv
import itertools
import json

import numpy as np
import pytest

from keras_vit import analysis, cli
from keras_vit.models import ResNetV2, ViT, create_model

SMALL = dict(
    image_size=32,
    patch_size=8,
    hidden_size=64,
    num_layers=2,
    num_heads=4,
    mlp_dim=128,
    num_classes=10,
)


def randomized(model, seed=0):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.normal(size=w.shape).astype("float32") * 0.2)
    return model


def images(n=2, size=32, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype("float32")


def test_uniform_attention_gives_the_mean_pairwise_distance():
    grid, patch, prefix = (3, 4), 16, 1
    tokens = prefix + 12
    uniform = np.full((2, 3, tokens, tokens), 1.0 / tokens)
    coords = [(r * patch, c * patch) for r in range(3) for c in range(4)]
    expected = np.mean(
        [np.hypot(a[0] - b[0], a[1] - b[1]) for a, b in itertools.product(coords, coords)]
    )
    result = analysis.mean_attention_distance(uniform, patch, prefix, grid)
    np.testing.assert_allclose(result, [expected] * 3, rtol=1e-12)


def test_attention_to_itself_gives_zero_distance():
    self_only = np.broadcast_to(np.eye(17), (1, 2, 17, 17))
    np.testing.assert_array_equal(analysis.mean_attention_distance(self_only, 16), [0.0, 0.0])


def test_attention_to_the_right_neighbour_is_one_patch():
    grid = (2, 2)
    attention = np.zeros((1, 1, 4, 4))
    for q, k in [(0, 1), (1, 0), (2, 3), (3, 2)]:  # each patch looks at its row neighbour
        attention[0, 0, q, k] = 1.0
    np.testing.assert_allclose(analysis.mean_attention_distance(attention, 14, 0, grid), [14.0])


def test_rollout_of_identity_attention_keeps_each_token_on_itself():
    identity = [np.broadcast_to(np.eye(10), (2, 3, 10, 10))] * 4
    np.testing.assert_allclose(
        analysis.rollout_matrix(identity), np.broadcast_to(np.eye(10), (2, 10, 10))
    )
    gap_map = analysis.attention_rollout(
        [np.broadcast_to(np.eye(9), (1, 2, 9, 9))], num_prefix_tokens=0
    )
    np.testing.assert_allclose(gap_map, np.full((1, 3, 3), 1 / 9))


def test_rollout_multiplies_through_the_layers():
    rng = np.random.default_rng(0)
    layers = [rng.dirichlet(np.ones(5), size=(1, 2, 5)) for _ in range(3)]
    expected = np.eye(5)
    for a in layers:
        mixed = 0.5 * a[0].mean(axis=0) + 0.5 * np.eye(5)  # rows of a sum to one
        expected = mixed @ expected
    np.testing.assert_allclose(analysis.rollout_matrix(layers)[0], expected, rtol=1e-12)
    np.testing.assert_allclose(
        analysis.attention_rollout(layers)[0].ravel(), expected[0, 1:], rtol=1e-6
    )


def test_one_hot_position_embeddings_are_dissimilar():
    similarity = analysis.cosine_similarity_grid(np.eye(6), (2, 3))
    np.testing.assert_allclose(similarity.reshape(6, 6), np.eye(6))


def test_sine_cosine_position_embeddings():
    positions, dim = 12, 16
    frequencies = 1.0 / 100 ** (np.arange(dim // 2) / (dim // 2))
    angles = np.arange(positions)[:, None] * frequencies[None]
    embeddings = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
    similarity = analysis.cosine_similarity_grid(embeddings, (3, 4)).reshape(12, 12)
    delta = np.arange(positions)[:, None] - np.arange(positions)[None]
    expected = np.cos(delta[..., None] * frequencies).mean(axis=-1)
    np.testing.assert_allclose(similarity, expected, atol=1e-12)


def test_model_position_similarity_uses_the_patch_grid():
    model = randomized(ViT(**dict(SMALL, image_size=(32, 48))))
    similarity = analysis.position_embedding_similarity(model)
    assert similarity.shape == (4, 6, 4, 6)
    np.testing.assert_allclose(similarity[1, 2, 1, 2], 1.0, rtol=1e-6)
    posemb = np.asarray(model.get_layer("Transformer").posembed_input.pos_embedding)[0, 1:]
    a, b = posemb[0], posemb[7]  # positions (0, 0) and (1, 1)
    np.testing.assert_allclose(
        similarity[0, 0, 1, 1], a @ b / np.linalg.norm(a) / np.linalg.norm(b), rtol=1e-5
    )


def test_pca_recovers_known_components():
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.normal(size=(4 * 4 * 3, 3)))
    coefficients = rng.normal(size=(500, 3)) * np.array([9.0, 4.0, 1.0])
    kernel = (coefficients @ basis.T).T.reshape(4, 4, 3, 500)
    components, explained = analysis.principal_filters(kernel, num_components=3)
    for found, true in zip(components.reshape(3, -1), basis.T):
        assert abs(found @ true) > 0.999
    assert explained[0] > explained[1] > explained[2]
    np.testing.assert_allclose(explained.sum(), 1.0, rtol=1e-9)


def test_attention_weights_are_the_models_own():
    model = randomized(ViT(**SMALL))
    x = images()
    weights = analysis.attention_weights(model, x)
    assert [w.shape for w in weights] == [(2, 4, 17, 17)] * 2
    np.testing.assert_allclose(weights[0].sum(-1), 1.0, rtol=1e-5)
    # Recompute the first block's attention output from the returned weights.
    import keras

    encoder = model.get_layer("Transformer")
    tokens = encoder.posembed_input(keras.Model(model.input, encoder.input)(x))
    block = encoder.blocks[0]
    normed = block.norm_0(tokens)
    value = np.asarray(block.attention.value(normed))
    context = np.einsum("bhqk,bkhd->bqhd", weights[0], value)
    expected = np.asarray(block.attention(normed))
    np.testing.assert_allclose(
        np.asarray(block.attention.out(context)), expected, rtol=1e-4, atol=1e-5
    )


def test_bad_inputs_fail_clearly():
    with pytest.raises(ValueError, match="no attention layers"):
        analysis.attention_weights(ResNetV2(layers=(1,), width=0.5, image_size=32), images())
    with pytest.raises(ValueError, match=r"images must be \[batch, 32, 32, 3\]"):
        analysis.attention_weights(ViT(**SMALL), images(size=48))
    with pytest.raises(ValueError, match="not a square"):
        analysis.mean_attention_distance(np.ones((1, 1, 7, 7)) / 7, 16, 1)


@pytest.mark.parametrize(
    "config",
    [
        dict(SMALL),
        dict(SMALL, classifier="gap", image_size=(32, 48)),
        dict(SMALL, patch_size=2, resnet_layers=()),
        dict(SMALL, distilled=True, num_register_tokens=3, no_embed_class=True),
        dict(SMALL, classifier="map", posemb="sincos2d"),
    ],
    ids=["token", "gap-non-square", "hybrid", "distilled-registers", "map-sincos2d"],
)
def test_analyze_writes_figures_and_numbers(tmp_path, config):
    model = randomized(ViT(**config))
    size = model.input_shape[1:3]
    x = np.random.default_rng(0).uniform(-1, 1, (2, *size, 3)).astype("float32")
    summary = analysis.analyze(model, x, str(tmp_path), ["a.png", "b.png"])
    for name in (
        "attention_rollout",
        "mean_attention_distance",
        "position_embedding_similarity",
        "embedding_filters",
    ):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(tmp_path / "mean_attention_distance.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 4
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["grid"] == summary["grid"]
    assert np.array(written["attention_rollout"]).shape == (2, *summary["grid"])
    assert summary["effective_patch_size"] == 8
    filters = np.array(written["embedding_filters_explained_variance"])
    assert np.all(np.diff(filters) <= 1e-12)


def test_cli_analyze(tmp_path, capsys):
    import tensorflow as tf

    model = randomized(create_model("ViT-Mu/16", image_size=32, num_classes=10))
    model.save(tmp_path / "model.keras")
    png = tf.io.encode_png(
        np.random.default_rng(0).integers(0, 256, (50, 40, 3), dtype=np.uint8)
    ).numpy()
    (tmp_path / "x.png").write_bytes(png)
    argv = [
        "analyze",
        "--model",
        str(tmp_path / "model.keras"),
        "--images",
        str(tmp_path / "x.png"),
        "--out",
    ]
    assert cli.main([*argv, str(tmp_path / "out")]) == 0
    assert "wrote the analyses of 1 images" in capsys.readouterr().out
    assert (tmp_path / "out" / "attention_rollout.png").exists()
    assert (
        cli.main(
            [
                "analyze",
                "--model",
                "BiT-R50x1",
                "--image-size",
                "32",
                "--images",
                str(tmp_path / "x.png"),
                "--out",
                str(tmp_path / "bit"),
            ]
        )
        == 2
    )
    assert "no attention layers" in capsys.readouterr().err
    assert not (tmp_path / "bit").exists()


@pytest.mark.parametrize(
    "options, prefix",
    [
        (dict(), 1),
        (dict(classifier="gap"), 0),
        (dict(distilled=True), 2),
        (dict(num_register_tokens=4, no_embed_class=True), 5),
        (dict(classifier="map", posemb="sincos2d"), 0),
    ],
)
def test_any_number_of_prefix_tokens(options, prefix):
    model = randomized(ViT(**SMALL, **options))
    assert analysis.num_prefix_tokens(model) == prefix
    x = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)).astype("float32")
    attentions = analysis.attention_weights(model, x)
    assert attentions[0].shape[-1] == prefix + 16
    assert analysis.attention_rollout(attentions, prefix).shape == (1, 4, 4)
    similarity = analysis.position_embedding_similarity(model)
    np.testing.assert_allclose(np.einsum("ijij->ij", similarity), 1.0, rtol=1e-6)
