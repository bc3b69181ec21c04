"""``from_checkpoint``: the architecture read off a checkpoint, then loaded.

Parity tolerance as tests/test_parity.py (ViT, 1e-5) and tests/test_resnet.py
(hybrid and BiT, 5e-5): max|ours - reference| / max|reference| in float32.
"""

import logging

import numpy as np
import pytest

from keras_vit.checkpoints import CheckpointError, load_npz, save_npz
from keras_vit.models import ResNetV2, ViT, from_checkpoint

from .conftest import TINY, fixture_path, load_fixture, relative_error


def encoder(model):
    return model.get_layer("Transformer").get_config()


def randomise(model, seed=0):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.normal(size=w.shape).astype("float32") * 0.05)
    return model


@pytest.mark.parametrize(
    "params, io, overrides, tolerance, count, gelu",
    [
        ("official_tiny_vit.params.npz", "official_tiny_vit.io.npz", {}, 1e-5, 118_090, True),
        (
            "official_tiny_hybrid_rootonly.params.npz",
            "official_tiny_hybrid_rootonly.io.npz",
            {},
            5e-5,
            97_930,
            True,
        ),
        (
            "timm_tiny_vit.state_dict.npz",
            "timm_tiny_vit.io.npz",
            {"num_heads": 2},
            1e-5,
            118_090,
            False,
        ),
        (
            "timm_bit_resnetv2_l1111_x0p5.state_dict.npz",
            "timm_bit_resnetv2_l1111_x0p5.io.npz",
            {"image_size": 64},
            5e-5,
            2_017_578,
            None,
        ),
    ],
)
def test_fixture_families(params, io, overrides, tolerance, count, gelu):
    model = from_checkpoint(fixture_path(params), **overrides)
    io = load_fixture(io)
    assert model.count_params() == count
    assert relative_error(model.predict(io["input_nhwc"], verbose=0), io["logits"]) <= tolerance
    if gelu is not None:
        assert encoder(model)["approximate_gelu"] is gelu
        assert encoder(model)["num_heads"] == 2


def test_official_vit_architecture():
    model = from_checkpoint(fixture_path("official_tiny_vit.params.npz"))
    reference = ViT(**TINY)
    assert model.input.shape == (None, 64, 64, 3)
    assert encoder(model) | {"name": None} == encoder(reference) | {"name": None}
    assert [w.shape for w in model.weights] == [w.shape for w in reference.weights]


# BiT checkpoints do not record an image size, so the BiT case passes it.
ROUND_TRIPS = {
    "vit-gap-pre_logits": (
        dict(image_size=32, patch_size=8, hidden_size=64, num_layers=1, num_heads=4, mlp_dim=96),
        dict(num_classes=7, classifier="gap", representation_size=32),
        {},
    ),
    "hybrid": (
        dict(image_size=32, patch_size=2, hidden_size=32, num_layers=1, num_heads=2, mlp_dim=64),
        dict(num_classes=3, resnet_layers=(1, 2)),
        {},
    ),
    "bit": (
        dict(layers=(1, 2), width=0.5, image_size=32),
        dict(num_classes=5),
        {"image_size": 32},
    ),
}


@pytest.mark.parametrize("case", ROUND_TRIPS)
def test_save_npz_round_trip(tmp_path, case):
    config, more, overrides = ROUND_TRIPS[case]
    source = randomise((ResNetV2 if case == "bit" else ViT)(**config, **more))
    save_npz(source, tmp_path / "model.npz")
    model = from_checkpoint(tmp_path / "model.npz", **overrides)
    assert model.input.shape == source.input.shape
    assert [w.path for w in model.weights] == [w.path for w in source.weights]
    x = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), source.predict(x, verbose=0))


def test_digits_sized_model_keeps_its_four_heads(tmp_path):
    source = randomise(ViT(**dict(TINY, image_size=32, num_heads=4)))
    save_npz(source, tmp_path / "model.npz")
    model = from_checkpoint(tmp_path / "model.npz")
    assert encoder(model)["num_heads"] == 4
    assert encoder(model)["approximate_gelu"] is True


def test_overrides_fine_tune_as_load_npz_does(caplog):
    path = fixture_path("official_tiny_vit.params.npz")
    with caplog.at_level(logging.WARNING, logger="keras_vit"):
        model = from_checkpoint(path, image_size=96, num_classes=5)
    assert "5 classes" in caplog.text and "resampled" in caplog.text
    assert np.all(np.array(model.get_layer("head").kernel) == 0)
    reference = ViT(**dict(TINY, image_size=96, num_classes=5))
    load_npz(reference, path)
    for ours, theirs in zip(model.weights, reference.weights):
        np.testing.assert_array_equal(np.array(ours), np.array(theirs), err_msg=ours.path)


def test_headless_and_gelu_overrides(caplog):
    path = fixture_path("official_tiny_vit.params.npz")
    with caplog.at_level(logging.WARNING, logger="keras_vit"):
        model = from_checkpoint(path, include_top=False, approximate_gelu=False)
    assert "tanh (approximate_gelu=True) GELU" in caplog.text
    assert model.output.shape == (None, 17, 64)


def test_non_square_grid_needs_the_image_size(tmp_path):
    source = randomise(ViT(**dict(TINY, image_size=(32, 64))))
    save_npz(source, tmp_path / "wide.npz")
    with pytest.raises(
        CheckpointError, match="8 position embeddings form no square grid: pass image_size="
    ):
        from_checkpoint(tmp_path / "wide.npz")
    model = from_checkpoint(tmp_path / "wide.npz", image_size=(32, 64))
    x = np.zeros((1, 32, 64, 3), "float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), source.predict(x, verbose=0))


def test_timm_vit_needs_num_heads():
    with pytest.raises(CheckpointError, match="do not record the number of heads: pass num_heads="):
        from_checkpoint(fixture_path("timm_tiny_vit.state_dict.npz"))
    with pytest.raises(CheckpointError, match="num_heads=3 does not divide"):
        from_checkpoint(fixture_path("timm_tiny_vit.state_dict.npz"), num_heads=3)


@pytest.mark.parametrize(
    "name",
    [
        "bigvision_tiny_vit_map_sincos.params.npz",
        "timm_tiny_vit_avgpool_fcnorm.state_dict.npz",
        "timm_tiny_deit_distilled.state_dict.npz",
    ],
)
def test_formerly_refused_families_load(name):
    # Parity and the layouts still refused: tests/test_checkpoint_families.py.
    model = from_checkpoint(fixture_path(name), num_heads=2, image_size=64)
    assert model.output.shape == (None, 10)


def test_unrecognised_and_bad_arguments(tmp_path):
    np.savez(tmp_path / "other.npz", **{"backbone.stem.0.weight": np.zeros((1, 1, 8))})
    with pytest.raises(CheckpointError, match="unrecognised checkpoint"):
        from_checkpoint(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="weights="):
        from_checkpoint(fixture_path("official_tiny_vit.params.npz"), weights="imagenet")
    with pytest.raises(
        CheckpointError, match=r"MultiHeadDotProductAttention_1/query/kernel: checkpoint"
    ):
        from_checkpoint(fixture_path("official_tiny_vit.params.npz"), num_heads=4)
