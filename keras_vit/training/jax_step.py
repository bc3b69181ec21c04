"""The JAX training and evaluation steps: pure functions of the variables' values, under ``jax.jit``.

A training step is the TensorFlow path's (``step.py``) in Keras's stateless API:
the loss is a sum over examples divided by the global batch, the gradients of
``accum_steps`` micro-batches are summed (``jax.lax.scan``), the global norm of
that sum is clipped to ``grad_clip``, and ``optimizer.stateless_apply`` applies
it once. The batch is one global array (sharded over devices by the caller's
``keras.distribution``), so XLA sums over devices itself.

Why not Keras's ``gradient_accumulation_steps=`` and ``global_clipnorm=``: they do
clip the accumulated (averaged) gradient, but in Keras 3.15 every micro-batch is
an optimizer call that advances ``optimizer._iterations``, which is what a
learning-rate schedule is evaluated at (``_get_current_learning_rate``), so the
warm-up and decay would run ``accum_steps`` times too fast; the step would also
be ``accum_steps`` jitted calls, and the gradient norm that the TensorFlow path
logs would be out of reach. Here a step is one call, the optimizer's counter
counts optimizer steps, and the norm is returned.

Example (with ``KERAS_BACKEND=jax``; ``tests/test_training_jax.py`` runs it):
    >>> import numpy as np
    >>> from keras_vit.models import create_model
    >>> from keras_vit.training.jax_step import make_train_step, state_values
    >>> from keras_vit.training.optim import WarmupSchedule, make_optimizer
    >>> model = create_model("ViT-Mu/8", image_size=16, num_classes=3)
    >>> optimizer = make_optimizer("sgd", WarmupSchedule(0.1, 10), model)
    >>> optimizer.build(model.trainable_variables)
    >>> train = make_train_step(model, optimizer, global_batch=4, accum_steps=2)
    >>> labels = np.eye(3, dtype="float32")[[0, 1, 2, 0]]
    >>> batch = (np.zeros([4, 16, 16, 3], "float32"), labels, np.ones([4], "float32"))
    >>> state, (loss, correct, norm) = train(state_values(model, optimizer), *batch)
    >>> round(float(loss), 4)  # ln 3: the zero head starts uniform
    1.0986
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import keras

# (trainable values, non-trainable values, optimizer values): what a step reads and returns.
State = tuple[list[jax.Array], list[jax.Array], list[jax.Array]]


def state_values(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> State:
    """The current values of the model's and the optimizer's variables, as a step takes them.

    Args:
        model: the model.
        optimizer: its optimizer (built).

    Returns:
        ``(trainable, non-trainable, optimizer)`` value lists, committed to their
        devices as a step's outputs are (else the second call would compile anew).
    """

    def values(variables):
        return [jax.device_put(v.value, v.value.sharding) for v in variables]

    return (
        values(model.trainable_variables),
        values(model.non_trainable_variables),
        values(optimizer.variables),
    )


def assign_state(model: keras.Model, optimizer: keras.optimizers.Optimizer, state: State) -> None:
    """Writes a step's values back into the variables (before saving, evaluating, logging).

    Args:
        model: the model.
        optimizer: its optimizer.
        state: values from a step.
    """
    variables = (model.trainable_variables, model.non_trainable_variables, optimizer.variables)
    for group, values in zip(variables, state, strict=True):
        for variable, value in zip(group, values, strict=True):
            variable.assign(value)


def _loss_and_correct(logits, labels, weights, global_batch: int, label_smoothing: float):
    logits = logits.astype(jnp.float32)
    per_example = keras.losses.categorical_crossentropy(
        labels, logits, from_logits=True, label_smoothing=label_smoothing
    )
    loss = jnp.sum(per_example * weights) / global_batch
    hits = (jnp.argmax(logits, -1) == jnp.argmax(labels, -1)).astype(jnp.float32)
    return loss, jnp.sum(hits * weights)


def _micro_batches(x: jax.Array, accum_steps: int) -> jax.Array:
    """``[b, ...]`` as ``[accum_steps, b / accum_steps, ...]``; micro-batch i is ``x[i::n]``.

    Strided rather than contiguous, so that every device's share of the batch
    has examples in every micro-batch.
    """
    return jnp.swapaxes(x.reshape(x.shape[0] // accum_steps, accum_steps, *x.shape[1:]), 0, 1)


def global_norm(grads: list[jax.Array]) -> jax.Array:
    """The global L2 norm of a list of gradients, in float32 (``tf.linalg.global_norm``)."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(g.astype(jnp.float32))) for g in grads))


