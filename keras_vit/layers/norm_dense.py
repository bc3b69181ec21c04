"""LayerNorm and the projections that read it, as one TensorFlow function.

Used in training on TensorFlow for the attention's ``query``, ``key`` and
``value``: TensorFlow's gradient of ``LayerNorm_0`` and the three projections
keeps the normalized tokens (``[batch, tokens, hidden]``, the projections'
input) until the backward pass; this one keeps the LayerNorm's input and each
token's mean and inverse deviation, and recomputes the normalized tokens there.
"""

from __future__ import annotations


def layer_norm_dense(x, scale, bias, epsilon: float, kernels, biases):
    """``LN(x) @ kernel + bias`` for each kernel, recomputing ``LN(x)`` in the gradient.

    The statistics, the normalization and its gradient are float32 (as Keras's
    ``LayerNormalization`` computes them for half-precision inputs); the
    normalized tokens and the products are in the dtype of ``x``.

    Args:
        x: ``[..., hidden]``, the LayerNorm's input.
        scale: ``[hidden]``, the LayerNorm's ``gamma``, float32.
        bias: ``[hidden]``, the LayerNorm's ``beta``, float32.
        epsilon: the LayerNorm's epsilon.
        kernels: each ``[hidden, *features]``, in the dtype of ``x``.
        biases: each ``[*features]`` (in the dtype of ``x``) or None, one per kernel.

    Returns:
        A tuple with one ``[..., *features]`` output per kernel, in the dtype of ``x``.

    Raises:
        ValueError: when a kernel's first axis is not ``x``'s last.

    Example:
        >>> import numpy as np
        >>> x = np.ones((2, 3, 4), "float32")
        >>> ones, zeros = np.ones(4, "float32"), np.zeros(4, "float32")
        >>> (out,) = layer_norm_dense(x, ones, zeros, 1e-6, [np.ones((4, 2, 5), "float32")], [None])
        >>> tuple(out.shape)
        (2, 3, 2, 5)
    """
    import tensorflow as tf  # the TensorFlow training path of Encoder1DBlock only

    hidden = x.shape[-1]
    for kernel in kernels:
        if kernel.shape[0] != hidden:
            raise ValueError(
                f"layer_norm_dense: x has {hidden} features, a kernel {kernel.shape[0]} rows"
            )
    features = [list(kernel.shape[1:]) for kernel in kernels]
    matrices = [tf.reshape(kernel, [hidden, -1]) for kernel in kernels]
    offsets = [
        tf.zeros([m.shape[1]], x.dtype) if b is None else tf.reshape(b, [-1])
        for m, b in zip(matrices, biases)
    ]
    count = len(kernels)

    @tf.custom_gradient
    def forward(x, scale, bias, *weights):
        matrices, offsets = weights[:count], weights[count:]
        flat = tf.cast(tf.reshape(x, [-1, hidden]), tf.float32)
        mean, variance = tf.nn.moments(flat, [1], keepdims=True)
        inverse = tf.math.rsqrt(variance + epsilon)
        normed = tf.cast((flat - mean) * inverse * scale + bias, x.dtype)
        outputs = [tf.matmul(normed, m) + b for m, b in zip(matrices, offsets)]

        def grad(*upstream):
            upstream = [tf.reshape(u, [-1, m.shape[1]]) for u, m in zip(upstream, matrices)]
            # Zero times an element of the incoming gradient ties the recomputation
            # to the backward pass: from ``x`` alone XLA would compute it in the
            # forward pass (the same value as there) and keep it.
            tie = 0.0 * tf.reduce_sum(tf.cast(upstream[0][:1, :1], tf.float32))
            unit = (tf.cast(tf.reshape(x, [-1, hidden]), tf.float32) + tie - mean) * inverse
            normed = tf.cast(unit * scale + bias, x.dtype)
            d_normed = tf.cast(
                tf.add_n([tf.matmul(u, m, transpose_b=True) for u, m in zip(upstream, matrices)]),
                tf.float32,
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
                *(tf.cast(tf.reduce_sum(tf.cast(u, tf.float32), 0), x.dtype) for u in upstream),
            )

        leading = tf.shape(x)[:-1]
        shaped = tuple(
            tf.reshape(out, tf.concat([leading, shape], 0)) for out, shape in zip(outputs, features)
        )
        return shaped, grad

    return forward(x, scale, bias, *matrices, *offsets)
