"""The TensorFlow kernels: pure functions compiled by XLA (``tf.function(jit_compile=True)``).

They capture no variables, so they also run under ``tf.distribute``. Reached
through ``keras_vit.kernels.dispatch`` on the TensorFlow backend only: nothing
else imports this module, so the other backends never import TensorFlow.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import tensorflow as tf

# Private: TensorFlow has no public "is this graph being compiled by XLA?".
from tensorflow.python.ops import control_flow_util


def xla_function(body: Callable) -> Callable:
    """``body`` as one XLA-compiled function, or traced inline where XLA compiles the caller.

    Inside a function that XLA already compiles whole (the training step,
    ``keras_vit.training.step``), a nested compiled function stays a separate
    call that XLA does not fuse into its caller: a ViT-S/16 training step with
    the kernels nested ran 1.28 images/s against 3.18 with them inlined here.
    The wrapper's ``compiled`` is the compiled function (its tracing count tells
    whether it ran).
    """
    compiled = tf.function(body, jit_compile=True)

    @functools.wraps(body)
    def call(*args, **kwargs):
        graph = tf.compat.v1.get_default_graph()
        if not tf.executing_eagerly() and control_flow_util.GraphOrParentsInXlaContext(graph):
            return body(*args, **kwargs)
        return compiled(*args, **kwargs)

    call.compiled = compiled
    return call


def _seed(seed: tf.Tensor | None) -> tf.Tensor:
    return tf.zeros([2], tf.int32) if seed is None else seed


def dropout(x: tf.Tensor, rate: float, seed: tf.Tensor) -> tf.Tensor:
    """Inverted dropout with a stateless int32 ``[2]`` seed (``x`` itself for rate 0)."""
    if rate == 0.0:
        return x
    keep = tf.random.stateless_uniform(tf.shape(x), seed=seed) >= rate
    return tf.where(keep, x / (1.0 - rate), tf.zeros_like(x))


def _logits(scaled_query, key, mask):
    """q kᵀ in float32, -1e30 where ``mask`` (if any) is False."""
    logits = tf.cast(tf.einsum("bqhd,bkhd->bhqk", scaled_query, key), tf.float32)
    return logits if mask is None else tf.where(mask, logits, -1e30)


def dense_attention(query, key, value, mask, dropout_rate, seed):
    """softmax(q kᵀ / √d) v: logits and softmax in float32; returns (output, weights)."""
    scale = tf.math.rsqrt(tf.cast(tf.shape(query)[-1], tf.float32))
    # Scale folded into the (smaller) query; logits and softmax in float32.
    logits = _logits(query * tf.cast(scale, query.dtype), key, mask)
    weights = tf.nn.softmax(logits, axis=-1)
    dropped = dropout(weights, dropout_rate, seed)
    output = tf.einsum("bhqk,bkhd->bqhd", tf.cast(dropped, value.dtype), value)
    return output, weights


def blockwise_attention(query, key, value, block_size: int):
    """Online softmax over key blocks (padded to whole blocks and masked), in float32."""
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


def recomputing_attention(query, key, value, mask):
    """softmax(q kᵀ / √d) v whose gradient recomputes the probabilities (no dropout).

    TensorFlow's gradient of ``dense_attention`` keeps every call's float32
    ``[batch, heads, q, k]`` probabilities until the backward pass (30 MB per
    ViT-B/16 block at batch 16); this one keeps the scaled query, the key, the
    value and each row's maximum and sum, and recomputes the logits there: one
    more ``q kᵀ`` per call.
    """
    scale = tf.math.rsqrt(tf.cast(tf.shape(query)[-1], tf.float32))

    @tf.custom_gradient
    def attend(query, key, value):
        scaled_query = query * tf.cast(scale, query.dtype)
        logits = _logits(scaled_query, key, mask)
        row_max = tf.reduce_max(logits, axis=-1, keepdims=True)
        unnormalized = tf.exp(logits - row_max)
        row_sum = tf.reduce_sum(unnormalized, axis=-1, keepdims=True)
        probs = unnormalized / row_sum
        output = tf.einsum("bhqk,bkhd->bqhd", tf.cast(probs, value.dtype), value)

        def grad(d_output):
            # XLA schedules an operation as soon as its inputs exist: recomputed from
            # the query and key alone, the logits would be computed in the forward
            # pass and kept. Zero times an element of d_output ties them to the
            # backward pass (XLA does not fold a float times zero, as NaN * 0 is NaN).
            tie = tf.cast(0.0, key.dtype) * tf.reduce_sum(d_output[:1, :1, :1, :1])
            tied_key = key + tie
            # The row's maximum and sum, not their log-sum-exp: a fully masked row
            # (-1e30 everywhere) would lose its log(tokens) to float32 rounding.
            probs = tf.exp(_logits(scaled_query, tied_key, mask) - row_max) / row_sum
            d_output = tf.cast(d_output, tf.float32)
            d_value = tf.einsum("bhqk,bqhd->bkhd", probs, d_output)
            d_probs = tf.einsum("bqhd,bkhd->bhqk", d_output, tf.cast(value, tf.float32))
            d_logits = probs * (d_probs - tf.reduce_sum(probs * d_probs, -1, keepdims=True))
            if mask is not None:  # the masked logits are constants
                d_logits = tf.where(mask, d_logits, 0.0)
            d_query = tf.einsum("bhqk,bkhd->bqhd", d_logits, tf.cast(tied_key, tf.float32))
            d_key = tf.einsum("bhqk,bqhd->bkhd", d_logits, tf.cast(scaled_query, tf.float32))
            return (
                tf.cast(d_query * scale, query.dtype),
                tf.cast(d_key, key.dtype),
                tf.cast(d_value, value.dtype),
            )

        return output, grad

    return attend(query, key, value)


@xla_function
def _attention(query, key, value, mask, dropout_rate, seed, block_size, return_weights):
    if block_size:
        return blockwise_attention(query, key, value, block_size), None
    if dropout_rate or return_weights:
        return dense_attention(query, key, value, mask, dropout_rate, seed)
    return recomputing_attention(query, key, value, mask), None


def attention(query, key, value, mask, dropout_rate, seed, block_size, return_weights):
    """``keras_vit.kernels.fused_attention`` on TensorFlow: ``(output, weights or None)``."""
    return _attention(
        query, key, value, mask, dropout_rate, _seed(seed), block_size, return_weights
    )


def _layer_norm(x, scale, bias, eps):
    x32 = tf.cast(x, tf.float32)
    mean, var = tf.nn.moments(x32, axes=[-1], keepdims=True)
    normed = (x32 - mean) * tf.math.rsqrt(var + eps)
    return tf.cast(normed * tf.cast(scale, tf.float32) + tf.cast(bias, tf.float32), x.dtype)


def _gelu(x, approximate):
    if approximate:
        c = math.sqrt(2.0 / math.pi)
        return 0.5 * x * (1.0 + tf.tanh(c * (x + 0.044715 * x * x * x)))
    return 0.5 * x * (1.0 + tf.math.erf(x / math.sqrt(2.0)))


def _product_dtype(x: tf.Tensor) -> tf.DType:
    """The dtype of the block's matmul products: that of ``x`` on a GPU, else float32.

    As in the JAX kernel: a float32 product of bfloat16 inputs rounds once (at the
    next matmul's input) where a bfloat16 product rounds twice; a GPU writes
    bfloat16 for half the memory traffic.
    """
    return x.dtype if tf.config.list_logical_devices("GPU") else tf.float32


def _dense(x, kernel, bias, spec):
    """``x`` times ``kernel`` + bias, in float32 (see ``_product_dtype``)."""
    dtype = _product_dtype(x)
    product = tf.einsum(spec, tf.cast(x, dtype), tf.cast(kernel, dtype))
    return tf.cast(product, tf.float32) + tf.cast(bias, tf.float32)


def _block_body(x, p, options, dropout_rate, seed):
    """One block; ``options`` is ``(approximate_gelu, eps, attention_dropout_rate, block_size)``.

    The bias adds, GELU and residual adds run in float32 until the next matmul's
    input, as in the JAX kernel: in bfloat16 each of them would round again.
    """
    approximate_gelu, eps, attention_dropout_rate, block_size = options
    dtype = x.dtype
    h = _layer_norm(x, p["ln0_scale"], p["ln0_bias"], eps)
    q, k, v = (
        tf.cast(_dense(h, p[f"{n}_kernel"], p[f"{n}_bias"], "btd,dnh->btnh"), dtype) for n in "qkv"
    )
    if block_size:
        context = blockwise_attention(q, k, v, block_size)
    else:
        context, _ = dense_attention(q, k, v, None, attention_dropout_rate, seed + 1)
    y = _dense(context, p["out_kernel"], p["out_bias"], "btnh,nhd->btd")
    x = tf.cast(tf.cast(x, tf.float32) + dropout(y, dropout_rate, seed + 2), dtype)
    h = _layer_norm(x, p["ln2_scale"], p["ln2_bias"], eps)
    h = _gelu(_dense(h, p["mlp0_kernel"], p["mlp0_bias"], "btd,dm->btm"), approximate_gelu)
    h = tf.cast(dropout(h, dropout_rate, seed + 3), dtype)
    h = _dense(h, p["mlp1_kernel"], p["mlp1_bias"], "btm,md->btd")
    return tf.cast(tf.cast(x, tf.float32) + dropout(h, dropout_rate, seed + 4), dtype)


_block = xla_function(_block_body)


@xla_function
def _encoder(x, pos_embedding, blocks, norm_scale, norm_bias, options, dropout_rate, seed):
    x = dropout(x + pos_embedding, dropout_rate, seed + 5)
    for i, params in enumerate(blocks):
        x = _block_body(x, params, options, dropout_rate, seed + 7 * (i + 1))
    return _layer_norm(x, norm_scale, norm_bias, options[1])


def encoder_block(x, params, options, dropout_rate, seed):
    """``keras_vit.kernels.encoder_block`` on TensorFlow."""
    return _block(x, params, options, dropout_rate, _seed(seed))


def encoder(x, pos_embedding, blocks, norm_scale, norm_bias, options, dropout_rate, seed):
    """``keras_vit.kernels.encoder`` on TensorFlow."""
    return _encoder(
        x, pos_embedding, blocks, norm_scale, norm_bias, options, dropout_rate, _seed(seed)
    )


@xla_function
def patch_embed(images, kernel, bias, cls_token, pos_embedding):
    """``keras_vit.kernels.patch_embed`` on TensorFlow: reshape + one matmul."""
    p, _, channels, hidden = kernel.shape
    batch, height, width = tf.unstack(tf.shape(images)[:3])
    grid_h, grid_w = height // p, width // p
    x = tf.reshape(images, [batch, grid_h, p, grid_w, p, channels])
    x = tf.transpose(x, [0, 1, 3, 2, 4, 5])
    x = tf.reshape(x, [batch, grid_h * grid_w, p * p * channels])
    x = tf.matmul(x, tf.reshape(kernel, [p * p * channels, hidden])) + bias
    if cls_token is not None:
        x = tf.concat([tf.broadcast_to(cls_token, [batch, 1, hidden]), x], axis=1)
    return x if pos_embedding is None else x + pos_embedding
