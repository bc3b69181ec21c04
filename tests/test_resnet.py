"""BiT ResNet-v2 and the hybrid ViT: parity, loaders, numerics and serialization.

Parity tolerance: max|ours - reference| / max|reference| <= 5e-6 in float32 (measured:
2.3e-6 on the timm BiT logits, 3.2e-6 at its pre-logits, 3.0e-7 on the official hybrid).
The timm BiT fixture is itself 3.0e-6 from a float64 forward pass (torch float32 noise).
"""

import json
import logging
import zipfile

import keras
import numpy as np
import pytest

from keras_vit import layers
from keras_vit.checkpoints import CheckpointError, load_npz, load_timm, save_npz
from keras_vit.checkpoints.assign import model_params
from keras_vit.layers.std_conv import set_numerics
from keras_vit.models import ResNetV2, ViT

from .conftest import fixture_path, load_fixture, relative_error

TOLERANCE = 5e-6
TINY_HYBRID = dict(
    image_size=64,
    patch_size=2,
    hidden_size=64,
    num_layers=2,
    num_heads=2,
    mlp_dim=128,
    num_classes=10,
    resnet_layers=(),
)
TINY_BIT = dict(layers=(1, 1, 1, 1), width=0.5, image_size=64, num_classes=10)


@pytest.fixture(scope="module")
def bit():
    model = ResNetV2(**TINY_BIT)
    load_timm(model, fixture_path("timm_bit_resnetv2_l1111_x0p5.state_dict.npz"))
    return model, load_fixture("timm_bit_resnetv2_l1111_x0p5.io.npz")


def test_official_hybrid_logits():
    io = load_fixture("official_tiny_hybrid_rootonly.io.npz")
    model = ViT(**TINY_HYBRID, weights=fixture_path("official_tiny_hybrid_rootonly.params.npz"))
    assert model.count_params() == 97_930
    x = io["input_nhwc"]
    root = keras.Model(model.input, model.get_layer("root").output).predict(x, verbose=0)
    # The fixture taps gn_root; the root goes on with ReLU and a 3x3/2 SAME max-pool.
    expected = keras.ops.max_pool(np.maximum(io["act/gn_root"], 0), 3, 2, padding="same")
    assert relative_error(root, expected) <= TOLERANCE
    assert relative_error(model.predict(x, verbose=0), io["logits"]) <= TOLERANCE


def test_timm_bit_logits_and_stages(bit):
    model, io = bit
    assert model.count_params() == 2_017_578
    x = io["input_nhwc"]
    for i in range(4):
        stage = keras.Model(model.input, model.get_layer(f"block{i + 1}").output).predict(
            x, verbose=0
        )
        assert relative_error(stage, io[f"act/stages.{i}"].transpose(0, 2, 3, 1)) <= TOLERANCE
    features = keras.Model(model.input, model.get_layer("pre_logits").output).predict(x, verbose=0)
    assert relative_error(features, io["pre_logits"]) <= TOLERANCE
    assert relative_error(model.predict(x, verbose=0), io["logits"]) <= TOLERANCE


def test_bit_official_layout_round_trip(tmp_path, bit):
    model, io = bit
    path = tmp_path / "BiT-tiny.npz"
    save_npz(model, path)
    with np.load(path) as saved:
        keys = set(saved.files)
        assert saved["resnet/head/conv2d/kernel"].shape == (1, 1, 1024, 10)
    assert "resnet/block1/unit01/a/proj/standardized_conv2d/kernel" in keys
    assert "resnet/block4/unit01/c/group_norm/gamma" in keys
    assert "resnet/root_block/standardized_conv2d/kernel" in keys
    restored = ResNetV2(**TINY_BIT, weights=path)
    for a, b in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(np.array(a), np.array(b), err_msg=a.path)
    # BiT's layout, and the model's timm numerics recorded beside it (meta.META_KEY).
    assert restored.get_layer("root_block").numerics == "timm"
    assert not set_numerics(restored, "bit", "timm")  # nothing left to change
    np.testing.assert_array_equal(
        restored.predict(io["input_nhwc"], verbose=0), model.predict(io["input_nhwc"], verbose=0)
    )


