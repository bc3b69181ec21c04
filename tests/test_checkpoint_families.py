"""Checkpoint families beyond the paper's own: Hugging Face, DeiT, timm layouts, big_vision.

Parity with the libraries' own outputs (``../shared/fixtures``) within 1e-5
relative in float32, with both ``attention_impl`` values; timm's register and
LayerScale layouts (no fixture) against a float64 NumPy forward pass written
from timm's rules (tests/timm_reference.py); round trips; refusals.
"""

import json
import logging
import shutil

import keras
import numpy as np
import pytest
from safetensors.numpy import save_file

from keras_vit.checkpoints import CheckpointError, load_hf, load_timm, save_npz
from keras_vit.checkpoints.meta import META_KEY
from keras_vit.layers import sincos2d
from keras_vit.models import ViT, from_checkpoint

from .conftest import fixture_path, load_fixture, relative_error
from .timm_reference import big_vision_params, hf_state, random_timm_state, timm_forward

FIXTURES = {
    "hf": ("hf_tiny_vit", "hf_tiny_vit.io.npz", {}, 118_090),
    "deit": (
        "timm_tiny_deit_distilled.state_dict.npz",
        "timm_tiny_deit_distilled.io.npz",
        {"num_heads": 2},
        118_868,
    ),
    "fc_norm": (
        "timm_tiny_vit_avgpool_fcnorm.state_dict.npz",
        "timm_tiny_vit_avgpool_fcnorm.io.npz",
        {"num_heads": 2},
        118_090,
    ),
    "map_sincos": (
        "bigvision_tiny_vit_map_sincos.params.npz",
        "bigvision_tiny_vit_map_sincos.io.npz",
        {"image_size": 64},
        150_346,
    ),
}
TINY_OFFICIAL = dict(
    image_size=32, patch_size=16, hidden_size=64, num_layers=1, num_heads=2, mlp_dim=128
)


def features(model, layer, images):
    return keras.Model(model.input, model.get_layer(layer).output).predict(images, verbose=0)


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("case", FIXTURES)
def test_fixture_logits(case, impl):
    path, io, overrides, count = FIXTURES[case]
    model = from_checkpoint(fixture_path(path), attention_impl=impl, **overrides)
    io = load_fixture(io)
    assert model.count_params() == count
    assert relative_error(model.predict(io["input_nhwc"], verbose=0), io["logits"]) <= 1e-5


def test_hf_architecture_and_hidden_states():
    model = from_checkpoint(fixture_path("hf_tiny_vit"))
    encoder = model.get_layer("Transformer").get_config()
    assert encoder["layer_norm_epsilon"] == 1e-12 and encoder["approximate_gelu"] is False
    assert encoder["num_heads"] == 2
    io = load_fixture("hf_tiny_vit.io.npz")
    x = io["input_nhwc"]
    assert relative_error(features(model, "Transformer", x), io["last_hidden_state"]) <= 1e-5
    assert relative_error(features(model, "pre_logits", x), io["pre_logits"]) <= 1e-5


def test_load_hf_into_a_built_model_and_its_checks(tmp_path):
    io = load_fixture("hf_tiny_vit.io.npz")
    tiny = dict(image_size=64, patch_size=16, hidden_size=64, num_layers=2, mlp_dim=128)
    model = ViT(
        **tiny, num_heads=2, num_classes=10, approximate_gelu=False, layer_norm_epsilon=1e-12
    )
    load_hf(model, fixture_path("hf_tiny_vit"))
    assert relative_error(model.predict(io["input_nhwc"], verbose=0), io["logits"]) <= 1e-5
    with pytest.raises(
        CheckpointError, match="num_attention_heads=2 but the model has num_heads=4"
    ):
        load_hf(ViT(**tiny, num_heads=4, num_classes=10), fixture_path("hf_tiny_vit"))
    with pytest.raises(CheckpointError, match="Hugging Face checkpoint; use load_hf"):
        load_timm(model, fixture_path("hf_tiny_vit"))
    with pytest.raises(CheckpointError, match="not a Hugging Face ViT folder"):
        load_hf(model, fixture_path("timm_tiny_vit.state_dict.npz"))


def test_hf_numerics_survive_save_npz_and_explicit_overrides_win(tmp_path):
    io = load_fixture("hf_tiny_vit.io.npz")
    save_npz(from_checkpoint(fixture_path("hf_tiny_vit")), tmp_path / "hf.npz")
    with np.load(tmp_path / "hf.npz", allow_pickle=False) as data:
        assert META_KEY in data.files
    restored = from_checkpoint(tmp_path / "hf.npz")
    assert restored.get_layer("Transformer").get_config()["layer_norm_epsilon"] == 1e-12
    assert relative_error(restored.predict(io["input_nhwc"], verbose=0), io["logits"]) <= 1e-5
    chosen = from_checkpoint(tmp_path / "hf.npz", layer_norm_epsilon=1e-6)
    assert chosen.get_layer("Transformer").get_config()["layer_norm_epsilon"] == 1e-6
    save_npz(ViT(**TINY_OFFICIAL), tmp_path / "official.npz")
    with np.load(tmp_path / "official.npz", allow_pickle=False) as data:
        assert META_KEY not in data.files


