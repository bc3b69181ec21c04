"""Multi-head dot-product attention in the official checkpoints' layout.

Tensors are ``[batch, tokens, heads, head_dim]`` (the layout of the official
query/key/value kernels), so no transposes are needed around the kernel.

- ``attention_reference``: the plain formulation in ``keras.ops``.
- ``fused_attention``: the same computation as one compiled function of the
  current backend (``keras_vit.kernels.dispatch``); optional mask, attention
  dropout, returned weights, and a blockwise online-softmax path that never
  materialises the ``[tokens, tokens]`` matrix.

Example:
    >>> import numpy as np
    >>> from keras_vit.kernels import attention_reference, fused_attention
    >>> q = k = v = np.random.default_rng(0).normal(size=(1, 5, 2, 4)).astype("float32")
    >>> out, ref = fused_attention(q, k, v), attention_reference(q, k, v)
    >>> bool(np.allclose(np.asarray(out), np.asarray(ref), atol=1e-6))
    True
"""

from __future__ import annotations

import keras
from keras import ops

from keras_vit.kernels.dispatch import Tensor, backend_kernels, check_seed


def attention_weights(query: Tensor, key: Tensor, mask: Tensor | None = None) -> Tensor:
    """softmax(q kᵀ / √d) as ``[batch, heads, q_tokens, k_tokens]`` (keras.ops).

    Args:
        query: ``[batch, tokens, heads, head_dim]``.
        key: ``[batch, tokens, heads, head_dim]``.
        mask: optional boolean, broadcastable to ``[batch, heads, q, k]``; False
            entries get no attention.

    Returns:
        The attention probabilities in the dtype of ``query``; the softmax is
        computed in float32 even for bfloat16/float16 inputs.
    """
    query, key = ops.convert_to_tensor(query), ops.convert_to_tensor(key)
    depth = ops.shape(query)[-1]
    # The official code (flax) scales the query, not the logits: same result,
    # but the rounding of the official checkpoints' logits follows this order.
    query = query / ops.sqrt(ops.cast(depth, query.dtype))
    logits = ops.cast(ops.einsum("bqhd,bkhd->bhqk", query, key), "float32")
    if mask is not None:
        logits = ops.where(mask, logits, ops.full_like(logits, -1e30))
    return ops.cast(ops.softmax(logits, axis=-1), query.dtype)


def attention_reference(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    mask: Tensor | None = None,
    dropout_rate: float = 0.0,
    seed: int | keras.random.SeedGenerator | None = None,
) -> Tensor:
    """The reference: softmax(q kᵀ / √d) v in ``keras.ops``.

    Args:
        query: ``[batch, tokens, heads, head_dim]``.
        key: ``[batch, tokens, heads, head_dim]``.
        value: ``[batch, tokens, heads, head_dim]``.
        mask: optional boolean, broadcastable to ``[batch, heads, q, k]``.
        dropout_rate: dropout on the attention weights (``keras.random.dropout``);
            0 in inference.
        seed: the dropout's seed (an int or a ``keras.random.SeedGenerator``).

    Returns:
        ``[batch, tokens, heads, head_dim]`` in the dtype of ``value``.
    """
    value = ops.convert_to_tensor(value)
    weights = attention_weights(query, key, mask)
    if dropout_rate:
        weights = keras.random.dropout(weights, dropout_rate, seed=seed)
    return ops.einsum("bhqk,bkhd->bqhd", ops.cast(weights, value.dtype), value)


def fused_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    mask: Tensor | None = None,
    dropout_rate: float = 0.0,
    seed: Tensor | None = None,
    return_weights: bool = False,
    block_size: int | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """softmax(q kᵀ / √d) v over all heads, compiled into one function per backend.

    Args:
        query: ``[batch, tokens, heads, head_dim]``.
        key: ``[batch, tokens, heads, head_dim]``.
        value: ``[batch, tokens, heads, head_dim]``.
        mask: optional boolean, broadcastable to ``[batch, heads, q, k]``.
        dropout_rate: attention dropout; 0 in inference.
        seed: int32 ``[2]`` seed of the dropout (required when ``dropout_rate > 0``).
        return_weights: also return the float32 ``[batch, heads, q, k]`` weights
            (before dropout).
        block_size: key-block size of the memory-saving online-softmax path
            (no mask, dropout or returned weights there); None for the plain path.

    Returns:
        ``[batch, tokens, heads, head_dim]`` in the dtype of ``value``, and the
        weights when ``return_weights``.

    Raises:
        ValueError: for dropout without a seed, or the blockwise path with a
            mask, dropout or returned weights.
    """
    check_seed(seed, dropout_rate, kernel="fused_attention")
    if block_size and (mask is not None or dropout_rate or return_weights):
        raise ValueError("the blockwise path takes no mask, dropout or returned weights")
    output, weights = backend_kernels().attention(
        query, key, value, mask, float(dropout_rate), seed, block_size, bool(return_weights)
    )
    return (output, weights) if return_weights else output