def make_train_step(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    global_batch: int,
    accum_steps: int = 1,
    grad_clip: float | None = None,
    label_smoothing: float = 0.0,
) -> Callable:
    """A jitted ``step(state, images, labels, weights) -> (state, [loss, correct, norm])``.

    Args:
        model: the model.
        optimizer: from ``keras_vit.training.optim.make_optimizer``, built on the
            model's trainable variables (not a ``LossScaleOptimizer``).
        global_batch: examples per step over all devices.
        accum_steps: micro-batches whose gradients are summed into one update.
        grad_clip: clip the summed gradient to this global norm (None: no clipping).
        label_smoothing: label smoothing of the cross-entropy.

    Returns:
        The step; it returns the new state and ``[loss, correct predictions,
        gradient norm before clipping]`` of the step.
    """

    def loss_fn(trainable, non_trainable, images, labels, weights):
        logits, non_trainable = model.stateless_call(
            trainable, non_trainable, images, training=True
        )
        loss, correct = _loss_and_correct(logits, labels, weights, global_batch, label_smoothing)
        return loss, (correct, non_trainable)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state: State, images, labels, weights):
        trainable, non_trainable, optimizer_values = state
        if accum_steps == 1:
            (loss, (correct, non_trainable)), grads = grad_fn(
                trainable, non_trainable, images, labels, weights
            )
        else:

            def micro(carry, batch):
                grads, non_trainable, loss, correct = carry
                (part_loss, (part_correct, non_trainable)), part = grad_fn(
                    trainable, non_trainable, *batch
                )
                grads = [a + b for a, b in zip(grads, part, strict=True)]
                return (grads, non_trainable, loss + part_loss, correct + part_correct), None

            zeros = [jnp.zeros_like(v) for v in trainable]
            batches = tuple(_micro_batches(x, accum_steps) for x in (images, labels, weights))
            start = (zeros, non_trainable, jnp.zeros([]), jnp.zeros([]))
            (grads, non_trainable, loss, correct), _ = jax.lax.scan(micro, start, batches)
        norm = global_norm(grads)
        if grad_clip:  # tf.clip_by_global_norm: g * clip / max(norm, clip)
            grads = [g * (grad_clip / jnp.maximum(norm, grad_clip)).astype(g.dtype) for g in grads]
        trainable, optimizer_values = optimizer.stateless_apply(optimizer_values, grads, trainable)
        return (trainable, non_trainable, optimizer_values), jnp.stack([loss, correct, norm])

    return jax.jit(step)


def make_eval_step(model: keras.Model) -> Callable:
    """A jitted ``step(state, images, labels, weights) -> [loss sum, top-1, top-5, examples]``.

    Args:
        model: the model.

    Returns:
        The step, reading the trainable and non-trainable values of a ``State``;
        padding examples (weight 0) count for nothing. Top-5 counts ties at the
        boundary as in, as ``tf.math.in_top_k`` does.
    """

    def step(state: State, images, labels, weights):
        trainable, non_trainable, _ = state
        logits, _ = model.stateless_call(trainable, non_trainable, images, training=False)
        logits = logits.astype(jnp.float32)
        loss, top1 = _loss_and_correct(logits, labels, weights, 1, 0.0)
        k = min(5, logits.shape[-1])
        kth = jax.lax.top_k(logits, k)[0][:, -1]
        target = jnp.take_along_axis(logits, jnp.argmax(labels, -1)[:, None], -1)[:, 0]
        top5 = jnp.sum((target >= kth).astype(jnp.float32) * weights)
        return jnp.stack([loss, top1, top5, jnp.sum(weights)])

    return jax.jit(step)
