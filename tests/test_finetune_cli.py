"""Fine-tuning and using a checkpoint by its own architecture, and readable mismatches.

The digits main job's ``model.npz`` is a ViT-Mu/4 with 4 heads (a recipe argument no
variant name carries): ``keras-vit train --init`` without ``--model``, and the other
commands with ``--weights`` alone, build it with ``from_checkpoint``.
"""

import dataclasses

import keras
import numpy as np
import pytest

from keras_vit import cli
from keras_vit.checkpoints import CheckpointError, load_npz, save_npz
from keras_vit.checkpoints.mismatch import CheckpointMismatchError
from keras_vit.models import ViT, create_model, from_checkpoint
from keras_vit.training import build_model, get_recipe

from .conftest import fixture_path
from .test_cli import run


def _write_folder(root, per_class: int, seed: int) -> None:
    """Two classes of 24x24 PNGs: a bright horizontal or vertical bar."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    for label, name in enumerate(("horizontal", "vertical")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 60, (24, 24, 3)).astype(np.uint8)
            p = rng.integers(4, 20)
            if label == 0:
                image[p - 2 : p + 2, :] = 230
            else:
                image[:, p - 2 : p + 2] = 230
            (root / name / f"{i}.png").write_bytes(tf.io.encode_png(image).numpy())


@pytest.fixture(scope="module")
def digits_job(tmp_path_factory):
    """``keras-vit train`` (the digits main job) for a few steps, and a two-class folder."""
    root = tmp_path_factory.mktemp("finetune")
    status = cli.main(
        ["train", "--steps", "5", "--batch-size", "32", "--out", str(root / "digits"), "--quiet"]
    )
    assert status == 0
    _write_folder(root / "shapes" / "train", 8, seed=0)
    _write_folder(root / "shapes" / "test", 4, seed=1)
    return root


def test_finetune_from_init_uses_the_checkpoints_architecture(digits_job, capsys):
    init, out = digits_job / "digits" / "model.npz", digits_job / "ft"
    status, stdout, err = run(
        capsys,
        *("train", "--recipe", "finetune", "--init", init, "--dataset", digits_job / "shapes"),
        *("--image-size", 32, "--batch-size", 8, "--steps", 3, "--warmup-steps", 1),
        *("--out", out, "--quiet"),
    )
    assert status == 0, err
    assert "held-out accuracy" in stdout
    model = keras.saving.load_model(out / "model.keras")
    assert model.get_layer("Transformer").get_config()["num_heads"] == 4
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 2)


def test_commands_take_a_checkpoint_file_as_weights(digits_job, capsys):
    weights = digits_job / "digits" / "model.npz"
    status, out, err = run(capsys, "evaluate", "--weights", weights, "--batch-size", 360)
    assert status == 0, err
    assert out.startswith("digits test: 360 images, top-1 accuracy ")
    # classify's default model is ViT-B/16; a checkpoint file alone replaces it.
    image = digits_job / "shapes" / "test" / "vertical" / "0.png"
    status, out, err = run(capsys, "classify", image, "--weights", weights, "--top", 1)
    assert status == 0, err
    assert out.startswith(f"{image}: class ")


def test_a_mismatch_is_a_short_summary(digits_job, capsys):
    weights = digits_job / "digits" / "model.npz"
    args = ("evaluate", "--model", "ViT-Ti/16", "--image-size", 32, "--weights", weights)
    status, _, err = run(capsys, *args)
    assert status == 2
    assert len(err.encode()) < 2048, err
    assert "checkpoint: ViT: patch 4, width 64, depth 2, 4 heads, MLP 128" in err
    assert "model:      ViT: patch 16, width 192, depth 12, 3 heads" in err
    assert "160 missing, 0 unexpected, 38 mis-shaped keys" in err
    assert "leave out --model" in err
    status, _, verbose_err = run(capsys, *args, "--verbose")
    assert status == 2
    assert "missing keys (160):" in verbose_err
    assert "Transformer/encoderblock_11/MlpBlock_3/Dense_1/bias" in verbose_err


def test_the_error_carries_the_full_lists(digits_job):
    model = create_model("ViT-Ti/16", image_size=32, num_classes=10)
    with pytest.raises(CheckpointMismatchError) as caught:
        load_npz(model, digits_job / "digits" / "model.npz")
    err = caught.value
    assert isinstance(err, CheckpointError)
    assert len(err.missing) == 160 and err.unexpected == [] and len(err.mismatched) == 38
    assert err.mismatched[0].startswith("embedding/kernel: checkpoint (4, 4, 3, 64)")
    assert len(str(err)) < 2048 and "(160 in all)" in str(err)


def test_timm_files_need_num_heads(capsys):
    timm_file = fixture_path("timm_tiny_vit.state_dict.npz")
    status, _, err = run(capsys, "evaluate", "--weights", timm_file, "--batch-size", 360)
    assert status == 2 and "number of heads" in err
    status, out, err = run(
        capsys, "evaluate", "--weights", timm_file, "--num-heads", 2, "--batch-size", 360
    )
    assert status == 0, err
    assert out.startswith("digits test: 360 images")


def test_recipe_model_may_be_a_checkpoint():
    path = str(fixture_path("timm_bit_resnetv2_l1111_x0p5.state_dict.npz"))
    recipe = dataclasses.replace(get_recipe("finetune"), model=path)
    model = build_model(recipe, num_classes=3, image_size=64, init=path)
    assert model.output_shape == (None, 3) and not np.any(model.get_layer("head").kernel.numpy())
    assert model.get_layer("root_block").numerics == "timm"
    with pytest.raises(ValueError, match="BiT checkpoints take no model arguments"):
        build_model(dataclasses.replace(recipe, model_args={"dropout_rate": 0.1}), 3, 64, path)


def test_checkpoint_recipes_follow_pre_logits_and_reset_every_head(tmp_path):
    tiny = dict(image_size=16, patch_size=4, hidden_size=64, num_layers=1, num_heads=4)
    save_npz(ViT(**tiny, mlp_dim=128, num_classes=10, representation_size=64), tmp_path / "a.npz")
    finetune = dataclasses.replace(get_recipe("finetune"), model=str(tmp_path / "a.npz"))
    model = build_model(finetune, 3, 16, init=finetune.model)  # an i21k file's tanh is dropped
    assert not isinstance(model.get_layer("pre_logits"), keras.layers.Dense)
    kept = build_model(dataclasses.replace(finetune, pre_logits=True), 3, 16, finetune.model)
    assert kept.get_layer("pre_logits").units == 64

    path = str(fixture_path("timm_tiny_deit_distilled.state_dict.npz"))
    classes = from_checkpoint(path, num_heads=2).output_shape[-1]
    deit = dataclasses.replace(finetune, model=path, model_args={"num_heads": 2})
    model = build_model(deit, classes, 64, init=path)
    for name in ("head", "head_dist"):
        assert not np.any(model.get_layer(name).kernel.numpy()), name


def test_model_arguments_a_vit_checkpoint_refuses_are_not_blamed_on_bit(tmp_path):
    path = str(fixture_path("timm_tiny_deit_distilled.state_dict.npz"))
    recipe = dataclasses.replace(get_recipe("finetune"), model=path)
    bad = dataclasses.replace(recipe, model_args={"num_heads": 2, "no_such_argument": 1})
    with pytest.raises(TypeError, match="no_such_argument"):
        build_model(bad, 3, 64, init=path)
