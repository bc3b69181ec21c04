"""Multi-head dot-product attention in the official checkpoints' layout.

Example:
    >>> import numpy as np
    >>> from keras_vit.kernels import dot_product_attention
    >>> q = k = v = np.ones((1, 3, 2, 4), "float32")
    >>> tuple(dot_product_attention(q, k, v).shape)
    (1, 3, 2, 4)
"""

from __future__ import annotations

import keras
from keras import ops


def attention_weights(query, key):
    """softmax(q kᵀ / √d) as ``[batch, heads, q_tokens, k_tokens]``.

    Args:
        query: ``[batch, tokens, heads, head_dim]``.
        key: ``[batch, tokens, heads, head_dim]``.

    Returns:
        The attention probabilities, in the dtype of ``query``; the softmax is
        computed in float32 even for bfloat16/float16 inputs.
    """
    depth = ops.shape(query)[-1]
    # The official code (flax) scales the query, not the logits: same result,
    # but the rounding of the official checkpoints' logits follows this order.
    query = query / ops.sqrt(ops.cast(depth, query.dtype))
    logits = ops.einsum("bqhd,bkhd->bhqk", query, key)
    return ops.cast(ops.softmax(ops.cast(logits, "float32"), axis=-1), query.dtype)


def dot_product_attention(
    query,
    key,
    value,
    dropout_rate: float = 0.0,
    training=None,
    seed=None,
    return_weights: bool = False,
):
    """softmax(q kᵀ / √d) v over all heads.

    Args:
        query: ``[batch, tokens, heads, head_dim]``.
        key: ``[batch, tokens, heads, head_dim]``.
        value: ``[batch, tokens, heads, head_dim]``.
        dropout_rate: dropout on the attention weights (training only).
        training: whether dropout is active.
        seed: a ``keras.random.SeedGenerator`` for the dropout.
        return_weights: also return the attention weights (before dropout).

    Returns:
        ``[batch, tokens, heads, head_dim]`` in the dtype of ``query``, and with
        ``return_weights`` the ``[batch, heads, tokens, tokens]`` weights too.
    """
    weights = attention_weights(query, key)
    dropped = weights
    if dropout_rate and training:
        dropped = keras.random.dropout(weights, dropout_rate, seed=seed)
    output = ops.einsum("bhqk,bkhd->bqhd", ops.cast(dropped, value.dtype), value)
    return (output, weights) if return_weights else output
