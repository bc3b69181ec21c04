"""Real strategies in real processes: MirroredStrategy on two logical CPUs, two
MultiWorkerMirroredStrategy workers on loopback, and runs killed and resumed."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import read_scalars

ROOT = Path(__file__).resolve().parents[1]
# The digits recipe without dropout (replicas draw their own masks), 16 images a step.
TINY_RUN = ["--dropout", "0", "--batch-size", "32", "--quiet", "--deterministic"]


def _start(args: list[str], env: dict | None = None) -> subprocess.Popen:
    environ = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    return subprocess.Popen(
        [sys.executable, "-m", "keras_vit.train", *args],
        cwd=ROOT,
        env={**environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen, timeout: float = 300) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-3000:]
    return output


def _digest(output: str) -> str:
    return re.search(r"weights digest: (\w+)", output).group(1)


def _losses(out: Path) -> np.ndarray:
    return np.array([v for _, v in read_scalars(out / "logs" / "train")["loss"]])


def _weights(out: Path) -> dict[str, np.ndarray]:
    with np.load(out / "model.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def test_mirrored_with_accumulation_and_clipping_matches_one_device(tmp_path):
    """Two replicas x two micro-batches of 8 against one device with the whole batch of 32."""
    common = [*TINY_RUN, "--steps", "30", "--log-every", "1", "--grad-clip", "0.05"]
    one = _start([*common, "--strategy", "default", "--out", str(tmp_path / "one")])
    two = _start(
        [*common, "--strategy", "mirrored", "--cpu-devices", "2", "--accum-steps", "2"]
        + ["--out", str(tmp_path / "two")]
    )
    _finish(one), _finish(two)
    norms = [v for _, v in read_scalars(tmp_path / "one" / "logs" / "train")["grad_norm"]]
    assert min(norms) > 0.05  # clipping acted at every step
    # Float32 sums in another order: the trajectories agree to 1e-5 relative.
    np.testing.assert_allclose(_losses(tmp_path / "two"), _losses(tmp_path / "one"), rtol=1e-5)
    reference = _weights(tmp_path / "one")
    for key, value in _weights(tmp_path / "two").items():
        np.testing.assert_allclose(value, reference[key], rtol=1e-4, atol=1e-5, err_msg=key)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_multiworker_two_processes(tmp_path):
    workers = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        args = [*TINY_RUN, "--steps", "20", "--log-every", "5", "--backup-every", "10"]
        args += ["--strategy", "multiworker", "--out", str(tmp_path / f"worker{index}")]
        processes.append(_start(args, {"TF_CONFIG": json.dumps(config)}))
    outputs = [_finish(p) for p in processes]
    assert _digest(outputs[0]) == _digest(outputs[1])  # identical weights on both workers
    accuracies = [re.search(r"held-out accuracy: ([\d.]+)", o).group(1) for o in outputs]
    assert accuracies[0] == accuracies[1]
    chief = tmp_path / "worker0"
    assert {"model.keras", "model.npz", "metrics.json", "logs", "backup"} <= {
        p.name for p in chief.iterdir()
    }
    assert not (tmp_path / "worker1").exists()  # only the chief writes
    # The global batch of 32 is split over the workers: 16 examples each.
    assert _losses(chief).shape == (4,)


def _checkpoint_is_complete(folder: Path) -> int | None:
    """The step of the newest checkpoint in ``folder``, after reading every tensor of it."""
    latest = tf.train.latest_checkpoint(str(folder))
    if latest is None:
        return None
    reader = tf.train.load_checkpoint(latest)
    for name in reader.get_variable_to_shape_map():
        reader.get_tensor(name)
    return int(latest.rsplit("-", 1)[1])


@pytest.mark.slow
def test_killed_runs_resume_and_finish_as_if_never_stopped(tmp_path):
    """SIGTERM once, then SIGKILL twice at random moments (a backup is written every step).

    Each stop comes after the run's first backup and a seeded sleep (2.4, 1.1 and
    0.02 s); 200 steps leave the runs far more than the stops reach.
    """
    args = ["--steps", "200", "--backup-every", "1", "--log-every", "10", "--quiet"]
    args += ["--deterministic"]
    reference = _start([*args, "--out", str(tmp_path / "reference")])
    out = tmp_path / "killed"
    backups = out / "backup"
    rng = random.Random(1234)
    steps_seen = []
    for trial in range(3):
        before = steps_seen[-1] if steps_seen else None
        process = _start([*args, "--out", str(out)])
        started = time.monotonic()
        while tf.train.latest_checkpoint(str(backups)) in (None, f"{backups}/ckpt-{before}"):
            time.sleep(0.02)  # until this run has trained and saved at least once
            assert process.poll() is None and time.monotonic() - started < 120
        time.sleep(rng.uniform(0.0, 2.5))
        if trial == 0:
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=60)
            assert "stopped by SIGTERM at step" in output, output[-2000:]
        else:
            process.kill()
            process.wait()
        steps_seen.append(_checkpoint_is_complete(backups))
        assert steps_seen[-1] is not None
        assert steps_seen[-1] >= max(steps_seen[:-1], default=0)
    print(f"backups after each stop: {steps_seen}")
    final = _finish(_start([*args, "--out", str(out)]))
    assert f"resumed from {backups}/ckpt-{steps_seen[-1]} at step {steps_seen[-1]}" in final
    assert _digest(final) == _digest(_finish(reference))


@pytest.mark.slow
def test_killed_in_the_middle_of_saves_never_corrupts(tmp_path):
    """SIGKILL a process that does nothing but save 66 MB backups, at random moments."""
    backups = tmp_path / "backup"
    rng = random.Random(99)
    restored = []
    for _ in range(5):
        before = _checkpoint_is_complete(backups) if backups.exists() else None
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "save_loop.py"), str(tmp_path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        restored.append(int(process.stdout.readline().split()[1]))
        assert restored[-1] == (before or 0)  # it starts from the newest complete backup
        # A first save can take over a second on a loaded machine: wait for one, so that
        # every kill finds backups of this run (and lands in a later save).
        started = time.monotonic()
        while tf.train.latest_checkpoint(str(backups)) in (None, f"{backups}/ckpt-{before}"):
            time.sleep(0.02)
            assert process.poll() is None and time.monotonic() - started < 120
        time.sleep(rng.uniform(0.3, 2.0))
        process.kill()
        process.wait()
        assert _checkpoint_is_complete(backups) > restored[-1]
    print(f"restored steps: {restored}")


def test_float16_with_loss_scaling_under_mirrored(tmp_path):
    """The loss-scaled float16 step on two replicas follows the one-device float16 run."""
    common = [*TINY_RUN, "--steps", "20", "--log-every", "1", "--precision", "fp16"]
    one = _start([*common, "--strategy", "default", "--out", str(tmp_path / "one")])
    two = _start(
        [*common, "--strategy", "mirrored", "--cpu-devices", "2", "--out", str(tmp_path / "two")]
    )
    _finish(one), _finish(two)
    losses = _losses(tmp_path / "two")
    assert np.all(np.isfinite(losses)) and losses[-5:].mean() < losses[:5].mean()
    # float16 activations carry about 3 significant digits: 1e-2 relative.
    np.testing.assert_allclose(losses, _losses(tmp_path / "one"), rtol=1e-2)
