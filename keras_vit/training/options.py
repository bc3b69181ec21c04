"""How a recipe is run (``RunOptions``), and the checks made before a run reads any data.

Example:
    >>> from keras_vit.training.options import RunOptions, check_options
    >>> from keras_vit.training.recipes import get_recipe
    >>> check_options(get_recipe("digits"), RunOptions(precision="fp8"))
    Traceback (most recent call last):
    ...
    ValueError: precision must be one of fp32, bf16, fp16; got 'fp8'
"""

from __future__ import annotations

import dataclasses
import os

from keras_vit.training.recipes import Recipe

PRECISIONS = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a recipe is run (not what it trains).

    Attributes:
        out_dir: the run's folder: backups, checkpoints, logs, final model.
        init: checkpoint to start from (file or named checkpoint), for fine-tuning.
        strategy: ``auto``, ``default``, ``mirrored``, ``multiworker`` or ``tpu``.
        tpu: TPU address for ``tpu``.
        precision: ``fp32``, ``bf16`` or ``fp16`` (dynamic loss scaling).
        accum_steps: micro-batches per step (gradient accumulation).
        seed: fixes the weights, data order and augmentation.
        steps: overrides the recipe's step count (the schedule follows).
        backup_every: steps between preemption backups.
        checkpoint_every: steps between kept checkpoints (0: none).
        keep: kept checkpoints; keep_every_hours keeps one per that many hours too.
        eval_every: steps between evaluations (0: only at the end).
        log_every: steps between console/TensorBoard updates (None: about an epoch, at most 100).
        data_dir, manual_dir, download: TFDS options.
        deterministic: TensorFlow's deterministic ops (bitwise-repeatable runs).
        verbose: 1 progress bar, 0 quiet.
    """

    out_dir: str = "runs/digits"
    init: str | None = None
    strategy: str = "auto"
    tpu: str | None = None
    precision: str = "fp32"
    accum_steps: int = 1
    seed: int = 0
    steps: int | None = None
    backup_every: int = 500
    checkpoint_every: int = 0
    keep: int = 3
    keep_every_hours: float | None = None
    eval_every: int = 0
    log_every: int | None = None
    data_dir: str | None = None
    manual_dir: str | None = None
    download: bool = True
    deterministic: bool = False
    verbose: int = 1


def check_init(recipe: Recipe, init: str | None) -> None:
    """Refuses a fine-tuning recipe without a checkpoint to start from.

    Args:
        recipe: the recipe.
        init: the checkpoint (``--init``), or None.

    Raises:
        ValueError: when the recipe needs ``init`` and has none.
    """
    if recipe.init_required and not init:
        raise ValueError(
            f"recipe {recipe.name!r} fine-tunes a checkpoint: pass --init (a file or a "
            "named checkpoint such as augreg_in21k)"
        )


def check_options(recipe: Recipe, options: RunOptions) -> None:
    """Checks what can be checked before any data is read (or downloaded).

    Args:
        recipe: the recipe, not yet resolved against its dataset.
        options: how it is run.

    Raises:
        ValueError: for a missing ``--init``, an output folder that is a file, a
            batch size below 1, an unknown precision, a negative interval, or
            ``accum_steps``, ``keep`` or ``log_every`` below 1.
    """
    check_init(recipe, options.init)
    if os.path.exists(options.out_dir) and not os.path.isdir(options.out_dir):
        raise ValueError(f"--out {options.out_dir!r} is a file, not a folder; choose a folder")
    if recipe.batch_size < 1:
        raise ValueError(f"batch size must be at least 1; got {recipe.batch_size}")
    if options.precision not in PRECISIONS:
        raise ValueError(
            f"precision must be one of {', '.join(PRECISIONS)}; got {options.precision!r}"
        )
    for name in ("backup_every", "checkpoint_every", "eval_every"):
        if getattr(options, name) < 0:
            raise ValueError(f"{name} must be 0 (off) or more; got {getattr(options, name)}")
    for name in ("accum_steps", "keep", "log_every"):
        value = getattr(options, name)
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1; got {value}")


def check_resolved(recipe: Recipe, replicas: int, accum_steps: int) -> None:
    """Checks the step count and batch split once the dataset has resolved the recipe.

    Args:
        recipe: the resolved recipe.
        replicas: replicas of the strategy (over all workers).
        accum_steps: micro-batches per step.

    Raises:
        ValueError: for no steps, or a batch that replicas x micro-batches does not divide.
    """
    if recipe.steps < 1:
        raise ValueError(f"the run must have at least 1 step; got {recipe.steps}")
    if recipe.batch_size % (replicas * accum_steps):
        raise ValueError(
            f"batch size {recipe.batch_size} is not divisible by {replicas} replica(s) x "
            f"{accum_steps} accumulation step(s)"
        )
