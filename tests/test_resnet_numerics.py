"""Per-source ResNet numerics: official BiT and timm's hybrid against float64 references.

No fixture holds these two sources, so each is checked against a float64 NumPy
forward pass written from the source's own code (``tests/resnet_reference.py``),
on random weights whose convolution kernels are small (3e-5 to 3e-3): weight
standardization is scale-invariant except for its epsilon, so at that scale the
sources' epsilons change the logits by far more than the tolerance, and the test
tells them apart. Tolerance: max|ours - reference| / max|reference| <= 5e-6, float32.
"""

import keras
import numpy as np
import pytest

from keras_vit.checkpoints import load_npz, load_timm, save_npz
from keras_vit.checkpoints.meta import META_KEY
from keras_vit.layers.bit import BiTRootBlock
from keras_vit.layers.hybrid import HybridRoot
from keras_vit.layers.stage import ResNetStage
from keras_vit.layers.std_conv import StdConv2D, numerics_of, set_numerics
from keras_vit.models import ResNetV2, ViT, from_checkpoint

from . import resnet_reference as reference
from .conftest import fixture_path, load_fixture, relative_error
from .test_resnet import _to_timm_hybrid

TOLERANCE = 5e-6
BIT = dict(layers=(1, 1), width=0.5, image_size=32, num_classes=5)
HYBRID = dict(
    image_size=32,
    patch_size=2,
    hidden_size=64,
    num_layers=2,
    num_heads=2,
    mlp_dim=128,
    num_classes=5,
    resnet_layers=(1,),
    approximate_gelu=False,
)
_HYBRID_PARTS = {
    "conv1": "conv1",
    "gn1": "norm1",
    "conv2": "conv2",
    "gn2": "norm2",
    "conv3": "conv3",
    "gn3": "norm3",
    "conv_proj": "downsample.conv",
    "gn_proj": "downsample.norm",
}


def _images(size: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (2, size, size, 3)).astype("float32")


def _randomise(model: keras.Model) -> None:
    """Small standardized kernels (so the epsilons matter), every other weight perturbed."""
    rng = np.random.default_rng(1)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, StdConv2D):
            shape = layer.kernel.shape
            offset = rng.normal(size=shape[-1])  # a nonzero mean per output channel
            # A scale per output channel, so GroupNorm does not cancel the epsilons' effect.
            scale = 10 ** rng.uniform(-4.5, -2.5, size=shape[-1])
            value = scale * (rng.normal(size=shape) + offset)
            layer.kernel.assign(value.astype("float32"))
    for weight in model.weights:
        if not weight.path.endswith("standardized_conv2d/kernel") and "conv" not in weight.path:
            value = np.array(weight) + 0.05 * rng.normal(size=weight.shape)
            weight.assign(value.astype("float32"))


@pytest.fixture(scope="module")
def official_bit(tmp_path_factory):
    model = ResNetV2(**BIT, numerics="official")  # an official file: no numerics metadata
    _randomise(model)
    path = tmp_path_factory.mktemp("bit") / "BiT-tiny.npz"
    save_npz(model, path)
    with np.load(path) as data:
        params = {k: data[k] for k in data.files}
    return path, params


def test_official_bit_matches_its_float64_reference(official_bit):
    path, params = official_bit
    x = _images(32)
    expected = reference.bit(params, x, std_eps=1e-10)
    # The test can tell the sources apart: timm's epsilon moves the logits far more.
    assert relative_error(reference.bit(params, x, std_eps=1e-8), expected) > 100 * TOLERANCE

    model = from_checkpoint(path, image_size=32)
    assert model.get_layer("root_block").numerics == "official"
    assert relative_error(model.predict(x, verbose=0), expected) <= TOLERANCE

    loaded = ResNetV2(**BIT, numerics="timm")
    load_npz(loaded, path)  # the loader sets the source's numerics
    assert loaded.get_layer("block2").numerics == "official"
    assert relative_error(loaded.predict(x, verbose=0), expected) <= TOLERANCE
    assert (
        relative_error(ResNetV2(**BIT, weights=path).predict(x, verbose=0), expected) <= TOLERANCE
    )

    set_numerics(loaded, "bit", "timm")  # and a compiled predict sees the change
    assert relative_error(loaded.predict(x, verbose=0), expected) > 100 * TOLERANCE


def test_timm_bit_fixture_picks_timm_numerics():
    io = load_fixture("timm_bit_resnetv2_l1111_x0p5.io.npz")
    path = fixture_path("timm_bit_resnetv2_l1111_x0p5.state_dict.npz")
    model = from_checkpoint(path, image_size=64)
    assert model.get_layer("root_block").numerics == "timm"
    assert model.get_layer("group_norm").epsilon == 1e-5
    assert relative_error(model.predict(io["input_nhwc"], verbose=0), io["logits"]) <= TOLERANCE
    built = ResNetV2(layers=(1, 1, 1, 1), width=0.5, image_size=64, num_classes=10)
    assert built.get_layer("root_block").numerics == "official"
    load_timm(built, path)
    assert built.get_layer("block3").numerics == "timm"
    assert relative_error(built.predict(io["input_nhwc"], verbose=0), io["logits"]) <= TOLERANCE


