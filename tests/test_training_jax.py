"""Training on JAX (``keras_vit.training.jax_fit``): the digits main job, its outputs read back
on TensorFlow and served by Triton, the step's arithmetic, mixed precision over two devices,
and a run stopped by SIGTERM, then SIGKILLed, resumed past a damaged backup.

The Keras backend is fixed per process: every JAX run is a subprocess with
``KERAS_BACKEND=jax`` (or ``--backend jax``); this process (TensorFlow) reads what
they wrote. Short runs compile with XLA's backend optimisations off: a training
step of the tiny models compiles in about 3 s instead of 15-25 s on 2 CPU cores
(and runs 3x slower, which only the main job would notice).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_vit import cli, preprocess_input
from keras_vit.checkpoints import load_npz
from keras_vit.data import load_digits, load_source
from keras_vit.models import create_model
from keras_vit.training import build_model, evaluate_split, get_recipe
from keras_vit.training.lock import LOCK_NAME
from tests.conftest import assert_training_logs, read_scalars, relative_error

ROOT = Path(__file__).resolve().parents[1]
DIGITS = get_recipe("digits")
PROBE = 16  # held-out digits whose logits the JAX process saves
TOLERANCE = 1e-5  # relative to the largest logit
# The killed run is long enough never to finish before it is killed.
KILLED_STEPS = 100_000

pytestmark = pytest.mark.slow


def _env(devices: int = 1, fast_compile: bool = True) -> dict[str, str]:
    flags = [f"--xla_force_host_platform_device_count={devices}"]
    if fast_compile:
        flags.append("--xla_backend_optimization_level=0")
    environ = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return {**environ, "XLA_FLAGS": " ".join(flags)}


def _run_script(script: str, *args: str, devices: int = 1, fast_compile: bool = True) -> dict:
    """Runs ``script`` under JAX; returns the JSON it prints on its ``RESULT`` line."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=900,
        env=_env(devices, fast_compile),
        cwd=ROOT,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, (result.stdout + result.stderr)[-5000:]
    return json.loads(lines[-1][len("RESULT ") :])


MAIN_JOB = f"""
    import json, sys, time
    import keras, numpy as np
    from keras_vit.data import load_digits
    from keras_vit.training import RunOptions, fit, get_recipe
    out, probe = sys.argv[1], sys.argv[2]
    tick = time.perf_counter()
    result = fit(get_recipe("digits"), RunOptions(out, verbose=0))
    seconds = time.perf_counter() - tick
    _, (x_test, _) = load_digits()
    np.save(probe, result.model.predict(x_test[:{PROBE}], verbose=0))
    summary = dict(backend=keras.backend.backend(), accuracy=result.accuracy, steps=result.steps,
                   seconds=seconds)
    print("RESULT", json.dumps(summary))
"""


@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    """The digits recipe as it is (2,695 steps) on JAX, and its logits of ``PROBE`` digits."""
    folder = tmp_path_factory.mktemp("jax_digits")
    out, probe = folder / "run", folder / "probe.npy"
    summary = _run_script(MAIN_JOB, str(out), str(probe), fast_compile=False)
    print(f"digits on JAX: {summary}")
    return out, summary, np.load(probe, allow_pickle=False)


def test_the_digits_main_job_on_jax(main_job):
    out, summary, _ = main_job
    assert summary["backend"] == "jax" and summary["steps"] == 2695
    assert summary["accuracy"] >= 0.96  # as on TensorFlow (README: 0.964-0.972 over seeds)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(summary["accuracy"])


def test_outputs_are_the_tensorflow_paths(main_job):
    out, _, _ = main_job
    tensorflow_metrics = evaluate_split(
        create_model("ViT-Mu/4", image_size=16, num_classes=10), load_source(), "test"
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"step", *tensorflow_metrics} and metrics["step"] == 2695
    assert {p.name for p in out.iterdir()} >= {"model.keras", "model.npz", "backup", "logs"}
    assert not [p for p in out.rglob(".*")]  # no temporary files left
    assert sorted(p.name for p in (out / "backup").iterdir())[-1] == "ckpt-2695.npz"
    train = assert_training_logs(out, 2695)
    assert train["learning_rate"][-1][1] == pytest.approx(0.0, abs=1e-9)  # cosine, to 0


