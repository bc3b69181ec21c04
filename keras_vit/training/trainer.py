"""The training loop: one function from a laptop to a TPU pod.

``fit`` resolves a recipe against its dataset, builds the model, optimizer and
state in the strategy's scope, resumes from the newest backup in the output
folder, trains with progress on the console and in TensorBoard, saves backups
every ``backup_every`` steps (and on SIGTERM), and ends with an evaluation
and the final ``model.keras`` and ``model.npz``.

Example:
    >>> import tempfile
    >>> from keras_vit.training import RunOptions, fit, get_recipe
    >>> result = fit(get_recipe("digits"), RunOptions(tempfile.mkdtemp(), steps=20, verbose=0))
    >>> result.steps, 0.0 <= result.accuracy <= 1.0
    (20, True)
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time

import keras
import tensorflow as tf

from keras_vit.atomic import write_text_atomic
from keras_vit.data import eval_dataset, eval_steps, load_source, train_dataset
from keras_vit.data.sources import Source
from keras_vit.models import create_model
from keras_vit.training.optim import WarmupSchedule, make_optimizer
from keras_vit.training.recipes import Recipe, resolve
from keras_vit.training.state import TrainState, weights_digest
from keras_vit.training.step import make_eval_function, make_train_function
from keras_vit.training.strategy import is_chief, make_strategy
from keras_vit.variants import parse_model_name

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


@dataclasses.dataclass
class TrainResult:
    """What ``fit`` returns."""

    accuracy: float
    top5: float
    loss: float
    steps: int
    seconds: float
    digest: str
    model: keras.Model
    recipe: Recipe
    paths: tuple[str, str] | None


def build_model(recipe: Recipe, num_classes: int, image_size: int, init: str | None) -> keras.Model:
    """The recipe's model; from ``init`` with a fresh zero head when the recipe says so."""
    _check_init(recipe, init)
    family, _, config = parse_model_name(recipe.model)
    args = dict(recipe.model_args)
    if family == "bit" and args:
        raise ValueError(f"{recipe.model} takes no {', '.join(args)} (BiT models have no dropout)")
    if family != "bit":
        args.setdefault("representation_size", config["hidden_size"] if recipe.pre_logits else None)
    model = create_model(
        recipe.model, weights=init, image_size=image_size, num_classes=num_classes, **args
    )
    if init and recipe.reset_head:
        for variable in model.get_layer("head").weights:
            variable.assign(tf.zeros(variable.shape, variable.dtype))
    return model


def _check_init(recipe: Recipe, init: str | None) -> None:
    if recipe.init_required and not init:
        raise ValueError(
            f"recipe {recipe.name!r} fine-tunes a checkpoint: pass --init (a file or a "
            "named checkpoint such as augreg_in21k)"
        )


def _check_options(recipe: Recipe, options: RunOptions) -> None:
    """Checks what can be checked before any data is read (or downloaded)."""
    _check_init(recipe, options.init)
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


def _check_resolved(recipe: Recipe, replicas: int, accum_steps: int) -> None:
    """Checks the step count and batch split once the dataset has resolved the recipe."""
    if recipe.steps < 1:
        raise ValueError(f"the run must have at least 1 step; got {recipe.steps}")
    if recipe.batch_size % (replicas * accum_steps):
        raise ValueError(
            f"batch size {recipe.batch_size} is not divisible by {replicas} replica(s) x "
            f"{accum_steps} accumulation step(s)"
        )


