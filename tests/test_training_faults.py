"""Training past damage, with real processes, real signals and real files: a second
run into a busy folder, a SIGKILLed run's stale lock, truncated backups."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vit import cli
from keras_vit.training.lock import LOCK_NAME
from keras_vit.training.state import TrainState

ROOT = Path(__file__).resolve().parents[1]
# The killed run is long enough never to finish before it is killed, however slow
# the second run is to start; its resumptions run 20 steps past its newest backup.
KILLED_STEPS = 100_000
RUN = ["--quiet", "--batch-size", "16", "--backup-every", "10"]


def _start(out: Path, steps: int = KILLED_STEPS) -> subprocess.Popen:
    environ = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    return subprocess.Popen(
        [sys.executable, "-m", "keras_vit.train", *RUN, "--steps", str(steps), "--out", str(out)],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen, returncode: int = 0) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == returncode, output[-3000:]
    return output


def _newest_backup(out: Path) -> int:
    latest = tf.train.latest_checkpoint(str(out / "backup"))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def _wait_for(condition, process: subprocess.Popen, timeout: float = 300) -> None:
    started = time.monotonic()
    while not condition():
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.monotonic() - started < timeout, "timed out"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """A run into ``out`` that a second run tries to join, SIGKILLed after two backups."""
    out = tmp_path_factory.mktemp("faults") / "run"
    first = _start(out)
    lock = out / LOCK_NAME
    _wait_for(lambda: lock.exists() and lock.read_text().startswith(f"{first.pid} "), first)
    second = _start(out)
    refused = _finish(second, returncode=2)
    assert first.poll() is None  # still training when the second gave up
    at_refusal = _newest_backup(out)
    _wait_for(lambda: _newest_backup(out) >= max(20, at_refusal + 10), first)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    return {"out": out, "pid": first.pid, "refused": refused, "at_refusal": at_refusal}


def test_a_second_run_into_the_folder_refuses_naming_the_first(killed):
    refused = killed["refused"]
    assert f"is in use by another training (PID {killed['pid']} on {socket.gethostname()})" in (
        refused
    )
    assert "Traceback" not in refused
    # The first went on saving backups after the second was turned away.
    assert _newest_backup(killed["out"]) > killed["at_refusal"]


def test_a_killed_run_resumes_past_its_stale_lock_and_truncated_backups(killed):
    out, backups = killed["out"], killed["out"] / "backup"
    assert (out / LOCK_NAME).read_text().startswith(f"{killed['pid']} ")  # left by SIGKILL
    newest = _newest_backup(out)
    steps = newest + 20
    data = backups / f"ckpt-{newest}.data-00000-of-00001"
    os.truncate(data, 1000)
    output = _finish(_start(out, steps))
    assert f"ckpt-{newest} is damaged (IndexError: Read less bytes than requested)" in output
    assert f"resumed from {backups}/ckpt-{newest - 10} at step {newest - 10}" in output
    assert f"(step {steps}," in output and "held-out accuracy" in output
    assert not (out / LOCK_NAME).exists()  # a run that ends removes its lock
    # A truncated index: once blamed on "a checkpoint of another model".
    os.truncate(backups / f"ckpt-{steps}.index", 100)
    output = _finish(_start(out, steps))
    assert f"ckpt-{steps} is damaged" in output and "another model" not in output
    assert f"resumed from {backups}/ckpt-{steps - 10} at step {steps - 10}" in output
    assert f"(step {steps}," in output


def _state(out: Path) -> TrainState:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    optimizer = keras.optimizers.SGD()
    optimizer.build(model.trainable_variables)
    return TrainState(model, optimizer, str(out), writer=True)


def _kernel(state: TrainState) -> np.ndarray:
    return keras.ops.convert_to_numpy(state.model.layers[0].kernel)


def test_restore_is_all_or_nothing(tmp_path):
    state = _state(tmp_path)
    kernels = {}
    for step in (1, 2):
        state.model.layers[0].kernel.assign(np.full((4, 3), float(step), np.float32))
        state.step.assign(step)
        state.save_backup()
        kernels[step] = _kernel(state)
    data = tmp_path / "backup" / "ckpt-2.data-00000-of-00001"
    os.truncate(data, data.stat().st_size // 2)
    fresh = _state(tmp_path)
    assert fresh.restore() == 1
    assert fresh.restored.endswith("ckpt-1") and fresh.skipped[0][0].endswith("ckpt-2")
    np.testing.assert_array_equal(_kernel(fresh), kernels[1])
    # When none reads whole: one error naming each, and the model as it was.
    os.truncate(tmp_path / "backup" / "ckpt-1.index", 10)
    fresh = _state(tmp_path)
    untouched = _kernel(fresh)
    with pytest.raises(ValueError, match="reads whole .*ckpt-2: IndexError.*ckpt-1: ") as error:
        fresh.restore()
    assert "another model" not in str(error.value)
    np.testing.assert_array_equal(_kernel(fresh), untouched)


def test_out_that_is_a_file(tmp_path, capsys):
    path = tmp_path / "taken"
    path.write_text("not a folder")
    assert cli.main(["train", "--out", str(path), "--quiet"]) == 2
    error = capsys.readouterr().err
    expected = f"keras-vit train: error: --out {str(path)!r} is a file, not a folder"
    assert error.startswith(expected) and len(error.strip().splitlines()) == 1
