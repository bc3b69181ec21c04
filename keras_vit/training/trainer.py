"""The training loop: one function from a laptop to a TPU pod.

``fit`` locks the output folder against a second training, resolves a recipe
against its dataset, builds the model, optimizer and state in the strategy's
scope, resumes from the newest backup in the folder that reads whole, trains
with progress on the console and in TensorBoard, saves backups every
``backup_every`` steps (and on SIGTERM), and ends with an evaluation and the
final ``model.keras`` and ``model.npz``. What is not TensorFlow's (the loop's
chunks, backups, logs and outputs) is ``run.py``'s, shared with ``jax_fit.py``.

Example:
    >>> import tempfile
    >>> from keras_vit.training import RunOptions, fit, get_recipe
    >>> result = fit(get_recipe("digits"), RunOptions(tempfile.mkdtemp(), steps=20, verbose=0))
    >>> result.steps, 0.0 <= result.accuracy <= 1.0
    (20, True)
"""

from __future__ import annotations

import contextlib
import functools
import time

import keras
import tensorflow as tf

from keras_vit.training.evaluate import evaluate_split
from keras_vit.training.lock import folder_lock
from keras_vit.training.options import RunOptions, check_options
from keras_vit.training.recipes import Recipe
from keras_vit.training.run import (
    ChunkTotals,
    Run,
    TrainResult,
    build_run,
    load_and_resolve,
    resume,
    train_loop,
    train_stream,
)
from keras_vit.training.state import TrainState
from keras_vit.training.step import StepFunction, make_eval_function, make_train_function
from keras_vit.training.strategy import is_chief, make_strategy


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
    backend = keras.backend.backend()
    if backend == "jax":
        from keras_vit.training.jax_fit import fit_jax  # the same run on JAX

        return fit_jax(recipe, options)
    if backend != "tensorflow":
        raise ValueError(f"training runs on the tensorflow and jax backends, not {backend}")
    start = time.perf_counter()
    check_options(recipe, options)
    if options.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(options.seed)
    strategy = make_strategy(options.strategy, options.tpu)
    writer = is_chief(strategy)
    # One training per folder; only the chief writes, so only the chief locks.
    with folder_lock(options.out_dir) if writer else contextlib.nullcontext():
        recipe, source = load_and_resolve(recipe, options, strategy.num_replicas_in_sync)
        single_worker = not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        with strategy.scope():
            run = build_run(recipe, options, source, TrainState, writer, start, single_worker)
        return _loop(run, strategy, resume(run.state))


def _loop(run: Run, strategy: tf.distribute.Strategy, step: int) -> TrainResult:
    """``train_loop`` with the compiled step functions and the distributed stream from ``step``.

    A chunk is one call of the compiled train function.
    """
    recipe = run.recipe
    train = make_train_function(
        run.model,
        run.optimizer,
        strategy,
        recipe.batch_size,
        accum_steps=run.options.accum_steps,
        grad_clip=recipe.grad_clip,
        label_smoothing=recipe.label_smoothing,
    )
    evaluate = make_eval_function(run.model, strategy, recipe.batch_size)
    iterator = _train_iterator(run, strategy)
    return train_loop(
        run,
        step,
        functools.partial(_train_chunk, run, train, iterator),
        lambda: evaluate_split(
            run.model, run.source, recipe.eval_split, recipe.batch_size, strategy, evaluate
        ),
    )


def _train_iterator(
    run: Run, strategy: tf.distribute.Strategy
) -> tf.distribute.DistributedIterator:
    """The distributed training stream, from the example that the state has reached."""
    examples = int(run.state.examples.numpy())
    return iter(
        strategy.distribute_datasets_from_function(lambda ctx: train_stream(run, examples, ctx))
    )


def _train_chunk(
    run: Run,
    train: StepFunction,
    iterator: tf.distribute.DistributedIterator,
    step: int,
    chunk: int,
) -> ChunkTotals:
    """Trains ``chunk`` steps from ``step`` and advances the state."""
    tick = time.perf_counter()
    loss, correct, norm = train(iterator, tf.constant(chunk)).numpy()
    seconds = time.perf_counter() - tick
    run.state.step.assign(step + chunk)
    run.state.examples.assign(run.state.examples + chunk * run.recipe.batch_size)
    return ChunkTotals(loss, correct, norm, seconds)
