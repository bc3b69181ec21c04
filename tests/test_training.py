"""Training in one process: the digits recipe, the step's arithmetic, recipes, fine-tuning."""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vit import cli
from keras_vit.checkpoints import load_npz
from keras_vit.data import (
    NO_AUGMENTATION,
    Augmentation,
    DataError,
    Source,
    Split,
    load_digits,
    load_source,
)
from keras_vit.models import create_model
from keras_vit.models.registry import create_recipe_model
from keras_vit.training import RunOptions, build_model, fit, get_recipe, resolve
from keras_vit.training.optim import WarmupSchedule, make_optimizer
from keras_vit.training.step import make_train_function
from tests.conftest import assert_training_logs

DIGITS = get_recipe("digits")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The digits recipe on a short schedule (600 of the main job's 2,695 steps)."""
    out = tmp_path_factory.mktemp("digits")
    result = fit(DIGITS, RunOptions(str(out), steps=600, backup_every=200, verbose=0))
    return result, out


def test_a_tiny_vit_learns_the_digits(trained):
    result, out = trained
    assert result.steps == 600
    assert result.accuracy >= 0.85  # chance is 0.1
    assert result.top5 >= result.accuracy
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["step"] == 600 and metrics["accuracy"] == pytest.approx(result.accuracy)


def test_outputs_reload(trained):
    result, out = trained
    _, (x_test, _) = load_digits()
    expected = result.model.predict(x_test[:8], verbose=0)
    reloaded = keras.saving.load_model(out / "model.keras")
    np.testing.assert_allclose(reloaded.predict(x_test[:8], verbose=0), expected, atol=1e-6)
    from_npz = build_model(DIGITS, 10, 16, None)
    load_npz(from_npz, out / "model.npz")
    np.testing.assert_allclose(from_npz.predict(x_test[:8], verbose=0), expected, atol=1e-6)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_tensorboard_logs(trained):
    _, out = trained
    assert_training_logs(out, 600)
    tags = set()
    for path in (out / "logs" / "train").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags |= {v.tag for v in event.summary.value}
    assert "inputs" in tags and "_hparams_/session_start_info" in tags


def test_backups_are_kept_and_the_run_resumes(trained):
    result, out = trained
    backups = sorted(p.name for p in (out / "backup").glob("ckpt-*.index"))
    assert backups == ["ckpt-400.index", "ckpt-600.index"]  # the newest two
    again = fit(DIGITS, RunOptions(str(out), steps=600, verbose=0))
    assert again.digest == result.digest and again.steps == 600  # nothing left to train


def _tiny(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    model = create_model("ViT-Mu/8", image_size=16, num_classes=3, **kwargs)
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:  # a non-zero head, so that every weight moves
        v.assign(rng.normal(size=v.shape).astype("float32") * 0.1)
    return model


def _batch(n=8, seed=1):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, 16, 16, 3)).astype("float32")
    labels = tf.one_hot(rng.integers(0, 3, n), 3)
    return images, labels, tf.ones([n])


def _train(model, accum_steps=1, grad_clip=None, steps=2, optimizer="sgd", lr=0.5):
    optimizer = make_optimizer(optimizer, WarmupSchedule(lr, 100), model)
    strategy = tf.distribute.get_strategy()
    train = make_train_function(model, optimizer, strategy, 8, accum_steps, grad_clip)
    data = iter(tf.data.Dataset.from_tensors(_batch()).repeat())
    return train(data, tf.constant(steps)).numpy()


