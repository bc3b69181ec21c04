"""A JAX run's state on disk: backups and periodic checkpoints as ``.npz`` files.

A backup (``<out>/backup/ckpt-<step>.npz``, the newest two kept) or periodic
checkpoint (``<out>/checkpoints/ckpt-<step>.npz``, the newest ``keep`` and one
per ``keep_every_hours``) holds every variable of the model (dropout's random
state included) and of the optimizer, the step and the examples consumed: what
a resumed run needs to continue as the uninterrupted one would. Each file is
written under a temporary name and renamed into place (``keras_vit.atomic``),
so a run killed at any moment leaves only whole files. A file damaged later
(truncated, bad CRC) is found by reading every array before anything is
assigned, and the next older one is used instead, as on TensorFlow
(``state.py``). Files are read with ``allow_pickle=False``. Nothing here imports
TensorFlow.

Example (with ``KERAS_BACKEND=jax``; ``tests/test_training_jax.py`` runs it):
    >>> import tempfile, keras
    >>> from keras_vit.training.jax_state import JaxTrainState
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> optimizer = keras.optimizers.SGD()
    >>> optimizer.build(model.trainable_variables)
    >>> state = JaxTrainState(model, optimizer, tempfile.mkdtemp(), writer=True)
    >>> state.restore()
    0
    >>> state.step = 7; state.save_backup()
    >>> JaxTrainState(model, optimizer, state.out_dir, writer=True).restore()
    7
"""

from __future__ import annotations

import os
import re

import jax
import keras
import numpy as np

from keras_vit.atomic import write_atomic

_NAME = re.compile(r"ckpt-(\d+)\.npz")
BACKUPS_KEPT = 2


def _to_numpy(variable: keras.Variable) -> np.ndarray:
    """A variable's value on this host (its local copy when replicated over several hosts)."""
    value = variable.value
    if isinstance(value, jax.Array) and not value.is_fully_addressable:
        value = value.addressable_data(0)
    return np.asarray(value)