class _Preemption:
    """Turns SIGTERM into a request to save a backup and stop at the next step boundary.

    Not with several workers: one worker stopping alone would leave the others
    waiting in a collective; there a SIGTERM ends the process and the run resumes
    from the last periodic backup.
    """

    def __init__(self, enabled: bool):
        self.requested = False
        self.enabled = enabled
        self._previous = None

    def __enter__(self):
        if self.enabled and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class _Logs:
    """TensorBoard writers of the chief (no-ops elsewhere)."""

    def __init__(self, out_dir: str, writer: bool):
        self.train = self.eval = None
        if writer:
            self.train = tf.summary.create_file_writer(os.path.join(out_dir, "logs", "train"))
            self.eval = tf.summary.create_file_writer(os.path.join(out_dir, "logs", "eval"))

    def scalars(self, which: str, step: int, values: dict[str, float]) -> None:
        writer = getattr(self, which)
        if writer is not None:
            with writer.as_default(step=step):
                for name, value in values.items():
                    tf.summary.scalar(name, value)
            writer.flush()

    def start(self, recipe: Recipe, options: RunOptions, source: Source, step: int) -> None:
        if self.train is None:
            return
        from tensorboard.plugins.hparams import api as hparams

        flat = {**dataclasses.asdict(recipe), **dataclasses.asdict(options)}
        with self.train.as_default(step=step):
            hparams.hparams(
                {
                    k: v if isinstance(v, (bool, int, float, str)) else str(v)
                    for k, v in flat.items()
                }
            )
            preview = train_dataset(
                source, recipe.train_split, recipe.image_size, 8, options.seed,
                recipe.augmentation, shuffle_buffer=1,
            )  # fmt: skip
            images = next(iter(preview))[0]
            tf.summary.image("inputs", (images + 1.0) / 2.0, max_outputs=8)
        self.train.flush()


def evaluate_split(
    model: keras.Model,
    source: Source,
    split: str,
    batch_size: int = 256,
    strategy: tf.distribute.Strategy | None = None,
    evaluate=None,
) -> dict[str, float]:
    """Top-1 and top-5 accuracy and mean loss of ``model`` on a whole split.

    Args:
        model: a classifier (built in ``strategy``'s scope).
        source: the dataset.
        split: the split, evaluated once, in order (plain resize to the model's input).
        batch_size: global batch size.
        strategy: where to run (the current strategy when None).
        evaluate: a function from ``make_eval_function`` to reuse (avoids retracing).

    Returns:
        ``{"loss", "accuracy", "top5", "examples"}``.
    """
    strategy = strategy or tf.distribute.get_strategy()
    evaluate = evaluate or make_eval_function(model, strategy, batch_size)
    image_size = int(model.input_shape[1])
    data = strategy.distribute_datasets_from_function(
        lambda ctx: eval_dataset(source, split, image_size, batch_size, ctx)
    )
    steps = eval_steps(source, split, batch_size)
    loss, top1, top5, count = evaluate(iter(data), tf.constant(steps)).numpy()
    count = max(float(count), 1.0)
    return {"loss": loss / count, "accuracy": top1 / count, "top5": top5 / count, "examples": count}


def fit(recipe: Recipe, options: RunOptions) -> TrainResult:
    """Trains ``recipe`` as ``options`` say, resuming from ``options.out_dir`` if it holds a backup.

    Raises:
        ValueError: for unknown names, bad sizes, a missing ``--init``, a batch
            that does not divide over replicas and accumulation steps.
        keras_vit.data.DataError: for data that cannot be read.
    """
    start = time.perf_counter()
    _check_options(recipe, options)
    if options.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(options.seed)
    strategy = make_strategy(options.strategy, options.tpu)
    source = load_source(recipe.dataset, options.data_dir, options.manual_dir, options.download)
    if options.steps is not None:
        recipe = dataclasses.replace(recipe, steps=options.steps)
    recipe = resolve(recipe, source)
    _check_resolved(recipe, strategy.num_replicas_in_sync, options.accum_steps)
    writer = is_chief(strategy)

    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PRECISIONS[options.precision])
    try:
        with strategy.scope():
            model = build_model(recipe, source.num_classes, recipe.image_size, options.init)
            schedule = WarmupSchedule(
                recipe.learning_rate, recipe.steps, recipe.warmup_steps, recipe.decay,
                recipe.end_learning_rate,
            )  # fmt: skip
            optimizer = make_optimizer(
                recipe.optimizer, schedule, model, recipe.weight_decay, recipe.momentum,
                recipe.beta_1, recipe.beta_2, loss_scale=options.precision == "fp16",
            )  # fmt: skip
            optimizer.build(model.trainable_variables)
            state = TrainState(
                model, optimizer, options.out_dir, writer, options.keep, options.keep_every_hours
            )
    finally:
        keras.config.set_dtype_policy(previous_policy)
    step = state.restore()
    if step:
        print(f"resumed from {state.latest()} at step {step}", flush=True)
    return _loop(recipe, options, strategy, source, model, optimizer, state, writer, start)


