"""The training loop: one function from a laptop to a TPU pod.

``fit`` locks the output folder against a second training, resolves a recipe
against its dataset, builds the model, optimizer and state in the strategy's
scope, resumes from the newest backup in the folder that reads whole, trains
with progress on the console and in TensorBoard, saves backups every
``backup_every`` steps (and on SIGTERM), and ends with an evaluation and the
final ``model.keras`` and ``model.npz``.

Example:
    >>> import tempfile
    >>> from keras_vit.training import RunOptions, fit, get_recipe
    >>> result = fit(get_recipe("digits"), RunOptions(tempfile.mkdtemp(), steps=20, verbose=0))
    >>> result.steps, 0.0 <= result.accuracy <= 1.0
    (20, True)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time

import keras
import tensorflow as tf

from keras_vit.atomic import write_text_atomic
from keras_vit.data import Source, load_source, train_dataset
from keras_vit.training.evaluate import evaluate_split
from keras_vit.training.lock import folder_lock
from keras_vit.training.model import build_model
from keras_vit.training.monitor import Logs, Preemption
from keras_vit.training.optim import WarmupSchedule, make_optimizer
from keras_vit.training.options import (
    PRECISIONS,
    RunOptions,
    check_options,
    check_resolved,
)
from keras_vit.training.recipes import Recipe, resolve
from keras_vit.training.state import TrainState, weights_digest
from keras_vit.training.step import StepFunction, make_eval_function, make_train_function
from keras_vit.training.strategy import is_chief, make_strategy


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


@dataclasses.dataclass
class _Run:
    """What ``fit`` sets up for the loop."""

    recipe: Recipe
    options: RunOptions
    strategy: tf.distribute.Strategy
    source: Source
    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    state: TrainState
    writer: bool  # whether this task writes checkpoints, logs and outputs (the chief)
    start: float  # time.perf_counter() when fit was called


def fit(recipe: Recipe, options: RunOptions) -> TrainResult:
    """Trains ``recipe`` as ``options`` say, resuming from ``options.out_dir`` if it holds a backup.

    Args:
        recipe: what to train (``get_recipe``, possibly with fields replaced).
        options: how to run it: output folder, strategy, precision, intervals.

    Returns:
        The final evaluation, the model and where it was saved.

    Raises:
        ValueError: for unknown names, bad sizes, a missing ``--init``, a batch
            that does not divide over replicas and accumulation steps, an output
            folder that another training holds (or that is a file), or backups
            none of which reads whole.
        keras_vit.data.DataError: for data that cannot be read.
        SystemExit: after a SIGTERM, once a backup is saved.
    """
    start = time.perf_counter()
    check_options(recipe, options)
    if options.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(options.seed)
    strategy = make_strategy(options.strategy, options.tpu)
    # One training per folder; only the chief writes, so only the chief locks.
    with folder_lock(options.out_dir) if is_chief(strategy) else contextlib.nullcontext():
        source = load_source(recipe.dataset, options.data_dir, options.manual_dir, options.download)
        if options.steps is not None:
            recipe = dataclasses.replace(recipe, steps=options.steps)
        recipe = resolve(recipe, source)
        check_resolved(recipe, strategy.num_replicas_in_sync, options.accum_steps)
        run = _build(recipe, options, strategy, source, start)
        _resume(run.state)
        return _loop(run)


def _resume(state: TrainState) -> None:
    """Restores the newest backup that reads whole, saying which one and what it passed over."""
    step = state.restore()
    for path, problem in state.skipped:
        print(f"{path} is damaged ({problem}); falling back to an older one", flush=True)
    if step:
        print(f"resumed from {state.restored} at step {step}", flush=True)


def _build(
    recipe: Recipe,
    options: RunOptions,
    strategy: tf.distribute.Strategy,
    source: Source,
    start: float,
) -> _Run:
    """The model, optimizer and state, made in the strategy's scope at the run's precision."""
    writer = is_chief(strategy)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PRECISIONS[options.precision])
    try:
        with strategy.scope():
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
            state = TrainState(
                model, optimizer, options.out_dir, writer, options.keep, options.keep_every_hours
            )
    finally:
        keras.config.set_dtype_policy(previous_policy)
    return _Run(recipe, options, strategy, source, model, optimizer, state, writer, start)


def _loop(run: _Run) -> TrainResult:
    """Trains from the restored step to the recipe's last in chunks, then evaluates and saves.

    A chunk is one call of the compiled step function; it ends wherever a log,
    backup, checkpoint or evaluation is due. SIGTERM (one worker) stops the run
    at the end of a chunk, with a backup.
    """
    recipe, options, total = run.recipe, run.options, run.recipe.steps
    train = make_train_function(
        run.model,
        run.optimizer,
        run.strategy,
        recipe.batch_size,
        accum_steps=options.accum_steps,
        grad_clip=recipe.grad_clip,
        label_smoothing=recipe.label_smoothing,
    )
    evaluate = make_eval_function(run.model, run.strategy, recipe.batch_size)
    iterator = _train_iterator(run)
    logs = Logs(options.out_dir, run.writer)
    step = int(run.state.step.numpy())
    logs.start(recipe, options, run.source, step)
    verbose = options.verbose if run.writer else 0
    progress = keras.utils.Progbar(total, verbose=verbose, stateful_metrics=["loss", "accuracy"])
    progress.update(step)
    stops = [options.backup_every, options.checkpoint_every, options.eval_every, _log_every(run)]
    single_worker = not isinstance(run.strategy, tf.distribute.MultiWorkerMirroredStrategy)
    with Preemption(single_worker) as preemption:
        while step < total and not preemption.requested:
            chunk = min(total - step, *(every - step % every for every in stops if every))
            values = _train_chunk(run, train, iterator, step, chunk)
            step += chunk
            progress.update(step, [(k, values[k]) for k in ("loss", "accuracy")])
            logs.scalars("train", step, values)
            _save_and_evaluate(run, step, logs, evaluate)
        if preemption.requested and step < total:
            run.state.save_backup()
            raise SystemExit(f"stopped by SIGTERM at step {step}; run again to resume")
    return _finish(run, step, logs, evaluate)


def _log_every(run: _Run) -> int:
    """Steps between console/TensorBoard updates: as set, or about an epoch, at most 100."""
    examples = run.source.split(run.recipe.train_split).num_examples
    return run.options.log_every or min(100, max(1, examples // run.recipe.batch_size))


def _train_iterator(run: _Run) -> tf.distribute.DistributedIterator:
    """The distributed training stream, from the example that the state has reached."""
    recipe = run.recipe
    examples = int(run.state.examples.numpy())
    data = run.strategy.distribute_datasets_from_function(
        lambda ctx: train_dataset(
            run.source,
            recipe.train_split,
            recipe.image_size,
            recipe.batch_size,
            run.options.seed,
            recipe.augmentation,
            start_example=examples,
            input_context=ctx,
        )
    )
    return iter(data)


def _train_chunk(
    run: _Run,
    train: StepFunction,
    iterator: tf.distribute.DistributedIterator,
    step: int,
    chunk: int,
) -> dict[str, float]:
    """Trains ``chunk`` steps from ``step``, advances the state, returns the chunk's averages."""
    batch_size = run.recipe.batch_size
    tick = time.perf_counter()
    loss, correct, norm = train(iterator, tf.constant(chunk)).numpy()
    seconds = time.perf_counter() - tick
    run.state.step.assign(step + chunk)
    run.state.examples.assign(run.state.examples + chunk * batch_size)
    return {
        "loss": loss / chunk,
        "accuracy": correct / (chunk * batch_size),
        "learning_rate": float(run.optimizer.learning_rate.numpy()),
        "images_per_second": chunk * batch_size / seconds,
        "grad_norm": norm / chunk,
    }


def _save_and_evaluate(run: _Run, step: int, logs: Logs, evaluate: StepFunction) -> None:
    """The backup, checkpoint and evaluation due at ``step`` (the last step is always backed up)."""
    options, total = run.options, run.recipe.steps
    if options.backup_every and step % options.backup_every == 0 or step == total:
        run.state.save_backup()
    if options.checkpoint_every and step % options.checkpoint_every == 0:
        run.state.save_checkpoint()
    if options.eval_every and step % options.eval_every == 0 and step < total:
        logs.scalars("eval", step, _evaluate(run, evaluate))


def _evaluate(run: _Run, evaluate: StepFunction) -> dict[str, float]:
    recipe = run.recipe
    return evaluate_split(
        run.model, run.source, recipe.eval_split, recipe.batch_size, run.strategy, evaluate
    )


def _finish(run: _Run, step: int, logs: Logs, evaluate: StepFunction) -> TrainResult:
    """The final evaluation; ``model.keras``, ``model.npz`` and ``metrics.json`` (the chief)."""
    metrics = _evaluate(run, evaluate)
    logs.scalars("eval", step, metrics)
    paths = run.state.save_final()
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