def _timm_hybrid_state(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The hybrid's parameters as timm names them (stem and transformer by test_resnet's map)."""
    state = _to_timm_hybrid(params)
    for key, value in params.items():
        parts = key.split("/")
        if not key.startswith("block"):
            continue
        stage, unit = int(parts[0][5:]) - 1, int(parts[1][4:]) - 1
        name = f"patch_embed.backbone.stages.{stage}.blocks.{unit}.{_HYBRID_PARTS[parts[2]]}"
        if parts[3] == "kernel":
            state[f"{name}.weight"] = value.transpose(3, 2, 0, 1)
        else:
            state[f"{name}.{'weight' if parts[3] == 'scale' else 'bias'}"] = value.reshape(-1)
    return state


def test_timm_hybrid_matches_its_float64_reference(tmp_path):
    model = ViT(**HYBRID)
    _randomise(model)
    save_npz(model, tmp_path / "official.npz")
    with np.load(tmp_path / "official.npz") as data:
        state = _timm_hybrid_state({k: data[k] for k in data.files})
    np.savez(tmp_path / "timm_hybrid.npz", **state)
    x = _images(32)
    expected = reference.timm_hybrid(state, x, num_heads=2)

    loaded = ViT(**HYBRID)
    assert loaded.get_layer("root").numerics == "official"
    load_timm(loaded, tmp_path / "timm_hybrid.npz")
    assert loaded.get_layer("block1").numerics == "timm"
    assert relative_error(loaded.predict(x, verbose=0), expected) <= TOLERANCE

    built = from_checkpoint(tmp_path / "timm_hybrid.npz", num_heads=2)
    assert built.get_layer("root").get_config()["numerics"] == "timm"
    assert relative_error(built.predict(x, verbose=0), expected) <= TOLERANCE

    # vision_transformer's numerics on the same weights are far from timm's logits.
    set_numerics(loaded, "hybrid", "official")
    assert relative_error(loaded.predict(x, verbose=0), expected) > 100 * TOLERANCE


def test_official_hybrid_fixture_picks_official_numerics():
    path = fixture_path("official_tiny_hybrid_rootonly.params.npz")
    model = from_checkpoint(path)
    root = model.get_layer("root")
    assert (root.numerics, root.conv_root.std_form, root.gn_root.epsilon) == (
        "official",
        "std",
        1e-6,
    )


def test_numerics_table_and_refusals():
    assert numerics_of("bit", "official") == dict(std_eps=1e-10, std_form="var", gn_eps=1e-5)
    assert numerics_of("bit", "timm") == dict(std_eps=1e-8, std_form="var", gn_eps=1e-5)
    assert numerics_of("hybrid", "official") == dict(std_eps=1e-5, std_form="std", gn_eps=1e-6)
    assert numerics_of("hybrid", "timm") == dict(std_eps=1e-8, std_form="var", gn_eps=1e-5)
    with pytest.raises(ValueError, match="numerics must be one of"):
        ResNetV2(**BIT, numerics="jax")
    with pytest.raises(ValueError, match="numerics must be one of"):
        ViT(**HYBRID, resnet_numerics="flax")


@pytest.mark.parametrize(
    "layer, legacy",
    [
        (BiTRootBlock(32, numerics="official", name="root_block"), "timm"),
        (HybridRoot(64, numerics="timm", name="root"), "official"),
    ],
)
def test_configs_carry_numerics_and_old_configs_keep_theirs(layer, legacy):
    config = layer.get_config()
    assert type(layer).from_config(config).numerics == layer.numerics
    config.pop("numerics")  # a config saved before numerics were a choice
    assert type(layer).from_config(config).numerics == legacy
    stage = ResNetStage(1, 32, unit="keras_vit>PreActBottleneck", name="block1")
    old = {k: v for k, v in stage.get_config().items() if k != "numerics"}
    restored = ResNetStage.from_config(old)
    restored.build((None, 8, 8, 32))
    assert restored.units[0].numerics == "timm"


def test_keras_file_keeps_loaded_numerics(tmp_path):
    model = from_checkpoint(fixture_path("timm_bit_resnetv2_l1111_x0p5.state_dict.npz"))
    model.save(tmp_path / "bit.keras")
    restored = keras.saving.load_model(tmp_path / "bit.keras")
    assert restored.get_layer("block4").numerics == "timm"
    assert restored.get_layer("block4").units[0].a.standardized_conv2d.std_eps == 1e-8


def test_explicit_numerics_win_over_the_source():
    path = fixture_path("timm_bit_resnetv2_l1111_x0p5.state_dict.npz")
    model = from_checkpoint(path, image_size=64, numerics="official")
    assert model.get_layer("block4").numerics == "official"
    assert model.get_layer("block4").units[0].a.standardized_conv2d.std_eps == 1e-10
    hybrid = fixture_path("official_tiny_hybrid_rootonly.params.npz")
    root = from_checkpoint(hybrid, resnet_numerics="timm").get_layer("root")
    assert (root.numerics, root.conv_root.std_form, root.gn_root.epsilon) == ("timm", "var", 1e-5)


def test_timm_bit_keeps_its_numerics_through_save_npz(tmp_path):
    io = load_fixture("timm_bit_resnetv2_l1111_x0p5.io.npz")
    model = from_checkpoint(fixture_path("timm_bit_resnetv2_l1111_x0p5.state_dict.npz"))
    save_npz(model, tmp_path / "bit.npz")
    restored = from_checkpoint(tmp_path / "bit.npz", image_size=64)
    assert restored.get_layer("block4").numerics == "timm"
    assert relative_error(restored.predict(io["input_nhwc"], verbose=0), io["logits"]) <= TOLERANCE
    official = ResNetV2(**BIT, numerics="official")
    save_npz(official, tmp_path / "official.npz")
    with np.load(tmp_path / "official.npz", allow_pickle=False) as data:
        assert META_KEY not in data.files  # official readers see the files as before
