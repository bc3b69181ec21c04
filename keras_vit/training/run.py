"""A training run as both backends make it: setup, the loop of chunks, the final outputs.

``trainer.py`` (TensorFlow) and ``jax_fit.py`` (JAX) differ only in how a chunk
of steps is trained, how the eval split is evaluated and how backups are
written. Everything else is decided here, once: the recipe resolved against its
dataset, the model and optimizer at the run's precision, resuming, where a chunk
ends (wherever a log, backup, checkpoint or evaluation is due), the progress bar
and TensorBoard logs, SIGTERM, and at the end ``model.keras``, the
official-format ``model.npz``, ``metrics.json`` and the ``TrainResult``.

Example (a backup every 100 steps, no periodic checkpoints, a log every 30):
    >>> from keras_vit.training.run import next_chunk
    >>> next_chunk(95, total=1000, stops=[100, 0, 30])
    5
    >>> next_chunk(100, total=1000, stops=[100, 0, 30])
    20
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

import keras

from keras_vit.atomic import write_atomic, write_text_atomic
from keras_vit.checkpoints import save_npz
from keras_vit.data import Source, load_source, train_dataset
from keras_vit.training.model import build_model
from keras_vit.training.monitor import Logs, Preemption
from keras_vit.training.optim import WarmupSchedule, make_optimizer
from keras_vit.training.options import PRECISIONS, RunOptions, check_resolved
from keras_vit.training.recipes import Recipe, resolve
from keras_vit.training.state import weights_digest

if TYPE_CHECKING:
    import tensorflow as tf


@dataclasses.dataclass
class TrainResult:
    """What ``fit`` returns.

    Attributes:
        accuracy, top5, loss: the final evaluation on the recipe's eval split.
        steps: the steps trained (the recipe's, resumed or not).
        seconds: wall time of this call.
        digest: ``weights_digest`` of the final weights.
        model: the trained model.
        recipe: the recipe as the dataset resolved it.
        paths: ``model.keras`` and ``model.npz`` (None on tasks other than the chief).
    """

    accuracy: float
    top5: float
    loss: float
    steps: int
    seconds: float
    digest: str
    model: keras.Model
    recipe: Recipe
    paths: tuple[str, str] | None


class State(Protocol):
    """What the loop asks of a run's state (``state.TrainState``, ``jax_state.JaxTrainState``)."""

    restored: str | None
    skipped: list[tuple[str, str]]

    def restore(self) -> int: ...

    def save_backup(self) -> None: ...

    def save_checkpoint(self) -> None: ...


class ChunkTotals(NamedTuple):
    """A trained chunk's sums over its steps, and the seconds that training took."""

    loss: float
    correct: float
    grad_norm: float
    seconds: float


TrainChunk = Callable[[int, int], ChunkTotals]  # (step, chunk): trains, advances the state
Evaluate = Callable[[], dict[str, float]]  # loss, accuracy, top5, examples on the eval split


@dataclasses.dataclass
class Run:
    """What a backend's ``fit`` sets up for ``train_loop``."""

    recipe: Recipe
    options: RunOptions
    source: Source
    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    state: State
    writer: bool  # whether this task writes checkpoints, logs and outputs (the chief)
    start: float  # time.perf_counter() when fit was called
    preemptible: bool  # whether SIGTERM stops the run at a chunk's end (one worker only)


def load_and_resolve(recipe: Recipe, options: RunOptions, replicas: int) -> tuple[Recipe, Source]:
    """The recipe's dataset, and the recipe resolved against it (and ``options.steps``).

    Args:
        recipe: what to train.
        options: how to run it.
        replicas: the replicas that share each batch.

    Returns:
        The resolved recipe and its dataset.

    Raises:
        ValueError: for a batch that does not divide over replicas and accumulation steps.
        keras_vit.data.DataError: for data that cannot be read.
    """
    source = load_source(recipe.dataset, options.data_dir, options.manual_dir, options.download)
    if options.steps is not None:
        recipe = dataclasses.replace(recipe, steps=options.steps)
    recipe = resolve(recipe, source)
    check_resolved(recipe, replicas, options.accum_steps)
    return recipe, source


def build_run(
    recipe: Recipe,
    options: RunOptions,
    source: Source,
    make_state: Callable[..., State],
    writer: bool,
    start: float,
    preemptible: bool,
) -> Run:
    """The model, its optimizer (the recipe's schedule) and state, at the run's precision.

    Call it in the strategy's (or distribution's) scope; the global dtype policy
    is as it was afterwards.

    Args:
        recipe: the resolved recipe.
        options: how to run it (``precision``, ``init``, ``keep``, ...).
        source: the recipe's dataset.
        make_state: ``TrainState`` or ``JaxTrainState`` (or alike).
        writer, start, preemptible: as ``Run``'s.

    Returns:
        The run, not yet resumed.
    """
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PRECISIONS[options.precision])
    try:
        model = build_model(recipe, source.num_classes, recipe.image_size, options.init)
        schedule = WarmupSchedule(
            recipe.learning_rate,
            total_steps=recipe.steps,
            warmup_steps=recipe.warmup_steps,
            decay=recipe.decay,
            end=recipe.end_learning_rate,
        )
        optimizer = make_optimizer(
            recipe.optimizer,
            schedule,
            model,
            weight_decay=recipe.weight_decay,
            momentum=recipe.momentum,
            beta_1=recipe.beta_1,
            beta_2=recipe.beta_2,
            loss_scale=options.precision == "fp16",
        )
        optimizer.build(model.trainable_variables)
        state = make_state(
            model, optimizer, options.out_dir, writer, options.keep, options.keep_every_hours
        )
    finally:
        keras.config.set_dtype_policy(previous_policy)
    return Run(recipe, options, source, model, optimizer, state, writer, start, preemptible)