def test_a_jax_trained_model_loads_on_tensorflow_and_serves_on_triton(main_job, tmp_path):
    from keras_vit.serving import export_model
    from keras_vit.serving.server import TritonServer

    out, _, jax_logits = main_job
    assert keras.backend.backend() == "tensorflow"
    _, (x_test, _) = load_digits()
    model = keras.saving.load_model(out / "model.keras")
    assert relative_error(model.predict(x_test[:PROBE], verbose=0), jax_logits) <= TOLERANCE
    from_npz = build_model(DIGITS, 10, 16, None)
    load_npz(from_npz, out / "model.npz")
    assert relative_error(from_npz.predict(x_test[:PROBE], verbose=0), jax_logits) <= TOLERANCE

    import tritonclient.http as httpclient

    export_model(model, tmp_path / "repo", "digits_jax", max_batch_size=PROBE)
    _, (pixels, labels) = load_digits(form="uint8")
    images = pixels[:PROBE]
    tick = time.perf_counter()
    with TritonServer(tmp_path / "repo") as server:
        print(f"tritonserver ready in {time.perf_counter() - tick:.1f} s")
        tensor = httpclient.InferInput("images", list(images.shape), "UINT8")
        tensor.set_data_from_numpy(images)
        # Closed before the server stops: tritonserver waits for open connections, up to
        # the 20 s its guard allows.
        with httpclient.InferenceServerClient(server.http_url) as client:
            served = client.infer("digits_jax", [tensor]).as_numpy("logits")
    expected = model.predict(preprocess_input(images), verbose=0)
    assert relative_error(served, expected) <= TOLERANCE
    np.testing.assert_array_equal(served.argmax(-1), expected.argmax(-1))
    assert (served.argmax(-1) == labels[:PROBE]).mean() >= 0.9


STEP_CHECKS = """
    import contextlib, dataclasses, doctest, io, json, os, sys
    import jax, jax.numpy as jnp, keras, numpy as np
    from keras_vit.models import create_model
    from keras_vit.training import RunOptions, fit, get_recipe
    from keras_vit.training import jax_distribution, jax_fit, jax_state, jax_step
    from keras_vit.training.jax_distribution import global_batch, make_distribution
    from keras_vit.training.jax_step import assign_state, make_train_step, state_values
    from keras_vit.training.optim import WarmupSchedule, make_optimizer

    report = {"devices": len(jax.devices())}
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    modules = (jax_step, jax_state, jax_distribution, jax_fit)
    report["doctests"] = {m.__name__: doctest.testmod(m, optionflags=flags).failed for m in modules}

    distribution = make_distribution("auto")  # DataParallel over both CPU devices
    rng = np.random.default_rng(1)
    images = rng.normal(size=(8, 16, 16, 3)).astype("float32")
    labels = np.eye(3, dtype="float32")[rng.integers(0, 3, 8)]
    batch = (images, labels, np.ones([8], "float32"))

    def tiny():
        keras.utils.set_random_seed(0)
        model = create_model("ViT-Mu/8", image_size=16, num_classes=3)
        weights = np.random.default_rng(0)
        for v in model.trainable_variables:  # a non-zero head, so that every weight moves
            v.assign(weights.normal(size=v.shape).astype("float32") * 0.1)
        return model

    def train(model, accum_steps, grad_clip=None, steps=2, name="adam", lr=0.01):
        optimizer = make_optimizer(name, WarmupSchedule(lr, 100), model)
        optimizer.build(model.trainable_variables)
        step = make_train_step(model, optimizer, 8, accum_steps, grad_clip)
        values = state_values(model, optimizer)
        for _ in range(steps):
            values, metrics = step(values, *global_batch(distribution, batch))
        assign_state(model, optimizer, values)
        return [float(m) for m in metrics]

    def weights(model):
        return [np.asarray(v.value) for v in model.trainable_variables]

    with distribution.scope():
        one, four = tiny(), tiny()
        train(one, 1)
        train(four, 4)
        report["accumulation_max_abs"] = max(
            float(np.abs(a - b).max()) for a, b in zip(weights(one), weights(four)))

        model, reference = tiny(), tiny()
        non_trainable = [v.value for v in reference.non_trainable_variables]

        def mean_loss(trainable):
            logits, _ = reference.stateless_call(trainable, non_trainable, images, training=True)
            return jnp.mean(keras.losses.categorical_crossentropy(labels, logits, True))

        before = weights(reference)
        loss, grads = jax.value_and_grad(mean_loss)(before)
        norm = float(jnp.sqrt(sum(jnp.sum(g * g) for g in grads)))
        clip = norm / 10  # well inside: clipping changes the update tenfold
        step_loss, _, step_norm = train(model, 2, grad_clip=clip, steps=1, name="sgd", lr=0.5)
        expected = [w - 0.5 * np.asarray(g) * (clip / norm) for w, g in zip(before, grads)]
        report["clip_max_abs"] = max(
            float(np.abs(a - b).max()) for a, b in zip(weights(model), expected))
        report["loss_ratio"], report["norm_ratio"] = step_loss / float(loss), step_norm / norm

    recipe = dataclasses.replace(get_recipe("digits"), grad_clip=1.0)
    options = RunOptions(sys.argv[1], steps=30, precision="bf16", accum_steps=2, backup_every=10,
                         log_every=10, verbose=0)
    result = fit(recipe, options)
    report["bf16"] = dict(steps=result.steps, loss=result.loss, accuracy=result.accuracy,
                          compute_dtype=result.model.get_layer("head").compute_dtype,
                          variable_dtype=result.model.get_layer("head").kernel.dtype)

    # A resumed run ends where the uninterrupted one does (dropout's random state included).
    out, printed = sys.argv[1] + "_resume", io.StringIO()
    whole = fit(get_recipe("digits"), RunOptions(out, steps=20, backup_every=10, verbose=0))
    os.remove(os.path.join(out, "backup", "ckpt-20.npz"))
    with contextlib.redirect_stdout(printed):
        resumed = fit(get_recipe("digits"), RunOptions(out, steps=20, backup_every=10, verbose=0))
    report["resume"] = dict(equal=whole.digest == resumed.digest, printed=printed.getvalue())
    print("RESULT", json.dumps(report))
"""


