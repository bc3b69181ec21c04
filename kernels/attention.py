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


def dot_product_attention(query, key, value, dropout_rate: float = 0.0, training=None, seed=None):
    """softmax(q kᵀ / √d) v over all heads.

    Args:
        query: ``[batch, tokens, heads, head_dim]``.
        key: ``[batch, tokens, heads, head_dim]``.
        value: ``[batch, tokens, heads, head_dim]``.
        dropout_rate: dropout on the attention weights (training only).
        training: whether dropout is active.
        seed: a ``keras.random.SeedGenerator`` for the dropout.

    Returns:
        ``[batch, tokens, heads, head_dim]``, in the dtype of ``query``.
    """
    depth = ops.shape(query)[-1]
    # The official code (flax) scales the query, not the logits: same result,
    # but the rounding of the official checkpoints' logits follows this order.
    query = query / ops.sqrt(ops.cast(depth, query.dtype))
    logits = ops.einsum("bqhd,bkhd->bhqk", query, key)
    # Softmax in float32 even for bfloat16/float16 inputs.
    weights = ops.cast(ops.softmax(ops.cast(logits, "float32"), axis=-1), value.dtype)
    if dropout_rate and training:
        weights = keras.random.dropout(weights, dropout_rate, seed=seed)
    return ops.einsum("bhqk,bkhd->bqhd", weights, value)