def test_accumulation_equals_one_step_of_the_whole_batch():
    one, four = _tiny(), _tiny()
    _train(one, accum_steps=1, optimizer="adam", lr=0.01)
    _train(four, accum_steps=4, optimizer="adam", lr=0.01)
    for a, b in zip(one.trainable_variables, four.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_clipping_clips_the_global_norm_of_the_whole_gradient():
    model, reference = _tiny(), _tiny()
    images, labels, _ = _batch()
    with tf.GradientTape() as tape:
        logits = reference(images, training=True)
        loss = tf.reduce_mean(keras.losses.categorical_crossentropy(labels, logits, True))
    grads = tape.gradient(loss, reference.trainable_variables)
    norm = float(tf.linalg.global_norm(grads))
    clip = norm / 10  # well inside: clipping changes the update tenfold
    loss_out, _, norm_out = _train(model, accum_steps=2, grad_clip=clip, steps=1)
    assert norm_out == pytest.approx(norm, rel=1e-5)
    assert loss_out == pytest.approx(float(loss), rel=1e-5)
    for v, w, g in zip(model.trainable_variables, reference.trainable_variables, grads):
        expected = w.numpy() - 0.5 * g.numpy() * (clip / norm)  # first SGD step: w - lr g
        np.testing.assert_allclose(v.numpy(), expected, rtol=1e-4, atol=1e-6)


def test_schedules():
    def rates(decay, **kw):
        schedule = WarmupSchedule(1.0, 100, decay=decay, **kw)
        return [round(float(schedule(s)), 4) for s in (0, 10, 20, 60, 100)]

    assert rates("cosine", warmup_steps=20) == [0.0, 0.5, 1.0, 0.5, 0.0]
    assert rates("linear", warmup_steps=20, end=0.2) == [0.0, 0.5, 1.0, 0.6, 0.2]
    assert rates("steps") == [1.0, 1.0, 1.0, 0.01, 0.001]
    with pytest.raises(ValueError, match="decay must be one of"):
        WarmupSchedule(1.0, 10, decay="exponential")


def _fake_source(name, num_train, image_size=None):
    sliced = lambda split: Split(lambda: None, int(num_train * 0.98))  # noqa: E731
    splits = {"train": Split(lambda: None, num_train), "test": Split(lambda: None, 1000)}
    return Source(name, ("a", "b"), splits, "encoded", image_size=image_size, sliced=sliced)


def test_recipes_resolve_by_dataset():
    finetune = resolve(get_recipe("finetune"), _fake_source("cifar10", 50_000, 32))
    assert (finetune.steps, finetune.train_split, finetune.eval_split) == (
        10_000,
        "train[:98%]",
        "test",
    )
    assert (finetune.optimizer, finetune.batch_size, finetune.grad_clip, finetune.image_size) == (
        "sgd",
        512,
        1.0,
        384,
    )
    assert resolve(get_recipe("finetune"), _fake_source("dtd", 3_000)).steps == 2_500
    bit = resolve(get_recipe("bit-hyperrule"), _fake_source("cifar10", 50_000, 32))
    assert (bit.steps, bit.image_size, bit.augmentation.resize_size, bit.augmentation.mixup) == (
        10_000,
        128,
        160,
        0.1,
    )
    big = resolve(get_recipe("bit-hyperrule"), _fake_source("imagenet2012", 1_281_167))
    assert (big.steps, big.image_size, big.augmentation.resize_size) == (20_000, 384, 448)
    scratch = resolve(get_recipe("imagenet-scratch"), _fake_source("x", 1_000_000))
    assert scratch.steps == int(
        np.ceil(300 * 980_000 / 4096)
    )  # train[:99%] (the fake: 98%) and scratch.warmup_steps == 10_000
    pretrain = get_recipe("pretrain")
    assert (pretrain.optimizer, pretrain.weight_decay, pretrain.batch_size, pretrain.decay) == (
        "adam",
        0.1,
        4096,
        "linear",
    )
    assert (
        build_model(dataclasses.replace(pretrain, model="ViT-Mu/8"), 5, 16, None)
        .get_layer("pre_logits")
        .get_config()["activation"]
        == "tanh"
    )


def test_pipeline_resumes_and_shards_the_same_stream():
    from keras_vit.data import train_dataset

    source = load_source("digits")
    aug = Augmentation(crop="inception", flip=True)
    whole = [
        b[0].numpy()
        for b in train_dataset(source, "train", 16, 8, seed=3, augmentation=aug).take(3)
    ]
    resumed = train_dataset(source, "train", 16, 8, seed=3, augmentation=aug, start_example=16)
    np.testing.assert_array_equal(next(iter(resumed))[0].numpy(), whole[2])

    class Context:  # what distribute_datasets_from_function passes: 2 workers, 1 replica each
        num_input_pipelines, num_replicas_in_sync = 2, 2

        def __init__(self, pipeline):
            self.input_pipeline_id = pipeline

        def get_per_replica_batch_size(self, batch):
            return batch // 2

    halves = [
        next(iter(train_dataset(source, "train", 16, 8, 3, aug, 0, Context(i))))[0].numpy()
        for i in (0, 1)
    ]
    np.testing.assert_array_equal(halves[0], whole[0][0::2])
    np.testing.assert_array_equal(halves[1], whole[0][1::2])
    assert float(np.abs(whole[0] - whole[1]).max()) > 0  # the stream moves on


def test_finetune_at_a_higher_resolution(trained, caplog):
    _, out = trained
    recipe = dataclasses.replace(
        get_recipe("finetune"),
        model="ViT-Mu/4",
        model_args={"num_heads": 4},
        dataset="digits",
        image_size=32,
        batch_size=32,
        steps=60,
        warmup_steps=5,
        augmentation=NO_AUGMENTATION,
    )
    with caplog.at_level("WARNING", logger="keras_vit"):
        result = fit(recipe, RunOptions(str(out / "ft32"), init=str(out / "model.npz"), verbose=0))
    assert "position embeddings resampled from (1, 17, 64) to (1, 65, 64)" in caplog.text
    assert result.model.input_shape == (None, 32, 32, 3)
    scratch = dataclasses.replace(recipe, init_required=False)
    baseline = fit(scratch, RunOptions(str(out / "scratch32"), verbose=0))
    # 60 steps: from the checkpoint far above chance (0.1) and above the same run from scratch.
    assert result.accuracy >= 0.6 and result.accuracy > baseline.accuracy + 0.2


def test_finetune_starts_from_a_zero_head(trained):
    _, out = trained
    recipe = dataclasses.replace(
        get_recipe("finetune"), model="ViT-Mu/4", model_args={"num_heads": 4}
    )
    model = build_model(recipe, 10, 16, str(out / "model.npz"))
    assert not np.any(model.get_layer("head").kernel.numpy())
    reference = keras.saving.load_model(out / "model.keras")
    np.testing.assert_array_equal(
        model.get_layer("embedding").weights[0].numpy(),
        reference.get_layer("embedding").weights[0].numpy(),
    )
    with pytest.raises(ValueError, match="pass --init"):
        build_model(recipe, 10, 16, None)


def test_bit_recipes_take_no_architecture_arguments():
    with pytest.raises(ValueError, match="BiT-R50x1 takes no dropout_rate"):
        create_recipe_model("BiT-R50x1", 10, 32, model_args={"dropout_rate": 0.1})


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision(tmp_path, precision):
    # 60 steps: at 40 the accuracy (0.29-0.37) hangs on the dropout masks XLA draws.
    result = fit(DIGITS, RunOptions(str(tmp_path), steps=60, precision=precision, verbose=0))
    assert (
        result.model.get_layer("head").compute_dtype
        == {"bf16": "bfloat16", "fp16": "float16"}[precision]
    )
    assert np.isfinite(result.loss) and result.accuracy > 0.3
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="not divisible by 1 replica"):
        fit(DIGITS, RunOptions(str(tmp_path), accum_steps=3, verbose=0))
    with pytest.raises(ValueError, match="unknown recipe 'vit-xl'; known recipes: digits"):
        get_recipe("vit-xl")
    with pytest.raises(DataError, match="unknown dataset 'no_such_dataset'"):
        load_source("no_such_dataset")
    with pytest.raises(ValueError, match="precision must be one of"):
        fit(DIGITS, RunOptions(str(tmp_path), precision="fp8", verbose=0))
    with pytest.raises(ValueError, match="batch size must be at least 1; got 0"):
        fit(dataclasses.replace(DIGITS, batch_size=0), RunOptions(str(tmp_path), verbose=0))
    with pytest.raises(ValueError, match="at least 1 step; got 0"):
        fit(DIGITS, RunOptions(str(tmp_path), steps=0, verbose=0))
    with pytest.raises(ValueError, match="backup_every must be 0 .off. or more; got -5"):
        fit(DIGITS, RunOptions(str(tmp_path), backup_every=-5, verbose=0))
    with pytest.raises(ValueError, match="keep must be at least 1; got 0"):
        fit(DIGITS, RunOptions(str(tmp_path), keep=0, verbose=0))
    with pytest.raises(DataError, match="has no split 'validation'"):
        load_source("digits").split("validation")
    assert not any(tmp_path.iterdir())  # nothing written by a refused run