def _loop(recipe, options, strategy, source, model, optimizer, state, writer, start):
    total = recipe.steps
    steps_per_epoch = max(1, source.split(recipe.train_split).num_examples // recipe.batch_size)
    log_every = options.log_every or min(100, steps_per_epoch)
    train = make_train_function(
        model, optimizer, strategy, recipe.batch_size, options.accum_steps, recipe.grad_clip,
        recipe.label_smoothing,
    )  # fmt: skip
    evaluate = make_eval_function(model, strategy, recipe.batch_size)
    examples = int(state.examples.numpy())
    data = strategy.distribute_datasets_from_function(
        lambda ctx: train_dataset(
            source,
            recipe.train_split,
            recipe.image_size,
            recipe.batch_size,
            options.seed,
            recipe.augmentation,
            start_example=examples,
            input_context=ctx,
        )  # fmt: skip
    )
    iterator = iter(data)
    logs = _Logs(options.out_dir, writer)
    step = int(state.step.numpy())
    logs.start(recipe, options, source, step)
    progress = keras.utils.Progbar(
        total, verbose=options.verbose if writer else 0, stateful_metrics=["loss", "accuracy"]
    )
    progress.update(step)
    stops = [options.backup_every, options.checkpoint_every, options.eval_every, log_every]
    single_worker = not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    with _Preemption(single_worker) as preemption:
        while step < total and not preemption.requested:
            chunk = min(total - step, *(every - step % every for every in stops if every))
            tick = time.perf_counter()
            loss, correct, norm = train(iterator, tf.constant(chunk)).numpy()
            seconds = time.perf_counter() - tick
            step += chunk
            state.step.assign(step)
            state.examples.assign(state.examples + chunk * recipe.batch_size)
            values = {
                "loss": loss / chunk,
                "accuracy": correct / (chunk * recipe.batch_size),
                "learning_rate": float(optimizer.learning_rate.numpy()),
                "images_per_second": chunk * recipe.batch_size / seconds,
                "grad_norm": norm / chunk,
            }
            progress.update(step, [(k, values[k]) for k in ("loss", "accuracy")])
            logs.scalars("train", step, values)
            if options.backup_every and step % options.backup_every == 0 or step == total:
                state.save_backup()
            if options.checkpoint_every and step % options.checkpoint_every == 0:
                state.save_checkpoint()
            if options.eval_every and step % options.eval_every == 0 and step < total:
                logs.scalars("eval", step, evaluate_split(model, source, recipe.eval_split,
                              recipe.batch_size, strategy, evaluate))  # fmt: skip
        if preemption.requested and step < total:
            state.save_backup()
            raise SystemExit(f"stopped by SIGTERM at step {step}; run again to resume")
    metrics = evaluate_split(
        model, source, recipe.eval_split, recipe.batch_size, strategy, evaluate
    )
    logs.scalars("eval", step, metrics)
    paths = state.save_final()
    if writer:
        summary = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        write_text_atomic(os.path.join(options.out_dir, "metrics.json"), json.dumps(summary))
    return TrainResult(
        accuracy=float(metrics["accuracy"]),
        top5=float(metrics["top5"]),
        loss=float(metrics["loss"]),
        steps=step,
        seconds=time.perf_counter() - start,
        digest=weights_digest(model),
        model=model,
        recipe=recipe,
        paths=paths if writer else None,
    )