@pytest.fixture(scope="module")
def step_checks(tmp_path_factory):
    """Doctests, accumulation and clipping arithmetic, and a short bf16 run, on two CPU devices."""
    out = tmp_path_factory.mktemp("jax_bf16") / "run"
    return _run_script(STEP_CHECKS, str(out), devices=2), out


def test_docstring_examples_run_on_jax(step_checks):
    report, _ = step_checks
    assert report["devices"] == 2
    assert set(report["doctests"].values()) == {0}, report["doctests"]


def test_accumulation_equals_one_step_of_the_whole_batch(step_checks):
    report, _ = step_checks
    # Two Adam steps, one batch of 8 against 4 micro-batches of 2 (1 per device):
    # the same sums in another order, float32.
    assert report["accumulation_max_abs"] <= 1e-6


def test_clipping_clips_the_global_norm_of_the_whole_gradient(step_checks):
    report, _ = step_checks
    # One SGD step (w - lr g, the momentum still zero) of the accumulated gradient,
    # clipped to a tenth of its norm: against jax.grad of the mean loss, float32.
    assert report["clip_max_abs"] <= 1e-6
    assert report["loss_ratio"] == pytest.approx(1.0, rel=1e-5)
    assert report["norm_ratio"] == pytest.approx(1.0, rel=1e-5)


def test_mixed_bfloat16_with_accumulation_and_clipping(step_checks):
    report, out = step_checks
    bf16 = report["bf16"]
    assert bf16["steps"] == 30 and np.isfinite(bf16["loss"]) and bf16["accuracy"] > 0.1
    assert (bf16["compute_dtype"], bf16["variable_dtype"]) == ("bfloat16", "float32")
    norms = [value for _, value in read_scalars(out / "logs" / "train")["grad_norm"]]
    assert len(norms) == 3 and all(np.isfinite(norms))
    assert sorted(p.name for p in (out / "backup").iterdir()) == ["ckpt-20.npz", "ckpt-30.npz"]


def test_a_resumed_run_ends_as_the_uninterrupted_one(step_checks):
    report, out = step_checks
    resume = report["resume"]
    assert f"resumed from {out}_resume/backup/ckpt-10.npz at step 10" in resume["printed"]
    assert resume["equal"]  # equal weight digests