def test_cli_train_evaluate_and_fewshot(trained, tmp_path, capsys):
    _, out = trained
    assert cli.main(["train", "--steps", "30", "--out", str(tmp_path), "--quiet"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("held-out accuracy: 0.")
    assert cli.main(["evaluate", "--model", str(out / "model.keras"), "--dataset", "digits"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("digits test: 360 images, top-1 accuracy 0.")
    metrics = json.loads((out / "metrics.json").read_text())
    assert f"top-1 accuracy {metrics['accuracy']:.4f}" in line
    args = ["fewshot", "--model", str(out / "model.keras"), "--shots", "1", "10", "--seeds", "2"]
    assert cli.main([*args, "--json", str(tmp_path / "fewshot.json")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["digits 1-shot", "digits 10-shot"]
    accuracies = json.loads((tmp_path / "fewshot.json").read_text())
    assert len(accuracies["10"]) == 2 and np.mean(accuracies["10"]) > 0.7
    assert cli.main(["train", "--recipe", "finetune", "--out", str(tmp_path / "ft")]) == 2
    assert "pass --init" in capsys.readouterr().err
    assert cli.main(["train", "--dataset", str(tmp_path / "nowhere/")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_randaugment_and_mixup():
    from keras_vit.data import train_dataset

    source = load_source("digits")
    plain = Augmentation(crop="none", flip=False)
    strong = Augmentation(crop="none", flip=False, randaugment=(2, 0.5), mixup=0.2)
    before = next(iter(train_dataset(source, "train", 16, 16, seed=0, augmentation=plain)))
    images, labels, weights = next(
        iter(train_dataset(source, "train", 16, 16, seed=0, augmentation=strong))
    )
    assert images.shape == (16, 16, 16, 3) and float(tf.reduce_max(tf.abs(images))) <= 1.0 + 1e-6
    np.testing.assert_allclose(labels.numpy().sum(-1), 1.0, rtol=1e-6)
    assert (labels.numpy().max(-1) < 0.999).sum() >= 8  # mixed with another digit (same: one-hot)
    assert float(np.abs(images.numpy() - before[0].numpy()).mean()) > 0.01


def test_periodic_checkpoints_follow_the_retention_rule(tmp_path):
    fit(DIGITS, RunOptions(str(tmp_path), steps=50, checkpoint_every=10, keep=2, verbose=0))
    kept = sorted(p.name for p in (tmp_path / "checkpoints").glob("ckpt-*.index"))
    assert kept == ["ckpt-40.index", "ckpt-50.index"]
    other = dataclasses.replace(DIGITS, model="ViT-Mu/8")  # another model, same folder
    with pytest.raises(ValueError, match="checkpoint of another model or optimizer"):
        fit(other, RunOptions(str(tmp_path), steps=60, verbose=0))
