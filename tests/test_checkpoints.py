"""Checkpoint loading, saving, resampling and bad checkpoints."""

import logging
import os
import re

import numpy as np
import pytest
import scipy.ndimage

from keras_vit.checkpoints import CheckpointError, load_npz, load_timm, load_weights_file, save_npz
from keras_vit.checkpoints import loader as loader_module
from keras_vit.checkpoints.families import detect_family
from keras_vit.checkpoints.posemb import resample_position_embeddings
from keras_vit.models import ResNetV2, ViT

from .conftest import TINY, fixture_path, load_fixture, relative_error

POSEMB = "Transformer/posembed_input/pos_embedding"


def weights_of(model):
    return [np.array(w) for w in model.weights]


def write(path, params):
    np.savez(path, **params)
    return path


@pytest.fixture(scope="module")
def params():
    return load_fixture("official_tiny_vit.params.npz")


def test_save_npz_writes_the_official_format(tmp_path, official_vit, params):
    model, io = official_vit
    path = tmp_path / "saved.npz"
    save_npz(model, path)
    saved = load_fixture_file(path)
    assert set(saved) == set(params)
    for key in params:
        np.testing.assert_array_equal(saved[key], params[key], err_msg=key)
    fresh = ViT(**TINY, weights=path)
    np.testing.assert_array_equal(
        fresh.predict(io["input_nhwc"], verbose=0), model.predict(io["input_nhwc"], verbose=0)
    )


def load_fixture_file(path):
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _linen(params):
    renames = {
        "MultiHeadDotProductAttention_1": "MultiHeadDotProductAttention_0",
        "LayerNorm_2": "LayerNorm_1",
        "MlpBlock_3": "MlpBlock_0",
    }
    out = {}
    for key, value in params.items():
        for old, new in renames.items():
            key = re.sub(rf"(encoderblock_\d+)/{old}/", rf"\1/{new}/", key)
        out[key] = value
    return out


def _big_vision(params):
    """big_vision layout: Linen names, top-level pos_embedding, scanned blocks."""
    linen = _linen(params)
    out = {
        ("pos_embedding" if k == POSEMB else k): v
        for k, v in linen.items()
        if not k.startswith("Transformer/encoderblock_")
    }
    block_keys = sorted(
        {k.split("/", 2)[2] for k in linen if k.startswith("Transformer/encoderblock_")}
    )
    for rest in block_keys:
        out[f"Transformer/encoderblock/{rest}"] = np.stack(
            [linen[f"Transformer/encoderblock_{i}/{rest}"] for i in range(TINY["num_layers"])]
        )
    return out


@pytest.mark.parametrize("layout", [_linen, _big_vision])
def test_other_official_layouts_give_the_same_logits(tmp_path, params, layout):
    io = load_fixture("official_tiny_vit.io.npz")
    model = ViT(**TINY, weights=write(tmp_path / "ckpt.npz", layout(params)))
    assert relative_error(model.predict(io["input_nhwc"], verbose=0), io["logits"]) <= 1e-5


def test_posemb_resampled_as_the_official_loader(params):
    model = ViT(**dict(TINY, image_size=96))
    load_npz(model, fixture_path("official_tiny_vit.params.npz"))
    loaded = np.array(model.get_layer("Transformer").posembed_input.pos_embedding)
    posemb = params[POSEMB]
    grid = posemb[0, 1:].reshape(4, 4, -1)
    expected = scipy.ndimage.zoom(grid, (6 / 4, 6 / 4, 1), order=1).reshape(1, 36, -1)
    np.testing.assert_array_equal(loaded[:, :1], posemb[:, :1])
    np.testing.assert_array_equal(loaded[:, 1:], expected)


def test_posemb_non_square_target(params):
    model = ViT(**dict(TINY, image_size=(64, 96)))
    load_npz(model, fixture_path("official_tiny_vit.params.npz"))
    assert model.get_layer("Transformer").posembed_input.pos_embedding.shape == (1, 25, 64)
    assert model.predict(np.zeros((1, 64, 96, 3), "float32"), verbose=0).shape == (1, 10)


def test_resample_methods_agree_on_known_cases():
    rng = np.random.default_rng(0)
    posemb = rng.normal(size=(1, 1 + 16, 3)).astype("float32")
    for method in ("bilinear", "bicubic"):
        same = resample_position_embeddings(posemb, (4, 4), method=method)
        np.testing.assert_allclose(same, posemb, atol=1e-6)
    constant = np.ones((1, 16, 2), "float32")
    up = resample_position_embeddings(constant, (7, 7), num_prefix_tokens=0, method="bicubic")
    np.testing.assert_allclose(up, 1.0, atol=1e-6)
    # Bilinear with aligned corners keeps the corner values.
    up = resample_position_embeddings(posemb, (7, 7), method="bilinear")[0, 1:].reshape(7, 7, 3)
    np.testing.assert_allclose(up[-1, -1], posemb[0, -1], atol=1e-6)
    with pytest.raises(ValueError, match="not a square"):
        resample_position_embeddings(posemb[:, :-1], (4, 4))
    with pytest.raises(ValueError, match="unknown resampling method"):
        resample_position_embeddings(posemb, (4, 4), method="nearest")


