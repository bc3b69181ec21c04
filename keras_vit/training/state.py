"""Training state on disk: preemption backups and periodic checkpoints.

Backups (``<out>/backup``, the newest two kept) and periodic checkpoints
(``<out>/checkpoints``, a retention rule) are TensorFlow checkpoints of the
model, the optimizer, dropout's random state, the step and the examples consumed. TensorFlow writes
a checkpoint's files first and records it in the ``checkpoint`` file last,
with a rename, so a run killed at any moment leaves the previous checkpoint
as the newest complete one. A checkpoint damaged later (a truncated file) is
found by reading it whole before anything is restored, and the next older one
is used instead. The final model is written beside them by ``run.py``.

Example:
    >>> import os, tempfile
    >>> import keras, tensorflow as tf
    >>> from keras_vit.training.state import TrainState
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> state = TrainState(model, keras.optimizers.SGD(), tempfile.mkdtemp(), writer=True)
    >>> state.restore()
    0
    >>> state.step.assign(7); state.save_backup()
    <...>
    >>> state.restore()
    7
"""

from __future__ import annotations

import hashlib
import os

import keras
import numpy as np
import tensorflow as tf

ONLY_FIRST_REPLICA = tf.VariableAggregation.ONLY_FIRST_REPLICA


class TrainState:
    """The model, optimizer, step and data position, and where they are saved.

    Args:
        model: the model (variables created in the strategy's scope).
        optimizer: its optimizer.
        out_dir: the run's folder.
        writer: whether this task writes (the chief); other tasks only read.
        keep: periodic checkpoints kept (the newest ones).
        keep_every_hours: also keep one periodic checkpoint per this many hours.
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
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, aggregation=ONLY_FIRST_REPLICA)
        self.examples = tf.Variable(
            0, dtype=tf.int64, trainable=False, aggregation=ONLY_FIRST_REPLICA
        )
        # Dropout's random state too, so that a resumed run repeats an uninterrupted one.
        random_state = [v for v in model.variables if v.path.endswith("seed_generator_state")]
        self.checkpoint = tf.train.Checkpoint(
            model=model,
            optimizer=optimizer,
            step=self.step,
            examples=self.examples,
            random_state=random_state,
        )
        self.model, self.out_dir, self.writer = model, out_dir, writer
        self.restored: str | None = None  # what ``restore`` loaded
        self.skipped: list[tuple[str, str]] = []  # (path, why) of damaged ones it passed over
        self._backups = self._manager("backup", 2, None)
        self._periodic = self._manager("checkpoints", keep, keep_every_hours)

    def _manager(self, name: str, keep: int, hours: float | None) -> tf.train.CheckpointManager:
        return tf.train.CheckpointManager(
            self.checkpoint,
            os.path.join(self.out_dir, name),
            max_to_keep=keep,
            keep_checkpoint_every_n_hours=hours,
            checkpoint_name="ckpt",
        )

    def latest(self) -> str | None:
        """Returns the newest backup or checkpoint on record (by step), or None."""
        return next(iter(self.candidates()), None)

    def candidates(self) -> list[str]:
        """Every backup and periodic checkpoint on record, newest (highest step) first."""
        paths = {p for m in (self._backups, self._periodic) for p in m.checkpoints}
        return sorted(paths, key=lambda p: int(p.rsplit("-", 1)[1]), reverse=True)

    def restore(self) -> int:
        """Loads the newest backup or checkpoint that reads whole, if there is any.

        Each candidate is read tensor by tensor before anything is assigned, so
        a damaged one (truncated, missing files) is skipped whole and leaves the
        model untouched; ``self.skipped`` records why, ``self.restored`` what was loaded.

        Returns:
            The step it was taken at (0 when there is none).

        Raises:
            ValueError: when no candidate reads whole, for a checkpoint of
                another model or optimizer, or for a folder with a JAX run's backups.
        """
        self.restored, self.skipped = None, []
        for name in ("backup", "checkpoints"):  # jax_state.py's files would be silently ignored
            folder = os.path.join(self.out_dir, name)
            if os.path.isdir(folder) and any(f.endswith(".npz") for f in os.listdir(folder)):
                raise ValueError(
                    f"{folder!r} holds backups of a JAX run: resume it with --backend jax, or "
                    "choose another --out"
                )
        candidates = self.candidates()
        for path in candidates:
            problem = unreadable(path)
            if problem:
                self.skipped.append((path, problem))
                continue
            try:
                self.checkpoint.read(path).assert_existing_objects_matched()
            except (AssertionError, ValueError, tf.errors.OpError) as error:
                raise ValueError(
                    f"{path} is a checkpoint of another model or optimizer; resume with the "
                    f"settings it was written with, or choose another --out ({error})"
                ) from None
            self.restored = path
            break
        if candidates and self.restored is None:
            reasons = "; ".join(f"{path}: {problem}" for path, problem in self.skipped)
            raise ValueError(
                f"no backup or checkpoint in {self.out_dir!r} reads whole ({reasons}); remove "
                "them to start afresh, or choose another --out"
            )
        return int(self.step.numpy())

    def save_backup(self) -> None:
        """Saves a preemption backup at the current step (the newest two are kept)."""
        if self.writer:
            self._backups.save(checkpoint_number=int(self.step.numpy()))

    def save_checkpoint(self) -> None:
        """Saves a periodic checkpoint at the current step (kept by the retention rule)."""
        if self.writer:
            self._periodic.save(checkpoint_number=int(self.step.numpy()))


def unreadable(path: str) -> str | None:
    """Why a TensorFlow checkpoint does not read whole, after reading every tensor.

    Args:
        path: the checkpoint's prefix (``.../ckpt-150``).

    Returns:
        None when every tensor reads, else the error (its type and first line).
    """
    try:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as error:  # truncated files raise IndexError, OpError, ValueError ...
        text = str(error).strip().splitlines()
        return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")
    return None


def weights_digest(model: keras.Model) -> str:
    """A short hash of every weight's bytes: equal digests mean identical weights.

    Args:
        model: the model.

    Returns:
        16 hexadecimal digits.
    """
    digest = hashlib.sha256()
    for variable in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(variable)).tobytes())
    return digest.hexdigest()[:16]
