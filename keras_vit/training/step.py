"""The distributed training and evaluation steps (one ``strategy.run`` each).

A training step runs on every replica: it splits the replica's batch into
``accum_steps`` micro-batches and sums their gradients, then sums the
gradients over all replicas, clips the global norm of that sum, and applies
it. The loss is a sum over examples divided by the global batch, so the
summed gradient is the gradient of the global batch's mean loss: one device,
several GPUs, several hosts and any accumulation give the same update.

Example:
    >>> import keras, tensorflow as tf
    >>> from keras_vit.models import create_model
    >>> from keras_vit.training.optim import WarmupSchedule, make_optimizer
    >>> from keras_vit.training.step import make_train_function
    >>> model = create_model("ViT-Mu/8", image_size=16, num_classes=3)
    >>> optimizer = make_optimizer("sgd", WarmupSchedule(0.1, 10), model)
    >>> strategy = tf.distribute.get_strategy()
    >>> train = make_train_function(model, optimizer, strategy, global_batch=4)
    >>> batch = (tf.zeros([4, 16, 16, 3]), tf.one_hot([0, 1, 2, 0], 3), tf.ones([4]))
    >>> data = iter(tf.data.Dataset.from_tensors(batch).repeat())
    >>> loss, correct, norm = train(data, tf.constant(1)).numpy()
    >>> round(float(loss), 4)  # ln 3: the zero head starts uniform
    1.0986
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

SUM = tf.distribute.ReduceOp.SUM

# ``f(iterator, steps)``: runs ``steps`` steps on batches from ``iterator``, returns totals.
StepFunction = Callable[[object, tf.Tensor], tf.Tensor]


def _loss_and_correct(logits, labels, weights, global_batch: int, label_smoothing: float):
    logits = tf.cast(logits, tf.float32)
    per_example = keras.losses.categorical_crossentropy(
        labels, logits, from_logits=True, label_smoothing=label_smoothing
    )
    loss = tf.reduce_sum(per_example * weights) / global_batch
    hits = tf.cast(tf.argmax(logits, -1) == tf.argmax(labels, -1), tf.float32)
    return loss, tf.reduce_sum(hits * weights)


def make_train_function(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    strategy: tf.distribute.Strategy,
    global_batch: int,
    accum_steps: int = 1,
    grad_clip: float | None = None,
    label_smoothing: float = 0.0,
    jit_compile: bool = True,
) -> StepFunction:
    """A ``tf.function(iterator, steps)`` that runs ``steps`` training steps.

    Args:
        model: the model (built in ``strategy.scope()``).
        optimizer: from ``keras_vit.training.optim.make_optimizer``.
        strategy: the strategy.
        global_batch: examples per step over all replicas.
        accum_steps: micro-batches per replica batch whose gradients are summed.
        grad_clip: clip the summed gradient to this global norm (None: no clipping).
        label_smoothing: label smoothing of the cross-entropy.
        jit_compile: compile each micro-batch's forward and backward pass with XLA
            (one function per replica; the all-reduce and the update stay outside).
            On 2 CPU cores it needed less memory than without, at about the same
            speed (README, "Kernels and speed").

    Returns:
        The function; it returns ``[sum of losses, correct predictions, sum of
        gradient norms (before clipping)]`` over the steps it ran.
    """
    variables = model.trainable_variables
    loss_scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def gradients(images, labels, weights):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss, correct = _loss_and_correct(
                logits, labels, weights, global_batch, label_smoothing
            )
            scaled = optimizer.scale_loss(loss) if loss_scaled else loss
        return tape.gradient(scaled, variables), loss, correct

    if jit_compile:
        gradients = tf.function(gradients, jit_compile=True)

    def replica_step(images, labels, weights):
        if accum_steps == 1:
            grads, loss, correct = gradients(images, labels, weights)
        else:
            micro = images.shape[0] // accum_steps
            grads = [tf.zeros(v.shape, v.dtype) for v in variables]
            loss, correct = tf.zeros([]), tf.zeros([])
            for i in tf.range(accum_steps):
                part = slice(i * micro, (i + 1) * micro)
                g, step_loss, step_correct = gradients(images[part], labels[part], weights[part])
                grads = [a + b for a, b in zip(grads, g)]
                loss, correct = loss + step_loss, correct + step_correct
        grads = tf.distribute.get_replica_context().all_reduce(SUM, grads)
        norm = tf.linalg.global_norm(grads)
        scale = optimizer.dynamic_scale if loss_scaled else 1.0
        if grad_clip:
            grads, _ = tf.clip_by_global_norm(grads, grad_clip * scale, use_norm=norm)
        norm = norm / scale
        optimizer.apply(grads, variables)
        return loss, correct, norm

    @tf.function
    def train(iterator, steps):
        totals = tf.zeros([3])
        for _ in tf.range(steps):
            loss, correct, norm = strategy.run(replica_step, args=next(iterator))
            norm = strategy.experimental_local_results(norm)[0]  # equal on every replica
            totals += tf.stack(
                [strategy.reduce(SUM, loss, None), strategy.reduce(SUM, correct, None), norm]
            )
        return totals

    return train


def make_eval_function(
    model: keras.Model, strategy: tf.distribute.Strategy, global_batch: int
) -> StepFunction:
    """A ``tf.function(iterator, steps)`` that evaluates ``steps`` batches.

    Args:
        model: the model (built in ``strategy.scope()``).
        strategy: the strategy.
        global_batch: examples per batch over all replicas.

    Returns:
        The function; it returns ``[loss sum, top-1 hits, top-5 hits, examples]``
        over the batches it ran. Padding examples (weight 0) count for nothing.
    """

    def replica_step(images, labels, weights):
        logits = tf.cast(model(images, training=False), tf.float32)
        loss, top1 = _loss_and_correct(logits, labels, weights, 1, 0.0)
        k = min(5, logits.shape[-1])
        in_top5 = tf.math.in_top_k(tf.argmax(labels, -1), logits, k)
        top5 = tf.reduce_sum(tf.cast(in_top5, tf.float32) * weights)
        return tf.stack([loss, top1, top5, tf.reduce_sum(weights)])

    @tf.function
    def evaluate(iterator, steps):
        totals = tf.zeros([4])
        for _ in tf.range(steps):
            totals += strategy.reduce(SUM, strategy.run(replica_step, args=next(iterator)), None)
        return totals

    return evaluate