def _train(args: list[str], out: Path, environ: dict[str, str]) -> subprocess.Popen:
    """``python -m keras_vit.train --backend jax --quiet ARGS --out OUT``, its output piped."""
    command = [sys.executable, "-m", "keras_vit.train", "--backend", "jax", "--quiet", *args]
    return subprocess.Popen(
        [*command, "--out", str(out)],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _start(out: Path, steps: int = KILLED_STEPS) -> subprocess.Popen:
    args = ["--batch-size", "16", "--backup-every", "10", "--steps", str(steps)]
    return _train(args, out, {**_env(), "KERAS_BACKEND": "tensorflow"})  # the flag decides


def _newest_backup(out: Path) -> int:
    steps = [int(p.name[5:-4]) for p in (out / "backup").glob("ckpt-*.npz")]
    return max(steps, default=0)


def _wait_for_backup(out: Path, step: int, process: subprocess.Popen) -> None:
    started = time.monotonic()
    while _newest_backup(out) < step:
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.monotonic() - started < 300, "timed out"
        time.sleep(0.05)


def test_a_stopped_then_killed_run_resumes_from_its_newest_whole_backup(tmp_path):
    out = tmp_path / "run"
    first = _start(out)
    _wait_for_backup(out, 20, first)
    first.send_signal(signal.SIGTERM)  # a backup, then exit
    output, _ = first.communicate(timeout=300)
    assert first.returncode == 1 and "run again to resume" in output, output[-3000:]
    stopped = int(re.search(r"stopped by SIGTERM at step (\d+)", output).group(1))
    assert _newest_backup(out) == stopped
    second = _start(out)
    _wait_for_backup(out, stopped + 20, second)
    second.send_signal(signal.SIGKILL)
    output, _ = second.communicate()
    assert f"resumed from {out}/backup/ckpt-{stopped}.npz at step {stopped}" in output
    assert (out / LOCK_NAME).read_text().startswith(f"{second.pid} ")  # left by SIGKILL
    newest = _newest_backup(out)
    damaged = out / "backup" / f"ckpt-{newest}.npz"
    with open(damaged, "r+b") as f:
        f.truncate(damaged.stat().st_size // 2)
    steps = newest + 20
    rerun = _start(out, steps)
    output, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, output[-3000:]
    assert f"{damaged} is damaged (BadZipFile: " in output
    assert f"resumed from {out}/backup/ckpt-{newest - 10}.npz at step {newest - 10}" in output
    assert f"(step {steps}," in output and "held-out accuracy" in output
    assert not (out / LOCK_NAME).exists()
    assert json.loads((out / "metrics.json").read_text())["step"] == steps


def test_backend_flag_after_keras_was_imported(capsys):
    import doctest

    from keras_vit.cli import backend

    assert doctest.testmod(backend).failed == 0
    assert cli.main(["train", "--backend", "jax", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("keras-vit train: error: --backend jax: Keras is already imported")
    assert "with the tensorflow backend" in error and len(error.strip().splitlines()) == 1


def test_jax_backups_refuse_other_models_and_tensorflow_checkpoints(tmp_path):
    """In this process: the backup files are backend-neutral ``.npz`` files."""
    from keras_vit.training.jax_state import JaxTrainState

    def state(units: int) -> JaxTrainState:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(units)])
        optimizer = keras.optimizers.SGD()
        optimizer.build(model.trainable_variables)
        return JaxTrainState(model, optimizer, str(tmp_path), writer=True)

    saved = state(3)
    saved.step = 5
    saved.save_backup()
    assert state(3).restore() == 5
    from keras_vit.training.state import TrainState

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(
        ValueError, match="holds backups of a JAX run: resume it with --backend jax"
    ):
        TrainState(model, keras.optimizers.SGD(), str(tmp_path), writer=True).restore()
    with pytest.raises(ValueError, match=r"ckpt-5.npz is a backup of another model .*\[4, 3\] th"):
        state(2).restore()
    (tmp_path / "backup" / "checkpoint").write_text("")  # what tf.train.CheckpointManager writes
    with pytest.raises(ValueError, match="holds TensorFlow checkpoints: resume that run with"):
        state(3).restore()


def test_two_processes_train_one_model(tmp_path):
    """``--strategy multiworker``: two processes on loopback, one global batch, one writer."""
    from keras_vit.serving.server import free_port

    out, port = tmp_path / "run", free_port()
    args = ["--strategy", "multiworker", "--steps", "20", "--backup-every", "10"]
    processes = []
    for index in range(2):
        environ = {
            **_env(),
            "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port}",
            "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
            "KERAS_DISTRIBUTION_PROCESS_ID": str(index),
            "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo",  # collectives between CPU processes
        }
        processes.append(_train(args, out, environ))
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    digests = [re.search(r"weights digest: (\w+)", output).group(1) for output in outputs]
    assert digests[0] == digests[1]  # the same weights in both processes
    assert "saved " in outputs[0] and "saved " not in outputs[1]  # process 0 writes
    assert sorted(p.name for p in (out / "backup").iterdir()) == ["ckpt-10.npz", "ckpt-20.npz"]