def test_load_hf_warns_about_a_layer_norm_epsilon_mismatch(caplog):
    tiny = dict(image_size=64, patch_size=16, hidden_size=64, num_layers=2, mlp_dim=128)
    model = ViT(**tiny, num_heads=2, num_classes=10, approximate_gelu=False)
    with caplog.at_level(logging.WARNING, logger="keras_vit"):
        load_hf(model, fixture_path("hf_tiny_vit"))
    assert "LayerNorm epsilon 1e-12; the model uses 1e-06" in caplog.text


@pytest.mark.parametrize(
    "change, message",
    [
        ({"hidden_size": 32}, "says hidden_size=32 but model.safetensors has "),
        ({"num_labels": 3, "id2label": None}, "num_labels=3 but model.safetensors has classifier"),
        ({"num_hidden_layers": 3}, "num_hidden_layers=3 but model.safetensors has 2"),
        ({"image_size": 96}, "image_size=(96, 96) but model.safetensors has "),
        ({"qkv_bias": False}, "qkv_bias=False but model.safetensors has present"),
        ({"hidden_act": "relu"}, "hidden_act='relu' is not supported"),
        ({"model_type": "deit"}, "model_type='deit'"),
    ],
)
def test_hf_config_that_disagrees_with_the_weights_names_both(tmp_path, change, message):
    folder = tmp_path / "hf"
    shutil.copytree(fixture_path("hf_tiny_vit"), folder)
    config = json.loads((folder / "config.json").read_text())
    config |= change
    config = {k: v for k, v in config.items() if v is not None}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")):
        from_checkpoint(folder)


def test_hf_non_square_tanh_gelu_no_qkv_bias_against_numpy(tmp_path):
    rng = np.random.default_rng(3)
    state = random_timm_state(rng, grid=(4, 2), qkv_bias=False)
    folder = tmp_path / "hf"
    folder.mkdir()
    save_file(hf_state(state), str(folder / "model.safetensors"))
    config = dict(
        model_type="vit",
        image_size=[32, 16],
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        hidden_act="gelu_new",
        qkv_bias=False,
        layer_norm_eps=1e-12,
        id2label={str(i): str(i) for i in range(5)},
    )
    (folder / "config.json").write_text(json.dumps(config))
    model = from_checkpoint(folder)
    assert model.input.shape == (None, 32, 16, 3)
    x = rng.uniform(-1, 1, (2, 32, 16, 3)).astype("float32")
    expected = timm_forward(state, x, 4, eps=1e-12, approximate_gelu=True)
    assert relative_error(model.predict(x, verbose=0), expected) <= 1e-5


def test_hf_vit_model_without_classifier_loads_headless(tmp_path, caplog):
    rng = np.random.default_rng(4)
    state = hf_state(random_timm_state(rng))
    del state["classifier.weight"], state["classifier.bias"]
    state["vit.pooler.dense.weight"] = np.zeros((32, 32), "float32")
    state["vit.pooler.dense.bias"] = np.zeros(32, "float32")
    folder = tmp_path / "hf"
    folder.mkdir()
    save_file(state, str(folder / "model.safetensors"))
    config = dict(
        model_type="vit",
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    (folder / "config.json").write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING, logger="keras_vit"):
        model = from_checkpoint(folder)
    assert "the model has no head" in caplog.text
    assert model.output.shape == (None, 17, 32)


def test_deit_heads_alone_and_for_training():
    io = load_fixture("timm_tiny_deit_distilled.io.npz")
    path = fixture_path("timm_tiny_deit_distilled.state_dict.npz")
    model = from_checkpoint(path, num_heads=2, distillation_output="both")
    head, head_dist = model.predict(io["input_nhwc"], verbose=0)
    assert relative_error(head, io["logits_head"]) <= 1e-5
    assert relative_error(head_dist, io["logits_dist"]) <= 1e-5
    x = io["input_nhwc"]
    assert relative_error(features(model, "pool_dist", x), io["pre_logits_dist"]) <= 1e-5
    assert relative_error(features(model, "pre_logits", x), io["pre_logits_cls"]) <= 1e-5
    model.compile("sgd", ["sparse_categorical_crossentropy"] * 2)
    losses = model.train_on_batch(x, [np.zeros(2), np.ones(2)])
    assert np.all(np.isfinite(losses))