def test_bit_fine_tuning_and_bad_files(tmp_path, bit, caplog):
    model, _ = bit
    path = tmp_path / "bit.npz"
    save_npz(model, path)
    with caplog.at_level(logging.WARNING, logger="keras_vit"):
        other = ResNetV2(**dict(TINY_BIT, num_classes=3), weights=path)
    assert np.all(np.array(other.get_layer("head").kernel) == 0)
    assert "3 classes" in caplog.text
    with np.load(path) as data:
        params = {k: data[k] for k in data.files}
    del params["resnet/block2/unit01/b/group_norm/gamma"]
    np.savez(tmp_path / "missing.npz", **params)
    fresh = ResNetV2(**TINY_BIT)
    before = [np.array(w) for w in fresh.weights]
    with pytest.raises(CheckpointError, match="missing keys: block2/unit01/b/group_norm/scale"):
        load_npz(fresh, tmp_path / "missing.npz")
    for old, w in zip(before, fresh.weights):
        np.testing.assert_array_equal(old, np.array(w))
    with pytest.raises(CheckpointError, match="'bit' checkpoint but the model is a 'vit' model"):
        load_npz(ViT(**dict(TINY_HYBRID, resnet_layers=None, patch_size=16)), path)
    with pytest.raises(CheckpointError, match="'hybrid' checkpoint but the model is a 'bit' model"):
        load_npz(fresh, fixture_path("official_tiny_hybrid_rootonly.params.npz"))


def _to_timm_hybrid(params):
    """The official hybrid fixture written as timm names it (a test-side map)."""
    state = {}
    for key, value in params.items():
        if key == "conv_root/kernel":
            state["patch_embed.backbone.stem.conv.weight"] = value.transpose(3, 2, 0, 1)
        elif key.startswith("gn_root/"):
            suffix = "weight" if key.endswith("scale") else "bias"
            state[f"patch_embed.backbone.stem.norm.{suffix}"] = value.reshape(-1)
        elif key == "embedding/kernel":
            state["patch_embed.proj.weight"] = value.transpose(3, 2, 0, 1)
        elif key == "embedding/bias":
            state["patch_embed.proj.bias"] = value
        elif key == "cls":
            state["cls_token"] = value
        elif key.endswith("pos_embedding"):
            state["pos_embed"] = value
        elif key.startswith("head/"):
            state["head." + ("weight" if key.endswith("kernel") else "bias")] = (
                value.T if key.endswith("kernel") else value
            )
        elif key.startswith("Transformer/encoder_norm/"):
            state["norm." + ("weight" if key.endswith("scale") else "bias")] = value
    for i in range(2):
        p = f"Transformer/encoderblock_{i}/"
        a = p + "MultiHeadDotProductAttention_1/"
        state[f"blocks.{i}.norm1.weight"] = params[p + "LayerNorm_0/scale"]
        state[f"blocks.{i}.norm1.bias"] = params[p + "LayerNorm_0/bias"]
        state[f"blocks.{i}.norm2.weight"] = params[p + "LayerNorm_2/scale"]
        state[f"blocks.{i}.norm2.bias"] = params[p + "LayerNorm_2/bias"]
        state[f"blocks.{i}.attn.qkv.weight"] = np.concatenate(
            [params[a + n + "/kernel"].reshape(64, 64).T for n in ("query", "key", "value")]
        )
        state[f"blocks.{i}.attn.qkv.bias"] = np.concatenate(
            [params[a + n + "/bias"].reshape(64) for n in ("query", "key", "value")]
        )
        state[f"blocks.{i}.attn.proj.weight"] = params[a + "out/kernel"].reshape(64, 64).T
        state[f"blocks.{i}.attn.proj.bias"] = params[a + "out/bias"]
        for j in range(2):
            state[f"blocks.{i}.mlp.fc{j + 1}.weight"] = params[p + f"MlpBlock_3/Dense_{j}/kernel"].T
            state[f"blocks.{i}.mlp.fc{j + 1}.bias"] = params[p + f"MlpBlock_3/Dense_{j}/bias"]
    return state


def test_timm_hybrid_state_dict_maps_to_the_same_weights(tmp_path):
    params = load_fixture("official_tiny_hybrid_rootonly.params.npz")
    np.savez(tmp_path / "timm_hybrid.npz", **_to_timm_hybrid(params))
    official = ViT(**TINY_HYBRID, weights=fixture_path("official_tiny_hybrid_rootonly.params.npz"))
    timm = ViT(**TINY_HYBRID)
    load_timm(timm, tmp_path / "timm_hybrid.npz")
    for a, b in zip(official.weights, timm.weights):
        np.testing.assert_array_equal(np.array(a), np.array(b), err_msg=a.path)


@pytest.mark.parametrize("form", ["var", "std"])
def test_weight_standardization_numerics(form):
    kernel = np.random.default_rng(0).normal(size=(3, 3, 4, 5)).astype("float32")
    flat = kernel.reshape(-1, 5).astype(np.float64)
    mean, std = flat.mean(0), flat.std(0)
    eps = 1e-5
    expected = (flat - mean) / (np.sqrt(std**2 + eps) if form == "var" else std + eps)
    ours = np.array(layers.weight_standardize(kernel, eps, form)).reshape(-1, 5)
    np.testing.assert_allclose(ours, expected, rtol=1e-5)


