"""Multi-head dot-product attention in the official checkpoints' layout.

Tensors are ``[batch, tokens, heads, head_dim]`` (the layout of the official
query/key/value kernels), so no transposes are needed around the kernel.

- ``attention_reference``: the plain formulation in ``keras.ops``.
- ``fused_attention``: the same computation as one XLA-compiled function
  (``tf.function(jit_compile=True)`` on a pure function that captures no
  variables, so it also runs under ``tf.distribute``); optional mask,
  attention dropout, returned weights, and a blockwise online-softmax path that
  never materialises the ``[tokens, tokens]`` matrix.
- ``dense_attention``, ``blockwise_attention``, ``dropout``: the TensorFlow
  pieces that the compiled kernels (this one and ``encoder_block``) share.

Example:
    >>> import numpy as np
    >>> from keras_vit.kernels import attention_reference, fused_attention
    >>> q = k = v = np.random.default_rng(0).normal(size=(1, 5, 2, 4)).astype("float32")
    >>> bool(np.allclose(fused_attention(q, k, v), attention_reference(q, k, v), atol=1e-6))
    True
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops
from tensorflow.types.experimental import TensorLike


def attention_weights(
    query: TensorLike, key: TensorLike, mask: TensorLike | None = None
) -> tf.Tensor:
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
    depth = ops.shape(query)[-1]
    # The official code (flax) scales the query, not the logits: same result,
    # but the rounding of the official checkpoints' logits follows this order.
    query = query / ops.sqrt(ops.cast(depth, query.dtype))
    logits = ops.cast(ops.einsum("bqhd,bkhd->bhqk", query, key), "float32")
    if mask is not None:
        logits = ops.where(mask, logits, ops.full_like(logits, -1e30))
    return ops.cast(ops.softmax(logits, axis=-1), query.dtype)


def attention_reference(
    query: TensorLike,
    key: TensorLike,
    value: TensorLike,
    mask: TensorLike | None = None,
    dropout_rate: float = 0.0,
    seed: int | keras.random.SeedGenerator | None = None,
) -> tf.Tensor:
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
    weights = attention_weights(query, key, mask)
    if dropout_rate:
        weights = keras.random.dropout(weights, dropout_rate, seed=seed)
    return ops.einsum("bhqk,bkhd->bqhd", ops.cast(weights, value.dtype), value)


def dropout_seed(seed: TensorLike | None, *rates: float, kernel: str) -> tf.Tensor:
    """The int32 ``[2]`` seed of a kernel's dropout; zeros when no dropout is active.

    Args:
        seed: the caller's int32 ``[2]`` seed, or None.
        *rates: the kernel's dropout rates.
        kernel: the kernel's name, for the error message.

    Returns:
        ``seed``, or zeros when it is None and every rate is 0.

    Raises:
        ValueError: when a rate is set and ``seed`` is None.
    """
    if any(rates) and seed is None:
        raise ValueError(f"{kernel} needs a seed when dropout is active")
    return tf.zeros([2], tf.int32) if seed is None else seed


def dropout(x: tf.Tensor, rate: float, seed: tf.Tensor) -> tf.Tensor:
    """Inverted dropout with a stateless seed, for use inside the compiled kernels.

    Args:
        x: any tensor.
        rate: the share of entries set to zero (a Python float); 0 returns ``x``.
        seed: int32 ``[2]`` stateless seed; the same seed drops the same entries.

    Returns:
        ``x`` with dropped entries zeroed and the kept ones scaled by ``1 / (1 - rate)``.
    """
    if rate == 0.0:
        return x
    keep = tf.random.stateless_uniform(tf.shape(x), seed=seed) >= rate
    return tf.where(keep, x / (1.0 - rate), tf.zeros_like(x))


def dense_attention(
    query: tf.Tensor,
    key: tf.Tensor,
    value: tf.Tensor,
    mask: tf.Tensor | None = None,
    dropout_rate: float = 0.0,
    seed: tf.Tensor | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """The plain path of ``fused_attention`` in TensorFlow ops, for compiled kernels.

    Args:
        query: ``[batch, tokens, heads, head_dim]``.
        key: ``[batch, tokens, heads, head_dim]``.
        value: ``[batch, tokens, heads, head_dim]``.
        mask: optional boolean, broadcastable to ``[batch, heads, q, k]``.
        dropout_rate: dropout on the attention weights (a Python float).
        seed: int32 ``[2]`` dropout seed (required when ``dropout_rate > 0``).

    Returns:
        ``(output, weights)``: ``[batch, tokens, heads, head_dim]`` in the dtype
        of ``value``, and the float32 ``[batch, heads, q, k]`` weights before dropout.
    """
    scale = tf.math.rsqrt(tf.cast(tf.shape(query)[-1], tf.float32))
    # Scale folded into the (smaller) query; logits and softmax in float32.
    query = query * tf.cast(scale, query.dtype)
    logits = tf.cast(tf.einsum("bqhd,bkhd->bhqk", query, key), tf.float32)
    if mask is not None:
        logits = tf.where(mask, logits, -1e30)
    weights = tf.nn.softmax(logits, axis=-1)
    dropped = dropout(weights, dropout_rate, seed)
    output = tf.einsum("bhqk,bkhd->bqhd", tf.cast(dropped, value.dtype), value)
    return output, weights


def blockwise_attention(
    query: tf.Tensor, key: tf.Tensor, value: tf.Tensor, block_size: int
) -> tf.Tensor:
    """Online softmax over key blocks: memory O(tokens x block) instead of O(tokens²).

    Keys and values are padded to whole blocks (the padding masked out) and the
    blocks folded with a running maximum, sum and output, in float32.

    Args:
        query: ``[batch, tokens, heads, head_dim]``.
        key: ``[batch, tokens, heads, head_dim]``.
        value: ``[batch, tokens, heads, head_dim]``.
        block_size: keys per block.

    Returns:
        ``[batch, tokens, heads, head_dim]`` in the dtype of ``value``.
    """
    scale = tf.math.rsqrt(tf.cast(tf.shape(query)[-1], tf.float32))
    query = tf.cast(query, tf.float32) * scale
    batch, tokens, heads, depth = tf.unstack(tf.shape(key))
    blocks = (tokens + block_size - 1) // block_size
    padding = [[0, 0], [0, blocks * block_size - tokens], [0, 0], [0, 0]]

    def split(t):
        t = tf.reshape(
            tf.pad(tf.cast(t, tf.float32), padding), [batch, blocks, block_size, heads, -1]
        )
        return tf.transpose(t, [1, 0, 2, 3, 4])

    valid = tf.reshape(tf.range(blocks * block_size) < tokens, [blocks, block_size])
    q_tokens = tf.shape(query)[1]
    initial = (
        tf.fill([batch, heads, q_tokens], tf.constant(-1e30, tf.float32)),
        tf.zeros([batch, heads, q_tokens], tf.float32),
        tf.zeros([batch, heads, q_tokens, depth], tf.float32),
    )

    def step(carry, block):
        running_max, running_sum, accumulator = carry
        k, v, keep = block
        logits = tf.einsum("bqhd,bkhd->bhqk", query, k)
        logits = tf.where(keep[None, None, None, :], logits, -1e30)
        new_max = tf.maximum(running_max, tf.reduce_max(logits, axis=-1))
        probs = tf.exp(logits - new_max[..., None])
        correction = tf.exp(running_max - new_max)
        running_sum = running_sum * correction + tf.reduce_sum(probs, axis=-1)
        accumulator = accumulator * correction[..., None] + tf.einsum("bhqk,bkhd->bhqd", probs, v)
        return new_max, running_sum, accumulator

    blocks_k, blocks_v = split(key), split(value)
    if key.shape[1] is None:
        # Unknown length: a loop XLA compiles once (inference; XLA cannot hand its
        # TensorLists to TensorFlow's gradient).
        _, total, output = tf.foldl(step, (blocks_k, blocks_v, valid), initializer=initial)
    else:
        carry = initial
        for i in range(-(-key.shape[1] // block_size)):
            carry = step(carry, (blocks_k[i], blocks_v[i], valid[i]))
        _, total, output = carry
    output = output / total[..., None]
    return tf.cast(tf.transpose(output, [0, 2, 1, 3]), value.dtype)


@tf.function(jit_compile=True)
def _fused(query, key, value, mask, dropout_rate, seed, block_size):
    if block_size:
        return blockwise_attention(query, key, value, block_size), None
    return dense_attention(query, key, value, mask, dropout_rate, seed)


def fused_attention(
    query: TensorLike,
    key: TensorLike,
    value: TensorLike,
    mask: TensorLike | None = None,
    dropout_rate: float = 0.0,
    seed: TensorLike | None = None,
    return_weights: bool = False,
    block_size: int | None = None,
) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
    """softmax(q kᵀ / √d) v over all heads, compiled by XLA into one function.

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
    """
    seed = dropout_seed(seed, dropout_rate, kernel="fused_attention")
    if block_size and (mask is not None or dropout_rate or return_weights):
        raise ValueError("the blockwise path takes no mask, dropout or returned weights")
    output, weights = _fused(query, key, value, mask, float(dropout_rate), seed, block_size)
    return (output, weights) if return_weights else output