def resume(state: State) -> int:
    """Restores the newest backup that reads whole, saying which one and what it passed over.

    Args:
        state: the run's state.

    Returns:
        The step restored (0 for a fresh run).
    """
    step = state.restore()
    for path, problem in state.skipped:
        print(f"{path} is damaged ({problem}); falling back to an older one", flush=True)
    if step:
        print(f"resumed from {state.restored} at step {step}", flush=True)
    return step


def train_stream(
    run: Run, start_example: int, input_context: tf.distribute.InputContext | None = None
) -> tf.data.Dataset:
    """The recipe's training examples (``keras_vit.data.train_dataset``) from ``start_example``.

    Args:
        run: the run.
        start_example: the examples already consumed (the state's).
        input_context: this worker's share (a ``tf.distribute.InputContext``), or None.

    Returns:
        The batched ``tf.data.Dataset``.
    """
    recipe = run.recipe
    return train_dataset(
        run.source,
        recipe.train_split,
        recipe.image_size,
        recipe.batch_size,
        run.options.seed,
        recipe.augmentation,
        start_example=start_example,
        input_context=input_context,
    )


def next_chunk(step: int, total: int, stops: Sequence[int]) -> int:
    """Steps to train from ``step``: up to the next multiple of any non-zero stop, or to ``total``.

    Args:
        step: the step reached.
        total: the run's last step.
        stops: intervals (steps) at which a chunk must end; 0 for none.

    Returns:
        The chunk's length.
    """
    return min(total - step, *(every - step % every for every in stops if every))