def test_hybrid_stages_shapes_and_bad_sizes():
    model = ViT(**dict(TINY_HYBRID, patch_size=1, resnet_layers=(1, 1), image_size=64))
    # Root /4, second stage /2: an 8x8 grid of 1x1 patches.
    assert model.get_layer("embedding").output.shape[1:3] == (8, 8)
    with pytest.raises(ValueError, match="effective patch size"):
        ViT(**dict(TINY_HYBRID, image_size=60))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(layers=()), "layers must be"),
        (dict(width=0), "width must be positive"),
        (dict(pooling="avg"), "pooling applies only with include_top=False"),
        (dict(include_top=False, pooling="token"), "pooling must be one of"),
        (dict(num_classes=-1), "num_classes must be"),
    ],
)
def test_bit_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResNetV2(**dict(TINY_BIT, **kwargs))


RESNET_LAYERS = [
    layers.StdConv2D(8, 3, 2, padding=1, std_eps=1e-5, std_form="std"),
    layers.PreActConv(8, 3, 2, projection_filters=16, projection_strides=2),
    layers.PreActBottleneck(64, 16, strides=2, project=True),
    layers.ResidualUnit(16, strides=2),
    layers.ResNetStage(2, 32, strides=2, unit=layers.ResidualUnit),
    layers.ResNetStage(1, 32, unit="keras_vit>PreActBottleneck"),
    layers.BiTRootBlock(32),
    layers.HybridRoot(32),
]


@pytest.mark.parametrize("layer", RESNET_LAYERS, ids=lambda layer: type(layer).__name__)
def test_resnet_layer_config_round_trip(layer):
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
    assert keras.saving.get_registered_name(type(layer)) == f"keras_vit>{type(layer).__name__}"


def test_stage_unit_names_and_bad_unit():
    bit = layers.ResNetStage(2, 32, unit=layers.PreActBottleneck, name="block1")
    hybrid = layers.ResNetStage(2, 32, unit=layers.ResidualUnit, name="block1")
    x = np.zeros((1, 8, 8, 64), "float32")
    bit(x), hybrid(x)
    assert [unit.name for unit in bit.units] == ["unit01", "unit02"]
    assert [unit.name for unit in hybrid.units] == ["unit1", "unit2"]
    with pytest.raises(ValueError, match="unit must be a residual unit class"):
        layers.ResNetStage(2, 32, unit=keras.layers.Dense)


def test_hybrid_root_weights_carry_the_official_keys():
    model = ViT(**dict(TINY_HYBRID, resnet_layers=(1,)))
    assert [w.path for w in model.get_layer("root").weights] == [
        "root/conv_root/kernel",
        "root/gn_root/gamma",
        "root/gn_root/beta",
    ]
    keys = model_params(model).keys()
    assert {"conv_root/kernel", "gn_root/scale", "gn_root/bias", "block1/unit1/gn1/scale"} <= keys


def _randomize(model, rng):
    for w in model.weights:
        w.assign(rng.normal(size=w.shape).astype("float32") * 0.1 + (1 if "gamma" in w.path else 0))
    return model


@pytest.mark.parametrize(
    "build", [lambda: ResNetV2(**TINY_BIT), lambda: ViT(**dict(TINY_HYBRID, resnet_layers=(1,)))]
)
def test_keras_file_round_trip(tmp_path, build):
    rng = np.random.default_rng(0)
    model = _randomize(build(), rng)
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    x = rng.uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_array_equal(restored.predict(x, verbose=0), model.predict(x, verbose=0))


def _write_stages_as_preact(path):
    """Rewrites a ``.keras`` file's stage configs as files saved before the family split:
    ``preact`` (True for BiT units) where the stage now names its ``unit``."""

    def rewrite(node):
        if isinstance(node, dict):
            if node.get("registered_name") == "keras_vit>ResNetStage":
                unit = node["config"].pop("unit")
                node["config"]["preact"] = unit == "keras_vit>PreActBottleneck"
            return {key: rewrite(value) for key, value in node.items()}
        return [rewrite(value) for value in node] if isinstance(node, list) else node

    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = rewrite(json.loads(files["config.json"]))
    assert '"preact"' in json.dumps(config)
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)


@pytest.mark.parametrize("unit", [layers.PreActBottleneck, layers.ResidualUnit])
def test_keras_files_with_preact_stages_still_load(tmp_path, unit):
    rng = np.random.default_rng(0)
    inputs = keras.Input((8, 8, 64))
    model = keras.Model(inputs, layers.ResNetStage(2, 32, 2, unit=unit, name="block2")(inputs))
    model = _randomize(model, rng)
    model.save(tmp_path / "old.keras")
    _write_stages_as_preact(tmp_path / "old.keras")
    restored = keras.saving.load_model(tmp_path / "old.keras")
    assert restored.get_layer("block2").unit == keras.saving.get_registered_name(unit)
    x = rng.uniform(-1, 1, (2, 8, 8, 64)).astype("float32")
    np.testing.assert_array_equal(restored.predict(x, verbose=0), model.predict(x, verbose=0))
