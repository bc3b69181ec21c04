"""Outputs and gradients on whichever Keras backend runs the tests.

The kernel and parity tests compare values and gradients; this is the one place
that knows how each backend differentiates (a tape, ``jax.vjp``, autograd).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np
from keras import ops


def as_f32(x) -> np.ndarray:
    """A tensor (any backend, any float dtype) as a float32 numpy array."""
    return np.asarray(ops.convert_to_numpy(ops.cast(x, "float32")))


def _cotangent(shape, dtype, seed: int):
    return ops.cast(np.random.default_rng(seed).normal(size=tuple(shape)).astype("float32"), dtype)


def value_and_grads(fn: Callable, inputs: Sequence, seed: int = 1) -> tuple:
    """``fn(*inputs)`` and the gradients of sum(output * a fixed random cotangent).

    Args:
        fn: a function of tensors returning one tensor.
        inputs: its arguments (backend tensors).
        seed: the seed of the cotangent (drawn in float32, cast to the output's dtype).

    Returns:
        ``(output, [gradient per input])``.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        out, vjp = jax.vjp(fn, *inputs)
        return out, list(vjp(_cotangent(out.shape, out.dtype, seed)))
    if backend == "torch":
        import torch

        inputs = [x.detach().requires_grad_(True) for x in inputs]
        out = fn(*inputs)
        cotangent = _cotangent(out.shape, out.dtype, seed)
        return out.detach(), list(torch.autograd.grad(out, inputs, cotangent, allow_unused=True))
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(inputs)
        out = fn(*inputs)
        loss = tf.reduce_sum(tf.cast(out * _cotangent(out.shape, out.dtype, seed), tf.float32))
    return out, tape.gradient(loss, list(inputs))


def with_weights(layer: keras.layers.Layer, call: Callable) -> Callable:
    """``call(x)`` as a function ``(x, *trainable weight values)``, for ``value_and_grads``.

    Args:
        layer: a built layer (or model) whose trainable weights ``call`` reads.
        call: a function of the input.

    Returns:
        A function that runs ``call`` with the weights replaced by its arguments.
    """

    def run(x, *weights):
        with keras.StatelessScope(state_mapping=list(zip(layer.trainable_variables, weights))):
            return call(x)

    return run
