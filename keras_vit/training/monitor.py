"""What watches a run from outside the step: SIGTERM (preemption) and TensorBoard.

Example:
    >>> import signal
    >>> from keras_vit.training.monitor import Preemption
    >>> with Preemption(enabled=True) as preemption:
    ...     signal.raise_signal(signal.SIGTERM)  # what a scheduler sends before it kills a job
    >>> preemption.requested
    True
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
from types import FrameType

import tensorflow as tf

from keras_vit.data import Source, train_dataset
from keras_vit.training.options import RunOptions
from keras_vit.training.recipes import Recipe


class Preemption:
    """Turns SIGTERM into a request to save a backup and stop at the next step boundary.

    Not with several workers: one worker stopping alone would leave the others
    waiting in a collective; there a SIGTERM ends the process and the run resumes
    from the last periodic backup.

    Args:
        enabled: catch SIGTERM (only possible in the main thread); when False
            SIGTERM keeps its usual effect.
    """

    def __init__(self, enabled: bool):
        self.requested = False
        self.enabled = enabled
        self._previous = None

    def __enter__(self) -> Preemption:
        if self.enabled and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class Logs:
    """TensorBoard writers of the chief (no-ops elsewhere).

    Args:
        out_dir: the run's folder; events go to ``logs/train`` and ``logs/eval``.
        writer: whether this task writes (the chief).
    """

    def __init__(self, out_dir: str, writer: bool):
        self.train = self.eval = None
        if writer:
            self.train = tf.summary.create_file_writer(os.path.join(out_dir, "logs", "train"))
            self.eval = tf.summary.create_file_writer(os.path.join(out_dir, "logs", "eval"))

    def scalars(self, which: str, step: int, values: dict[str, float]) -> None:
        """Writes scalars at ``step``.

        Args:
            which: ``"train"`` or ``"eval"``.
            step: the training step.
            values: scalars by name.
        """
        writer = getattr(self, which)
        if writer is not None:
            with writer.as_default(step=step):
                for name, value in values.items():
                    tf.summary.scalar(name, value)
            writer.flush()

    def start(self, recipe: Recipe, options: RunOptions, source: Source, step: int) -> None:
        """Writes the run's settings (as hyperparameters) and eight training inputs.

        Args:
            recipe: the resolved recipe.
            options: how it is run.
            source: the dataset.
            step: the step the run starts (or resumes) at.
        """
        if self.train is None:
            return
        from tensorboard.plugins.hparams import api as hparams

        flat = {**dataclasses.asdict(recipe), **dataclasses.asdict(options)}
        scalar_types = (bool, int, float, str)
        with self.train.as_default(step=step):
            hparams.hparams(
                {k: v if isinstance(v, scalar_types) else str(v) for k, v in flat.items()}
            )
            preview = train_dataset(
                source,
                recipe.train_split,
                recipe.image_size,
                batch_size=8,
                seed=options.seed,
                augmentation=recipe.augmentation,
                shuffle_buffer=1,
            )
            images = next(iter(preview))[0]
            tf.summary.image("inputs", (images + 1.0) / 2.0, max_outputs=8)
        self.train.flush()
