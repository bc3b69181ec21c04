"""The JAX kernels: ``jax.jit`` functions, attention through ``jax.nn.dot_product_attention``.

The same numbers as the TensorFlow kernels (query scaled before the logits,
logits and softmax in float32, LayerNorm statistics in float32). Attention
without dropout or returned weights goes through ``jax.nn.dot_product_attention``:
XLA's implementation, or on a GPU in bfloat16/float16 cuDNN flash attention.
cuDNN refuses ViT's 197 tokens, so that path pads the tokens to a multiple of
``CUDNN_PAD`` and masks the padded keys (``key_value_seq_lengths``); the whole
encoder pads once, before its first block, and cuts the padding after its last.

``KERAS_VIT_JAX_ATTENTION`` selects the implementation (read when a shape is first
compiled): ``auto`` (default, see ``attention_implementation``), ``xla``,
``cudnn`` or ``plain``.
"""

from __future__ import annotations

import math
import os
from functools import partial

import jax
import jax.numpy as jnp

CUDNN_PAD = 8
_F32 = jnp.float32


def attention_implementation(dtype: jnp.dtype, head_dim: int) -> str:
    """How attention without dropout or returned weights is computed.

    Args:
        dtype: the query's dtype.
        head_dim: the size of a head.

    Returns:
        ``"cudnn"`` or ``"xla"`` (``jax.nn.dot_product_attention``'s), or ``"plain"``
        (``dense_attention``): ``KERAS_VIT_JAX_ATTENTION`` when it is set to one of
        them; under ``auto``, cuDNN on a GPU for bfloat16/float16 heads of at most
        128, plain on a CPU for those (XLA's CPU compiler refuses the bfloat16 dot
        with float32 accumulation that ``jax.nn.dot_product_attention`` asks for),
        else XLA.
    """
    choice = os.environ.get("KERAS_VIT_JAX_ATTENTION", "auto")
    if choice != "auto":
        return choice
    half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
    if half and jax.default_backend() == "gpu" and head_dim <= 128:
        return "cudnn"
    return "plain" if half and jax.default_backend() == "cpu" else "xla"


def _scaled(query):
    # The official code scales the query (flax); the logits' rounding follows.
    return query * jnp.asarray(1.0 / math.sqrt(query.shape[-1]), query.dtype)


def dot_product_attention(query, key, value, mask=None, implementation="xla", pad_to=1):
    """softmax(q kᵀ / √d) v through ``jax.nn.dot_product_attention``.

    Args:
        query: ``[batch, tokens, heads, head_dim]``.
        key: ``[batch, tokens, heads, head_dim]``.
        value: ``[batch, tokens, heads, head_dim]``.
        mask: optional boolean, broadcastable to ``[batch, heads, q, k]``.
        implementation: ``"xla"`` or ``"cudnn"``.
        pad_to: pad the tokens to a multiple of this, the padded keys masked;
            the padded queries' rows are cut off. With a ``mask`` (which is not
            padded) tokens that need padding go to XLA's implementation instead.

    Returns:
        ``[batch, tokens, heads, head_dim]`` in the dtype of ``value``.
    """
    tokens = key.shape[1]
    extra = -tokens % pad_to
    if extra and mask is not None:  # cuDNN would refuse the unpadded tokens
        implementation, extra = "xla", 0
    if not extra:
        return jax.nn.dot_product_attention(
            _scaled(query), key, value, mask=mask, scale=1.0, implementation=implementation
        )
    widths = ((0, 0), (0, extra), (0, 0), (0, 0))
    query, key, value = (jnp.pad(t, widths) for t in (query, key, value))
    return padded_attention(query, key, value, tokens, implementation)[:, :tokens]


def padded_attention(query, key, value, valid: int, implementation: str):
    """Attention over tokens padded beyond the first ``valid``: the padded keys masked.

    The padded queries' rows are computed (and are the caller's to cut off).
    """
    lengths = jnp.full((key.shape[0],), valid, jnp.int32)
    return jax.nn.dot_product_attention(
        _scaled(query),
        key,
        value,
        scale=1.0,
        key_value_seq_lengths=lengths,
        implementation=implementation,
    )


def _key(seed):
    return jax.random.wrap_key_data(jnp.asarray(seed).astype(jnp.uint32))


def dropout(x, rate: float, seed):
    """Inverted dropout with an int32 ``[2]`` seed (``x`` itself for rate 0)."""
    if rate == 0.0:
        return x
    keep = jax.random.uniform(_key(seed), x.shape) >= rate
    return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros_like(x))