def test_fine_tuning_with_other_classes_keeps_a_zero_head(caplog, official_vit):
    reference, _ = official_vit
    model = ViT(**dict(TINY, num_classes=5))
    with caplog.at_level(logging.WARNING, logger="keras_vit"):
        load_npz(model, fixture_path("official_tiny_vit.params.npz"))
    assert np.all(np.array(model.get_layer("head").kernel) == 0)
    np.testing.assert_array_equal(
        np.array(model.get_layer("embedding").kernel),
        np.array(reference.get_layer("embedding").kernel),
    )
    head_lines = [r for r in caplog.records if "all but the head" in r.getMessage()]
    assert len(head_lines) == 1 and "5 classes" in head_lines[0].getMessage()


def test_pre_logits_checkpoint_into_model_without_representation(tmp_path, caplog, params):
    i21k = ViT(**dict(TINY, representation_size=64))
    rng = np.random.default_rng(1)
    for w in i21k.weights:
        w.assign(rng.normal(size=w.shape).astype("float32") * 0.05)
    save_npz(i21k, tmp_path / "i21k.npz")
    model = ViT(**TINY)
    with caplog.at_level(logging.WARNING, logger="keras_vit"):
        load_npz(model, tmp_path / "i21k.npz")
    assert "representation" in caplog.text
    assert np.all(np.array(model.get_layer("head").kernel) == 0)
    np.testing.assert_array_equal(
        np.array(model.get_layer("Transformer").encoder_norm.gamma),
        np.array(i21k.get_layer("Transformer").encoder_norm.gamma),
    )
    # The same file into a model with the representation layer reproduces it exactly.
    same = ViT(**dict(TINY, representation_size=64), weights=tmp_path / "i21k.npz")
    x = np.random.default_rng(2).uniform(-1, 1, (1, 64, 64, 3)).astype("float32")
    np.testing.assert_array_equal(same.predict(x, verbose=0), i21k.predict(x, verbose=0))


def test_headless_model_loads_and_returns_the_encoded_tokens():
    io = load_fixture("official_tiny_vit.io.npz")
    model = ViT(**TINY, include_top=False, weights=fixture_path("official_tiny_vit.params.npz"))
    tokens = model.predict(io["input_nhwc"], verbose=0)
    assert relative_error(tokens, io["act/Transformer/encoder_norm"]) <= 1e-5


def _broken(params, case):
    params = dict(params)
    if case == "missing":
        del params["Transformer/encoderblock_1/MlpBlock_3/Dense_0/bias"]
    elif case == "extra":
        params["Transformer/encoderblock_2/LayerNorm_0/scale"] = np.ones(64, "float32")
    elif case == "shape":
        params["Transformer/encoder_norm/scale"] = np.ones(32, "float32")
    elif case == "family":
        params = {"resnet/root_block/standardized_conv2d/kernel": np.ones((7, 7, 3, 64), "float32")}
    return params


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "missing keys: Transformer/encoderblock_1/MlpBlock_3/Dense_0/bias"),
        ("extra", "no place for: Transformer/encoderblock_2/LayerNorm_0/scale"),
        ("shape", r"Transformer/encoder_norm/scale: checkpoint \(32,\), model \(64,\)"),
        ("family", "'bit' checkpoint but the model is a 'vit' model"),
    ],
)
def test_bad_checkpoints_leave_the_model_untouched(tmp_path, params, case, message):
    model = ViT(**TINY)
    before = weights_of(model)
    with pytest.raises(CheckpointError, match=message):
        load_npz(model, write(tmp_path / "bad.npz", _broken(params, case)))
    for old, new in zip(before, weights_of(model)):
        np.testing.assert_array_equal(old, new)


def test_truncated_file(tmp_path):
    data = fixture_path("official_tiny_vit.params.npz").read_bytes()
    path = tmp_path / "truncated.npz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_npz(ViT(**TINY), path)