def test_fc_norm_pools_the_patches_without_a_final_norm():
    io = load_fixture("timm_tiny_vit_avgpool_fcnorm.io.npz")
    model = from_checkpoint(
        fixture_path("timm_tiny_vit_avgpool_fcnorm.state_dict.npz"), num_heads=2
    )
    assert model.get_layer("Transformer").get_config()["final_norm"] is False
    x = io["input_nhwc"]
    assert relative_error(features(model, "Transformer", x), io["tokens_after_norm"]) <= 1e-5
    assert relative_error(features(model, "pool", x), io["act/pool"]) <= 1e-5
    assert relative_error(features(model, "pre_logits", x), io["pre_logits"]) <= 1e-5


def test_headless_fc_norm_and_map_checkpoints():
    io = load_fixture("timm_tiny_vit_avgpool_fcnorm.io.npz")
    path = fixture_path("timm_tiny_vit_avgpool_fcnorm.state_dict.npz")
    pooled = from_checkpoint(path, num_heads=2, include_top=False, pooling="avg")
    x = io["input_nhwc"]  # the pooled vector is timm's forward_head(pre_logits=True)
    assert relative_error(pooled.predict(x, verbose=0), io["pre_logits"]) <= 1e-5
    tokens = from_checkpoint(path, num_heads=2, include_top=False)
    assert relative_error(tokens.predict(x, verbose=0), io["tokens_after_norm"]) <= 1e-5
    path = fixture_path("bigvision_tiny_vit_map_sincos.params.npz")
    model = from_checkpoint(path, include_top=False, image_size=64)
    assert model.output.shape[1:] == (16, 64)


def test_pooling_avg_on_a_class_token_model_averages_every_token():
    model = ViT(**TINY_OFFICIAL, include_top=False)
    pooled = ViT(**TINY_OFFICIAL, include_top=False, pooling="avg")
    pooled.set_weights(model.get_weights())
    x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    tokens = model.predict(x, verbose=0)
    assert tokens.shape[1] == 5  # the class token and four patches
    assert relative_error(pooled.predict(x, verbose=0), tokens.mean(axis=1)) <= 1e-6


def test_big_vision_sincos_and_map_head():
    io = load_fixture("bigvision_tiny_vit_map_sincos.io.npz")
    assert relative_error(sincos2d(4, 4, 64), io["posemb_sincos2d"][0]) <= 1e-6
    path = fixture_path("bigvision_tiny_vit_map_sincos.params.npz")
    with pytest.raises(CheckpointError, match="do not record the image size: pass image_size="):
        from_checkpoint(path)
    model = from_checkpoint(path, image_size=64)
    x = io["input_nhwc"]
    assert relative_error(features(model, "Transformer", x), io["act/encoded"]) <= 1e-5
    assert relative_error(features(model, "MAPHead_0", x), io["act/head_input"]) <= 1e-5


def test_big_vision_tok_class_token_gets_no_position_embedding(tmp_path):
    rng = np.random.default_rng(5)
    state = random_timm_state(rng, no_embed_class=True)
    np.savez(tmp_path / "params.npz", **big_vision_params(state, num_heads=2))
    model = from_checkpoint(tmp_path / "params.npz")
    assert model.get_layer("Transformer").get_config()["unembedded_tokens"] == 1
    x = rng.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    expected = timm_forward(state, x, 2, no_embed_class=True, approximate_gelu=True)
    assert relative_error(model.predict(x, verbose=0), expected) <= 1e-5


REGISTER_CASES = {
    "registers-no_embed_class-layerscale": dict(registers=4, no_embed_class=True, layer_scale=True),
    "registers-embedded": dict(registers=2, no_embed_class=False),
    "layerscale-avg-fc_norm-no_qkv_bias": dict(layer_scale=True, fc_norm=True, qkv_bias=False),
    "registers-avg-fc_norm": dict(registers=3, no_embed_class=True, fc_norm=True),
}


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("case", REGISTER_CASES)
def test_timm_registers_and_layer_scale_against_numpy(tmp_path, case, impl):
    options = REGISTER_CASES[case]
    rng = np.random.default_rng(7)
    state = random_timm_state(rng, **options)
    np.savez(tmp_path / "state.npz", **state)
    model = from_checkpoint(tmp_path / "state.npz", num_heads=2, attention_impl=impl)
    x = rng.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    pool = "avg" if options.get("fc_norm") else "token"
    no_embed = options.get("no_embed_class", False)
    expected = timm_forward(state, x, 2, no_embed_class=no_embed, global_pool=pool)
    assert relative_error(model.predict(x, verbose=0), expected) <= 1e-5
    # Round trip through our own .npz: the official format records neither the GELU
    # form nor whether the prefix tokens have position embeddings.
    save_npz(model, tmp_path / "ours.npz")
    again = from_checkpoint(
        tmp_path / "ours.npz", attention_impl=impl, approximate_gelu=False, no_embed_class=no_embed
    )
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


