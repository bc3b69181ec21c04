"""The training loop on JAX: ``fit`` of ``trainer.py`` with ``KERAS_BACKEND=jax``.

The same run as on TensorFlow, step for step: the recipe resolved against its
dataset, the folder lock, the model, optimizer and learning-rate schedule of
``optim.py``, resuming from the newest backup that reads whole, progress on the
console (``keras.utils.Progbar``) and in TensorBoard, backups every
``backup_every`` steps and on SIGTERM, and at the end an evaluation,
``model.keras``, the official-format ``model.npz`` and ``metrics.json`` with the
same keys (``run.py``'s, shared with ``trainer.py``). What differs is underneath: ``keras.distribution`` instead of
``tf.distribute`` (``jax_distribution.py``), a jitted stateless step
(``jax_step.py``) and ``.npz`` backups (``jax_state.py``).

TensorFlow is still needed here, and nowhere else on JAX: the input pipeline is
``keras_vit.data``'s ``tf.data`` (so both backends see the same examples in the
same order, augmented alike) and the TensorBoard events are ``tf.summary``'s
(``monitor.Logs``). Not on JAX: ``fp16`` (use ``bf16``), ``--deterministic``
(TensorFlow's op determinism) and ``--tpu ADDRESS`` (JAX finds TPUs itself).

Example (with ``KERAS_BACKEND=jax``; ``keras_vit.training.fit`` calls it there):
    >>> import tempfile
    >>> from keras_vit.training import RunOptions, get_recipe
    >>> from keras_vit.training.jax_fit import fit_jax
    >>> result = fit_jax(get_recipe("digits"), RunOptions(tempfile.mkdtemp(), steps=20, verbose=0))
    >>> result.steps, 0.0 <= result.accuracy <= 1.0
    (20, True)
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import keras
import numpy as np

from keras_vit.data import eval_dataset
from keras_vit.training.jax_distribution import global_batch, is_chief, make_distribution, replicas
from keras_vit.training.jax_state import JaxTrainState
from keras_vit.training.jax_step import assign_state, make_eval_step, make_train_step, state_values
from keras_vit.training.lock import folder_lock
from keras_vit.training.options import RunOptions, check_options
from keras_vit.training.recipes import Recipe
from keras_vit.training.run import (
    ChunkTotals,
    Run,
    TrainChunk,
    TrainResult,
    build_run,
    load_and_resolve,
    resume,
    train_loop,
    train_stream,
)


def check_jax_options(options: RunOptions) -> None:
    """Refuses, before anything is read, the options that have no JAX meaning.

    Args:
        options: how the run is asked for.

    Raises:
        ValueError: for ``fp16``, ``deterministic`` or a ``tpu`` address.
    """
    if options.precision == "fp16":
        raise ValueError(
            "--precision fp16 (dynamic loss scaling) is TensorFlow only; on JAX use bf16"
        )
    if options.deterministic:
        raise ValueError(
            "--deterministic is TensorFlow's op determinism; on JAX CPU runs are deterministic, "
            "on GPUs set XLA_FLAGS=--xla_gpu_deterministic_ops=true"
        )
    if options.tpu:
        raise ValueError("--tpu is TensorFlow only; on JAX run on the TPU VM (JAX finds its TPUs)")


def fit_jax(recipe: Recipe, options: RunOptions) -> TrainResult:
    """Trains ``recipe`` on JAX as ``options`` say, resuming from ``options.out_dir`` if it can.

    Args:
        recipe: what to train.
        options: how to run it.

    Returns:
        The final evaluation, the model and where it was saved.

    Raises:
        ValueError: as ``keras_vit.training.fit``, and for options that are
            TensorFlow only (``check_jax_options``).
        SystemExit: after a SIGTERM, once a backup is saved.
    """
    start = time.perf_counter()
    check_options(recipe, options)
    check_jax_options(options)
    keras.utils.set_random_seed(options.seed)
    distribution = make_distribution(options.strategy)
    writer = is_chief()
    with folder_lock(options.out_dir) if writer else contextlib.nullcontext():
        recipe, source = load_and_resolve(recipe, options, replicas(distribution))
        with distribution.scope() if distribution else contextlib.nullcontext():
            one_process = jax.process_count() == 1
            run = build_run(recipe, options, source, JaxTrainState, writer, start, one_process)
            return _loop(run, distribution, resume(run.state))


def _loop(run: Run, distribution: keras.distribution.DataParallel | None, step: int) -> TrainResult:
    """``train_loop`` with the jitted steps and this process's stream from ``step``."""
    recipe = run.recipe
    train = make_train_step(
        run.model,
        run.optimizer,
        recipe.batch_size,
        accum_steps=run.options.accum_steps,
        grad_clip=recipe.grad_clip,
        label_smoothing=recipe.label_smoothing,
    )
    evaluate = make_eval_step(run.model)
    return train_loop(
        run,
        step,
        _chunk_trainer(run, distribution, train),
        functools.partial(_evaluate, run, distribution, evaluate),
    )


def _input_context():
    """This process's share of the stream (None in one process): ``tf.distribute``'s own terms."""
    if jax.process_count() == 1:
        return None
    import tensorflow as tf  # the input pipeline is tf.data's (see the module docstring)

    count = jax.process_count()
    return tf.distribute.InputContext(count, jax.process_index(), count)


def _batches(run: Run) -> Iterator[tuple[np.ndarray, ...]]:
    """This process's training batches, from the example that the state has reached."""
    return train_stream(run, run.state.examples, _input_context()).as_numpy_iterator()


def _chunk_trainer(
    run: Run, distribution: keras.distribution.DataParallel | None, train: Callable
) -> TrainChunk:
    """Trains a chunk at a time on stateless values, then brings the variables up to date."""
    batches = _batches(run)
    values = state_values(run.model, run.optimizer)

    def train_chunk(step: int, chunk: int) -> ChunkTotals:
        nonlocal values
        tick = time.perf_counter()
        totals = jnp.zeros([3])
        for _ in range(chunk):
            values, metrics = train(values, *global_batch(distribution, next(batches)))
            totals = totals + metrics
        loss, correct, norm = (float(t) for t in np.asarray(totals))
        seconds = time.perf_counter() - tick
        assign_state(run.model, run.optimizer, values)
        run.state.step += chunk
        run.state.examples += chunk * run.recipe.batch_size
        return ChunkTotals(loss, correct, norm, seconds)

    return train_chunk


def _evaluate(
    run: Run, distribution: keras.distribution.DataParallel | None, evaluate: Callable
) -> dict[str, float]:
    """Top-1, top-5 and mean loss on the recipe's eval split, as ``evaluate_split``."""
    recipe = run.recipe
    data = eval_dataset(
        run.source, recipe.eval_split, recipe.image_size, recipe.batch_size, _input_context()
    )
    values = state_values(run.model, run.optimizer)
    totals = jnp.zeros([4])
    for batch in data.as_numpy_iterator():
        totals = totals + evaluate(values, *global_batch(distribution, batch))
    loss, top1, top5, count = (float(t) for t in np.asarray(totals))
    count = max(count, 1.0)
    return {"loss": loss / count, "accuracy": top1 / count, "top5": top5 / count, "examples": count}