def test_pickled_arrays_are_refused(tmp_path):
    path = tmp_path / "pickle.npz"
    np.savez(path, **{"embedding/kernel": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(CheckpointError, match="allow_pickle"):
        load_npz(ViT(**TINY), path)


def test_loaders_refuse_each_others_files():
    with pytest.raises(CheckpointError, match="use load_timm"):
        load_npz(ViT(**TINY), fixture_path("timm_tiny_vit.state_dict.npz"))
    with pytest.raises(CheckpointError, match="use load_npz"):
        load_timm(ViT(**TINY), fixture_path("official_tiny_vit.params.npz"))


def test_weights_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="'no-such-checkpoint' is none of these"):
        ViT(**TINY, weights="no-such-checkpoint")
    with pytest.raises(ValueError, match="augreg_in21k_ft_in1k"):
        ViT(
            image_size=224,
            patch_size=16,
            hidden_size=192,
            num_layers=12,
            num_heads=3,
            mlp_dim=768,
            weights="imagenet",
        )
    (tmp_path / "weights.bin").write_bytes(b"\0")
    with pytest.raises(CheckpointError, match="unsupported weights file"):
        ViT(**TINY, weights=tmp_path / "weights.bin")


def test_named_checkpoint_from_the_keras_cache(tmp_path, monkeypatch):
    """A named checkpoint resolves to its file in the Keras cache (no download when cached)."""
    from keras_vit.models import ViT_Ti16
    from keras_vit.models import weights as weights_module
    from keras_vit.models.weights import NAMED_WEIGHTS

    named = NAMED_WEIGHTS["Ti/16"]["augreg_in21k_ft_in1k"]
    assert named.url.endswith(
        "Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0"
        "--imagenet2012-steps_20k-lr_0.03-res_224.npz"
    )
    cache = tmp_path / "keras_vit"
    cache.mkdir()
    source = ViT_Ti16(image_size=32)
    rng = np.random.default_rng(0)
    for w in source.weights:
        w.assign(rng.normal(size=w.shape).astype("float32") * 0.02)
    # The released file is at 224 px; ours at 32 px exercises the resampling too.
    save_npz(source, cache / named.url.rsplit("/", 1)[1])
    monkeypatch.setattr(weights_module, "CACHE_DIR", str(tmp_path))
    model = ViT_Ti16(weights="augreg_in21k_ft_in1k", image_size=32, num_classes=1000)
    x = rng.uniform(-1, 1, (1, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), source.predict(x, verbose=0))


@pytest.mark.parametrize(
    "name, family, model",
    [
        ("official_tiny_vit.params.npz", "official ViT", "vit"),
        ("official_tiny_hybrid_rootonly.params.npz", "official hybrid", "hybrid"),
        ("bigvision_tiny_vit_map_sincos.params.npz", "big_vision ViT", "vit"),
        ("timm_tiny_vit.state_dict.npz", "timm ViT", "vit"),
        ("timm_tiny_vit_avgpool_fcnorm.state_dict.npz", "timm ViT", "vit"),
        ("timm_tiny_deit_distilled.state_dict.npz", "timm ViT", "vit"),
        ("timm_bit_resnetv2_l1111_x0p5.state_dict.npz", "timm BiT", "bit"),
    ],
)
def test_each_fixture_is_recognised_by_one_row(name, family, model):
    row = detect_family(load_fixture(name))
    assert (row.name, row.model) == (family, model)


def test_family_table_rows_for_other_layouts(params):
    assert detect_family(_big_vision(params)).name == "big_vision ViT"
    assert detect_family(_linen(params)).name == "official ViT"
    assert detect_family({"resnet/root_block/standardized_conv2d/kernel": 0}).name == "BiT"
    assert detect_family({"patch_embed.backbone.stem.conv.weight": 0}).name == "timm hybrid ViT"
    assert detect_family({"vit.embeddings.cls_token": 0}).name == "Hugging Face ViT"
    with pytest.raises(CheckpointError, match="unrecognised checkpoint"):
        detect_family({"backbone.stem.0.weight": 0})


@pytest.mark.parametrize(
    "name, loader",
    [
        ("official_tiny_vit.params.npz", load_weights_file),
        ("timm_tiny_vit.state_dict.npz", load_weights_file),
        ("official_tiny_vit.params.npz", load_npz),
    ],
)
def test_a_file_is_read_once_and_its_family_decided_once(monkeypatch, name, loader):
    calls = []

    def counted(function):
        def wrapper(*args, **kwargs):
            calls.append(function.__name__)
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(loader_module, "read_checkpoint", counted(loader_module.read_checkpoint))
    monkeypatch.setattr(loader_module, "detect_family", counted(loader_module.detect_family))
    approximate = name.startswith("official")
    loader(ViT(**TINY, approximate_gelu=approximate), fixture_path(name))
    assert sorted(calls) == ["detect_family", "read_checkpoint"]


def test_wrong_model_family_is_named_before_the_head_count(tmp_path):
    bit = {"resnet/root_block/standardized_conv2d/kernel": np.ones((7, 7, 3, 64), "float32")}
    model = ResNetV2(layers=(1,), width=0.5, image_size=32, num_classes=2)
    with pytest.raises(CheckpointError, match="'vit' checkpoint but the model is a 'bit' model"):
        load_timm(model, fixture_path("timm_tiny_vit.state_dict.npz"))
    with pytest.raises(CheckpointError, match="'bit' checkpoint but the model is a 'vit' model"):
        load_weights_file(ViT(**TINY), write(tmp_path / "bit.npz", bit))


def test_save_npz_is_atomic_and_synced(tmp_path, monkeypatch, official_vit):
    model, _ = official_vit
    path = tmp_path / "model.npz"
    path.write_bytes(b"old")
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))

    def failing_savez(*args, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(np, "savez", failing_savez)
        with pytest.raises(OSError, match="disk full"):
            save_npz(model, path)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.npz"]
    save_npz(model, path)
    assert os.listdir(tmp_path) == ["model.npz"]
    assert len(synced) == 2  # the file, then its folder
    assert set(load_fixture_file(path)) == set(load_fixture("official_tiny_vit.params.npz"))