def read_whole(path: str) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read (and CRC-checked) now, without pickle.

    Args:
        path: the file.

    Returns:
        Name -> array.
    """
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def _problem(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


class JaxTrainState:
    """The model, optimizer, step and data position of a JAX run, and where they are saved.

    Args:
        model: the model.
        optimizer: its optimizer (built).
        out_dir: the run's folder.
        writer: whether this process writes (process 0); the others only read.
        keep: periodic checkpoints kept (the newest ones).
        keep_every_hours: also keep one periodic checkpoint per this many hours
            (by file time, counting from the oldest kept).
    """

    def __init__(
        self,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        out_dir: str,
        writer: bool,
        keep: int = 3,
        keep_every_hours: float | None = None,
    ):
        self.variables = [
            *model.trainable_variables,
            *model.non_trainable_variables,
            *optimizer.variables,
        ]
        self.model, self.out_dir, self.writer = model, out_dir, writer
        self.keep, self.keep_every_hours = keep, keep_every_hours
        self.step = 0
        self.examples = 0
        self.restored: str | None = None  # what ``restore`` loaded
        self.skipped: list[tuple[str, str]] = []  # (path, why) of damaged ones it passed over

    def _folder(self, name: str) -> str:
        return os.path.join(self.out_dir, name)

    def _files(self, name: str) -> list[tuple[int, str]]:
        """``(step, path)`` of a folder's files, oldest first."""
        folder = self._folder(name)
        names = os.listdir(folder) if os.path.isdir(folder) else []
        found = [
            (int(m.group(1)), os.path.join(folder, n)) for n in names if (m := _NAME.fullmatch(n))
        ]
        return sorted(found)

    def candidates(self) -> list[str]:
        """Every backup and periodic checkpoint, newest (highest step) first."""
        found = self._files("backup") + self._files("checkpoints")
        return [path for _, path in sorted(found, key=lambda f: f[0], reverse=True)]

    def _check_backend(self) -> None:
        """Refuses a folder whose backups TensorFlow wrote (they would be silently ignored)."""
        for name in ("backup", "checkpoints"):
            if os.path.exists(os.path.join(self._folder(name), "checkpoint")):
                raise ValueError(
                    f"{self._folder(name)!r} holds TensorFlow checkpoints: resume that run "
                    "with --backend tensorflow, or choose another --out"
                )

    def _check_matches(self, path: str, arrays: dict[str, np.ndarray]) -> None:
        names = arrays["names"]
        if len(names) != len(self.variables):
            raise ValueError(
                f"{path} is a backup of another model or optimizer ({len(names)} variables, "
                f"{len(self.variables)} here); resume with the settings it was written with, "
                "or choose another --out"
            )
        for i, variable in enumerate(self.variables):
            saved = arrays[f"v{i:04d}"]
            if saved.shape != tuple(variable.shape):
                raise ValueError(
                    f"{path} is a backup of another model or optimizer ({names[i]}: "
                    f"{list(saved.shape)} there, {list(variable.shape)} here); resume with the "
                    "settings it was written with, or choose another --out"
                )

    def _read(self, path: str) -> dict[str, np.ndarray] | str:
        """The file's arrays, or why it does not read whole."""
        try:
            arrays = read_whole(path)
        except Exception as error:  # truncated zips raise BadZipFile, EOFError, ValueError ...
            return _problem(error)
        count = len(arrays.get("names", []))
        wanted = {"step", "examples", "names", *(f"v{i:04d}" for i in range(count))}
        if not wanted <= set(arrays):
            return f"not a keras_vit JAX backup (it lacks {sorted(wanted - set(arrays))[:3]})"
        return arrays

    def restore(self) -> int:
        """Loads the newest backup or checkpoint that reads whole, if there is any.

        Returns:
            The step it was taken at (0 when there is none).

        Raises:
            ValueError: when none reads whole, for a backup of another model or
                optimizer, or for a folder with TensorFlow checkpoints.
        """
        self._check_backend()
        self.restored, self.skipped = None, []
        candidates = self.candidates()
        for path in candidates:
            arrays = self._read(path)
            if isinstance(arrays, str):
                self.skipped.append((path, arrays))
                continue
            self._check_matches(path, arrays)
            for i, variable in enumerate(self.variables):
                variable.assign(arrays[f"v{i:04d}"])
            self.step, self.examples = int(arrays["step"]), int(arrays["examples"])
            self.restored = path
            break
        if candidates and self.restored is None:
            reasons = "; ".join(f"{path}: {problem}" for path, problem in self.skipped)
            raise ValueError(
                f"no backup or checkpoint in {self.out_dir!r} reads whole ({reasons}); remove "
                "them to start afresh, or choose another --out"
            )
        return self.step

    def _save(self, name: str) -> str:
        folder = self._folder(name)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"ckpt-{self.step}.npz")
        arrays = {f"v{i:04d}": _to_numpy(v) for i, v in enumerate(self.variables)}
        arrays["names"] = np.array([v.path for v in self.variables])
        arrays["step"], arrays["examples"] = np.int64(self.step), np.int64(self.examples)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        write_atomic(path, write, suffix=".npz")
        return path

    def save_backup(self) -> None:
        """Saves a preemption backup at the current step (the newest two are kept)."""
        if not self.writer:
            return
        self._save("backup")
        for _, path in self._files("backup")[:-BACKUPS_KEPT]:
            os.unlink(path)

    def save_checkpoint(self) -> None:
        """Saves a periodic checkpoint at the current step (kept by the retention rule)."""
        if not self.writer:
            return
        self._save("checkpoints")
        older = [path for _, path in self._files("checkpoints")[: -self.keep]]
        anchor = None  # the last one kept for keep_every_hours
        for path in older:
            mtime = os.path.getmtime(path)
            hours = self.keep_every_hours
            if hours and (anchor is None or mtime - anchor >= hours * 3600):
                anchor = mtime
                continue
            os.unlink(path)
