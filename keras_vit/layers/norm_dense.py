"""LayerNorm and the projections that read it, as one TensorFlow function.

Used in training on TensorFlow for the attention's ``query``, ``key`` and
``value``: TensorFlow's gradient of ``LayerNorm_0`` and the three projections
keeps the normalized tokens (``[batch, tokens, hidden]``, the projections'
input) until the backward pass; this one keeps the LayerNorm's input and each
token's mean and inverse deviation, and recomputes the normalized tokens there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf


def _features(x, kernels) -> int:
    """``x``'s last axis, which every kernel's first must equal."""
    hidden = x.shape[-1]
    if hidden is None:
        raise ValueError("layer_norm_dense: x's last axis (the features) must be known")
    for kernel in kernels:
        if kernel.shape[0] != hidden:
            raise ValueError(
                f"layer_norm_dense: x has {hidden} features, a kernel {kernel.shape[0]} rows"
            )
    return hidden


def layer_norm_dense(
    x: tf.Tensor,
    scale: tf.Tensor,
    bias: tf.Tensor,
    epsilon: float,
    kernels: Sequence[tf.Tensor],
    biases: Sequence[tf.Tensor | None],
) -> tuple[tf.Tensor, ...]:
    """``LN(x) @ kernel + bias`` for each kernel, recomputing ``LN(x)`` in the gradient.

    The statistics, the normalization and its gradient are float32 (float64 for
    a float64 ``x``), as Keras's ``LayerNormalization`` computes them; the
    normalized tokens and the products are in the dtype of ``x``.

    Args:
        x: ``[..., hidden]``, the LayerNorm's input, ``hidden`` known.
        scale: ``[hidden]``, the LayerNorm's ``gamma``.
        bias: ``[hidden]``, the LayerNorm's ``beta``.
        epsilon: the LayerNorm's epsilon.
        kernels: each ``[hidden, *features]``, in the dtype of ``x``.
        biases: each ``[*features]`` (in the dtype of ``x``) or None, one per kernel.

    Returns:
        A tuple with one ``[..., *features]`` output per kernel, in the dtype of ``x``.

    Raises:
        ValueError: when ``x``'s last axis is unknown or a kernel's first axis is not it.

    Example:
        >>> import numpy as np
        >>> x = np.ones((2, 3, 4), "float32")
        >>> ones, zeros = np.ones(4, "float32"), np.zeros(4, "float32")
        >>> (out,) = layer_norm_dense(x, ones, zeros, 1e-6, [np.ones((4, 2, 5), "float32")], [None])
        >>> tuple(out.shape)
        (2, 3, 2, 5)
    """
    import tensorflow as tf  # the TensorFlow training path of Encoder1DBlock only

    hidden = _features(x, kernels)
    features = [list(kernel.shape[1:]) for kernel in kernels]
    matrices = [tf.reshape(kernel, [hidden, -1]) for kernel in kernels]
    offsets = [
        tf.zeros([m.shape[1]], x.dtype) if b is None else tf.reshape(b, [-1])
        for m, b in zip(matrices, biases)
    ]
    stats = tf.float64 if x.dtype == tf.float64 else tf.float32
    scale, bias = tf.cast(scale, stats), tf.cast(bias, stats)
    count = len(kernels)

    @tf.custom_gradient
    def forward(x, scale, bias, *weights):
        matrices, offsets = weights[:count], weights[count:]
        flat = tf.cast(tf.reshape(x, [-1, hidden]), stats)
        mean, variance = tf.nn.moments(flat, [1], keepdims=True)
        inverse = tf.math.rsqrt(variance + epsilon)
        normed = tf.cast((flat - mean) * inverse * scale + bias, x.dtype)
        outputs = [tf.matmul(normed, m) + b for m, b in zip(matrices, offsets)]

        def grad(*upstream):
            upstream = [tf.reshape(u, [-1, m.shape[1]]) for u, m in zip(upstream, matrices)]
            # Zero times an element of the incoming gradient ties the recomputation
            # to the backward pass: from ``x`` alone XLA would compute it in the
            # forward pass (the same value as there) and keep it. A non-finite
            # element there makes every gradient NaN (a loss-scaled step is skipped
            # as it would be anyway).
            tie = 0.0 * tf.reduce_sum(tf.cast(upstream[0][:1, :1], stats))
            unit = (tf.cast(tf.reshape(x, [-1, hidden]), stats) + tie - mean) * inverse
            normed = tf.cast(unit * scale + bias, x.dtype)
            d_normed = tf.cast(
                tf.add_n([tf.matmul(u, m, transpose_b=True) for u, m in zip(upstream, matrices)]),
                stats,
            )
            d_unit = d_normed * scale
            d_x = inverse * (
                d_unit
                - tf.reduce_mean(d_unit, 1, keepdims=True)
                - unit * tf.reduce_mean(d_unit * unit, 1, keepdims=True)
            )
            return (
                tf.reshape(tf.cast(d_x, x.dtype), tf.shape(x)),
                tf.reduce_sum(d_normed * unit, 0),
                tf.reduce_sum(d_normed, 0),
                *(tf.matmul(normed, u, transpose_a=True) for u in upstream),
                *(tf.cast(tf.reduce_sum(tf.cast(u, stats), 0), x.dtype) for u in upstream),
            )

        leading = tf.shape(x)[:-1]
        shaped = tuple(
            tf.reshape(out, tf.concat([leading, shape], 0)) for out, shape in zip(outputs, features)
        )
        return shaped, grad

    return forward(x, scale, bias, *matrices, *offsets)