def train_loop(run: Run, step: int, train: TrainChunk, evaluate: Evaluate) -> TrainResult:
    """Trains from ``step`` to the recipe's last in chunks, then evaluates and saves.

    A chunk ends wherever a log, backup, checkpoint or evaluation is due.
    SIGTERM (``run.preemptible``) stops the run at the end of a chunk, with a backup.

    Args:
        run: what the backend set up.
        step: the step restored.
        train: trains ``chunk`` steps from ``step`` and advances ``run.state``.
        evaluate: evaluates the model on the recipe's eval split.

    Returns:
        The final evaluation, the model and where it was saved.

    Raises:
        SystemExit: after a SIGTERM, once a backup is saved.
    """
    recipe, options, total = run.recipe, run.options, run.recipe.steps
    logs = Logs(options.out_dir, run.writer)
    logs.start(recipe, options, run.source, step)
    verbose = options.verbose if run.writer else 0
    progress = keras.utils.Progbar(total, verbose=verbose, stateful_metrics=["loss", "accuracy"])
    progress.update(step)
    stops = [options.backup_every, options.checkpoint_every, options.eval_every, _log_every(run)]
    with Preemption(run.preemptible) as preemption:
        while step < total and not preemption.requested:
            chunk = next_chunk(step, total, stops)
            values = _averages(run, train(step, chunk), chunk)
            step += chunk
            progress.update(step, [(k, values[k]) for k in ("loss", "accuracy")])
            logs.scalars("train", step, values)
            _save_and_evaluate(run, step, logs, evaluate)
        if preemption.requested and step < total:
            run.state.save_backup()
            raise SystemExit(f"stopped by SIGTERM at step {step}; run again to resume")
    return _finish(run, step, logs, evaluate)


def _log_every(run: Run) -> int:
    """Steps between console/TensorBoard updates: as set, or about an epoch, at most 100."""
    examples = run.source.split(run.recipe.train_split).num_examples
    return run.options.log_every or min(100, max(1, examples // run.recipe.batch_size))


def _averages(run: Run, totals: ChunkTotals, chunk: int) -> dict[str, float]:
    """A chunk's logged values: its averages, the learning rate reached, its speed."""
    batch_size = run.recipe.batch_size
    return {
        "loss": totals.loss / chunk,
        "accuracy": totals.correct / (chunk * batch_size),
        "learning_rate": float(keras.ops.convert_to_numpy(run.optimizer.learning_rate)),
        "images_per_second": chunk * batch_size / totals.seconds,
        "grad_norm": totals.grad_norm / chunk,
    }


def _save_and_evaluate(run: Run, step: int, logs: Logs, evaluate: Evaluate) -> None:
    """The backup, checkpoint and evaluation due at ``step`` (the last step is always backed up)."""
    options, total = run.options, run.recipe.steps
    if options.backup_every and step % options.backup_every == 0 or step == total:
        run.state.save_backup()
    if options.checkpoint_every and step % options.checkpoint_every == 0:
        run.state.save_checkpoint()
    if options.eval_every and step % options.eval_every == 0 and step < total:
        logs.scalars("eval", step, evaluate())


def save_final(model: keras.Model, out_dir: str, writer: bool) -> tuple[str, str]:
    """Writes ``model.keras`` and the official-format ``model.npz``, each atomically.

    Args:
        model: the trained model.
        out_dir: the run's folder.
        writer: whether this task writes (the chief).

    Returns:
        Their paths (also on tasks that do not write).
    """
    keras_path = os.path.join(out_dir, "model.keras")
    npz_path = os.path.join(out_dir, "model.npz")
    if writer:
        write_atomic(keras_path, model.save, suffix=".keras")
        save_npz(model, npz_path)
    return keras_path, npz_path


def _finish(run: Run, step: int, logs: Logs, evaluate: Evaluate) -> TrainResult:
    """The final evaluation; ``model.keras``, ``model.npz`` and ``metrics.json`` (the chief)."""
    metrics = evaluate()
    logs.scalars("eval", step, metrics)
    paths = save_final(run.model, run.options.out_dir, run.writer)
    if run.writer:
        summary = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        write_text_atomic(os.path.join(run.options.out_dir, "metrics.json"), json.dumps(summary))
    return TrainResult(
        accuracy=float(metrics["accuracy"]),
        top5=float(metrics["top5"]),
        loss=float(metrics["loss"]),
        steps=step,
        seconds=time.perf_counter() - run.start,
        digest=weights_digest(run.model),
        model=run.model,
        recipe=run.recipe,
        paths=paths if run.writer else None,
    )