def test_fine_tuning_resamples_past_every_prefix_token(caplog):
    path = fixture_path("timm_tiny_deit_distilled.state_dict.npz")
    model = from_checkpoint(path, num_heads=2, image_size=96, num_classes=5)
    posemb = np.asarray(model.get_layer("Transformer").posembed_input.pos_embedding)
    stored = np.load(path)["pos_embed"]
    assert posemb.shape == (1, 2 + 36, 64)
    np.testing.assert_array_equal(posemb[:, :2], stored[:, :2])
    for name in ("head", "head_dist"):
        assert not np.any(np.asarray(model.get_layer(name).kernel))


def test_registers_without_embeddings_resample_the_patches_only(tmp_path):
    state = random_timm_state(np.random.default_rng(0), registers=4, no_embed_class=True)
    np.savez(tmp_path / "state.npz", **state)
    model = from_checkpoint(tmp_path / "state.npz", num_heads=2, image_size=48)
    assert model.get_layer("Transformer").posembed_input.pos_embedding.shape == (1, 36, 32)


def test_ambiguous_position_embedding_rows_ask_for_no_embed_class(tmp_path):
    # 8 registers and a class token on a 4x4 grid: 25 rows, and 25 - 9 = 16 is square too.
    state = random_timm_state(np.random.default_rng(0), registers=8)
    np.savez(tmp_path / "state.npz", **state)
    with pytest.raises(CheckpointError, match="both with and without its 9 prefix tokens"):
        from_checkpoint(tmp_path / "state.npz", num_heads=2)
    for told in (dict(no_embed_class=False), dict(image_size=32)):
        model = from_checkpoint(tmp_path / "state.npz", num_heads=2, **told)
        assert model.get_layer("Transformer").get_config()["unembedded_tokens"] == 0


def test_new_layouts_round_trip_through_keras_files(tmp_path):
    config = dict(
        image_size=32,
        patch_size=16,
        hidden_size=16,
        num_layers=1,
        num_heads=2,
        mlp_dim=32,
        num_classes=3,
    )
    for options in (
        dict(distilled=True, num_register_tokens=2, no_embed_class=True, layer_scale_init=0.1),
        dict(classifier="map", posemb="sincos2d", qkv_bias=False),
        dict(classifier="gap", class_token=True, fc_norm=True, layer_norm_epsilon=1e-12),
    ):
        model = ViT(**config, **options)
        for layer in model.layers:
            rebuilt = type(layer).from_config(layer.get_config())
            assert rebuilt.get_config() == layer.get_config(), layer.name
        model.save(tmp_path / "model.keras")
        restored = keras.saving.load_model(tmp_path / "model.keras")
        x = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)).astype("float32")
        np.testing.assert_array_equal(restored.predict(x, verbose=0), model.predict(x, verbose=0))


def test_unknown_keys_are_named_and_nothing_is_half_loaded(tmp_path):
    state = random_timm_state(np.random.default_rng(0))
    state["blocks.1.attn.q_norm.weight"] = np.ones(16, "float32")
    np.savez(tmp_path / "qk_norm.npz", **state)
    with pytest.raises(CheckpointError, match=r"blocks\.1\.attn\.q_norm\.weight"):
        from_checkpoint(tmp_path / "qk_norm.npz", num_heads=2)
    del state["blocks.1.attn.q_norm.weight"]
    state["mask_token"] = np.zeros((1, 1, 32), "float32")
    np.savez(tmp_path / "extra.npz", **state)
    model = ViT(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        mlp_dim=64,
        num_classes=5,
        approximate_gelu=False,
    )
    before = [np.array(w) for w in model.weights]
    with pytest.raises(CheckpointError, match="no place for: mask_token"):
        load_timm(model, tmp_path / "extra.npz")
    for old, new in zip(before, model.weights):
        np.testing.assert_array_equal(old, np.array(new))


@pytest.mark.parametrize(
    "key, message",
    [
        ("attn_pool.latent", "not timm's attn_pool"),
        ("norm_pre.weight", "no pre-encoder LayerNorm"),
    ],
)
def test_layouts_still_refused(tmp_path, key, message):
    state = random_timm_state(np.random.default_rng(0))
    state[key] = np.zeros((1, 1, 32), "float32")
    np.savez(tmp_path / "state.npz", **state)
    with pytest.raises(CheckpointError, match=message):
        from_checkpoint(tmp_path / "state.npz", num_heads=2)