def dense_attention(query, key, value, mask, dropout_rate, seed):
    """The plain path: ``(output, float32 weights before dropout)``."""
    logits = jnp.einsum("bqhd,bkhd->bhqk", _scaled(query), key).astype(_F32)
    if mask is not None:
        logits = jnp.where(mask, logits, -1e30)
    weights = jax.nn.softmax(logits, axis=-1)
    dropped = dropout(weights, dropout_rate, seed)
    return jnp.einsum("bhqk,bkhd->bqhd", dropped.astype(value.dtype), value), weights


def blockwise_attention(query, key, value, block_size: int):
    """Online softmax over key blocks (padded to whole blocks and masked), in float32."""
    query = _scaled(query.astype(_F32))
    batch, tokens, heads, _ = key.shape
    blocks = -(-tokens // block_size)
    widths = ((0, 0), (0, blocks * block_size - tokens), (0, 0), (0, 0))

    def split(t):
        t = jnp.pad(t.astype(_F32), widths).reshape(batch, blocks, block_size, heads, -1)
        return t.transpose(1, 0, 2, 3, 4)

    valid = (jnp.arange(blocks * block_size) < tokens).reshape(blocks, block_size)
    stats = (batch, heads, query.shape[1])
    initial = (
        jnp.full(stats, -1e30, _F32),
        jnp.zeros(stats, _F32),
        jnp.zeros((*stats, value.shape[-1]), _F32),
    )

    def step(carry, block):
        running_max, running_sum, accumulator = carry
        k, v, keep = block
        logits = jnp.where(keep, jnp.einsum("bqhd,bkhd->bhqk", query, k), -1e30)
        new_max = jnp.maximum(running_max, logits.max(axis=-1))
        probs = jnp.exp(logits - new_max[..., None])
        correction = jnp.exp(running_max - new_max)
        running_sum = running_sum * correction + probs.sum(axis=-1)
        accumulator = accumulator * correction[..., None] + jnp.einsum("bhqk,bkhd->bhqd", probs, v)
        return (new_max, running_sum, accumulator), None

    (_, total, output), _ = jax.lax.scan(step, initial, (split(key), split(value), valid))
    return (output / total[..., None]).transpose(0, 2, 1, 3).astype(value.dtype)


def _attend(query, key, value, mask, dropout_rate, seed, block_size, return_weights, valid=None):
    implementation = attention_implementation(query.dtype, query.shape[-1])
    if valid is not None:  # the encoder padded the tokens (for cuDNN)
        return padded_attention(query, key, value, valid, implementation), None
    if block_size:
        return blockwise_attention(query, key, value, block_size), None
    if dropout_rate or return_weights or implementation == "plain":
        return dense_attention(query, key, value, mask, dropout_rate, seed)
    pad_to = CUDNN_PAD if implementation == "cudnn" else 1
    return dot_product_attention(query, key, value, mask, implementation, pad_to), None


_STATIC = ("dropout_rate", "block_size", "return_weights")


@partial(jax.jit, static_argnames=_STATIC)
def attention(query, key, value, mask, dropout_rate, seed, block_size, return_weights):
    """``keras_vit.kernels.fused_attention`` on JAX: ``(output, weights or None)``."""
    return _attend(query, key, value, mask, dropout_rate, seed, block_size, return_weights)


def _layer_norm(x, scale, bias, eps):
    x32 = x.astype(_F32)
    mean = x32.mean(axis=-1, keepdims=True)
    var = jnp.square(x32 - mean).mean(axis=-1, keepdims=True)
    normed = (x32 - mean) * jax.lax.rsqrt(var + eps)
    return (normed * scale.astype(_F32) + bias.astype(_F32)).astype(x.dtype)


def _gelu(x, approximate):
    if approximate:
        c = math.sqrt(2.0 / math.pi)
        return 0.5 * x * (1.0 + jnp.tanh(c * (x + 0.044715 * x * x * x)))
    return 0.5 * x * (1.0 + jax.lax.erf(x / math.sqrt(2.0)))


def _product_dtype(x):
    """The dtype the block's matmuls write: that of ``x`` on a GPU, else float32.

    A GPU's bfloat16 matmul accumulates in float32 either way; writing bfloat16
    halves its memory traffic (ViT-B/16 inference at batch 256 on an H200: 10,490
    against 9,627 images/s). A CPU keeps the float32 products, one rounding fewer.
    """
    return x.dtype if jax.default_backend() == "gpu" else _F32


def _dense(x, kernel, bias, spec):
    # Float32 accumulation and bias add; the caller rounds once more to the input dtype.
    product = jnp.einsum(spec, x, kernel, preferred_element_type=_product_dtype(x))
    return product.astype(_F32) + bias.astype(_F32)


def _block_body(x, p, options, dropout_rate, seed, valid=None):
    """One block; ``options`` is ``(approximate_gelu, eps, attention_dropout_rate, block_size)``.

    Matmuls accumulate in float32 (and on a GPU write bfloat16, see
    ``_product_dtype``); the bias adds, GELU and residual adds stay in float32
    until the next matmul's input.
    ``valid``: the tokens are padded for cuDNN beyond the first ``valid`` (see
    ``_encoder``).
    """
    approximate_gelu, eps, attention_dropout_rate, block_size = options
    dtype = x.dtype
    h = _layer_norm(x, p["ln0_scale"], p["ln0_bias"], eps)
    q, k, v = (
        _dense(h, p[f"{n}_kernel"], p[f"{n}_bias"], "btd,dnh->btnh").astype(dtype) for n in "qkv"
    )
    context, _ = _attend(q, k, v, None, attention_dropout_rate, seed + 1, block_size, False, valid)
    y = _dense(context, p["out_kernel"], p["out_bias"], "btnh,nhd->btd")
    x = (x + dropout(y, dropout_rate, seed + 2)).astype(dtype)
    h = _layer_norm(x, p["ln2_scale"], p["ln2_bias"], eps)
    h = _gelu(_dense(h, p["mlp0_kernel"], p["mlp0_bias"], "btd,dm->btm"), approximate_gelu)
    h = dropout(h.astype(dtype), dropout_rate, seed + 3)
    h = _dense(h, p["mlp1_kernel"], p["mlp1_bias"], "btm,md->btd")
    return (x + dropout(h, dropout_rate, seed + 4)).astype(dtype)


def _seed(seed):
    return jnp.zeros((2,), jnp.int32) if seed is None else jnp.asarray(seed, jnp.int32)


@partial(jax.jit, static_argnames=("options", "dropout_rate"))
def _block(x, params, options, dropout_rate, seed):
    return _block_body(x, params, options, dropout_rate, seed)


def encoder_block(x, params, options, dropout_rate, seed):
    """``keras_vit.kernels.encoder_block`` on JAX."""
    return _block(x, params, options, dropout_rate, _seed(seed))


def _cudnn_padding(x, blocks, options) -> int:
    """The tokens the encoder pads once for cuDNN attention (0 off that path)."""
    _, _, attention_dropout_rate, block_size = options
    if not blocks or attention_dropout_rate or block_size:
        return 0
    head_dim = blocks[0]["q_kernel"].shape[-1]
    cudnn = attention_implementation(x.dtype, head_dim) == "cudnn"
    return -x.shape[1] % CUDNN_PAD if cudnn else 0


@partial(jax.jit, static_argnames=("options", "dropout_rate"))
def _encoder(x, pos_embedding, blocks, norm_scale, norm_bias, options, dropout_rate, seed):
    x = dropout(x + pos_embedding, dropout_rate, seed + 5)
    tokens, extra = x.shape[1], _cudnn_padding(x, blocks, options)
    valid = tokens if extra else None
    x = jnp.pad(x, ((0, 0), (0, extra), (0, 0)))
    for i, params in enumerate(blocks):
        x = _block_body(x, params, options, dropout_rate, seed + 7 * (i + 1), valid)
    return _layer_norm(x[:, :tokens], norm_scale, norm_bias, options[1])


def encoder(x, pos_embedding, blocks, norm_scale, norm_bias, options, dropout_rate, seed):
    """``keras_vit.kernels.encoder`` on JAX."""
    return _encoder(
        x, pos_embedding, blocks, norm_scale, norm_bias, options, dropout_rate, _seed(seed)
    )


@jax.jit
def patch_embed(images, kernel, bias, cls_token, pos_embedding):
    """``keras_vit.kernels.patch_embed`` on JAX: reshape + one matmul."""
    p, _, channels, hidden = kernel.shape
    batch, height, width, _ = images.shape
    grid_h, grid_w = height // p, width // p
    x = images.reshape(batch, grid_h, p, grid_w, p, channels).transpose(0, 1, 3, 2, 4, 5)
    x = x.reshape(batch, grid_h * grid_w, p * p * channels)
    x = x @ kernel.reshape(p * p * channels, hidden) + bias
    if cls_token is not None:
        x = jnp.concatenate([jnp.broadcast_to(cls_token, (batch, 1, hidden)), x], axis=1)
    return x if pos_embedding is None else x + pos_embedding
