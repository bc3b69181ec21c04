"""One whole pre-norm Transformer block as a single XLA-compiled function.

LayerNorm → q/k/v projections (the checkpoint's three kernels, as stored)
→ attention → output projection → residual → LayerNorm → Dense → GELU → Dense →
residual. XLA fuses the memory-bound work (normalisation, GELU, softmax, bias
adds, residuals) around the matmuls. The weights arrive as arguments (the
checkpoint's separate query/key/value kernels stay the stored weights), so the
function captures no variables and runs under ``tf.distribute``.

Example:
    >>> import numpy as np
    >>> from keras_vit.kernels import encoder_block
    >>> d, h, m = 8, 2, 16
    >>> rng = np.random.default_rng(0)
    >>> w = lambda *s: rng.normal(size=s).astype("float32") * 0.1
    >>> params = dict(ln0_scale=w(d), ln0_bias=w(d), q_kernel=w(d, h, 4), q_bias=w(h, 4),
    ...               k_kernel=w(d, h, 4), k_bias=w(h, 4), v_kernel=w(d, h, 4), v_bias=w(h, 4),
    ...               out_kernel=w(h, 4, d), out_bias=w(d), ln2_scale=w(d), ln2_bias=w(d),
    ...               mlp0_kernel=w(d, m), mlp0_bias=w(m), mlp1_kernel=w(m, d), mlp1_bias=w(d))
    >>> tuple(encoder_block(w(2, 5, d), params).shape)
    (2, 5, 8)
"""

from __future__ import annotations

import math

import tensorflow as tf
from tensorflow.types.experimental import TensorLike

from keras_vit.kernels.attention import blockwise_attention, dense_attention, dropout, dropout_seed
from keras_vit.numerics import LAYER_NORM_EPSILON

# LayerNorm_0, the attention's query/key/value/out, LayerNorm_2, MlpBlock_3/Dense_{0,1}.
PARAM_NAMES = (
    "ln0_scale",
    "ln0_bias",
    "q_kernel",
    "q_bias",
    "k_kernel",
    "k_bias",
    "v_kernel",
    "v_bias",
    "out_kernel",
    "out_bias",
    "ln2_scale",
    "ln2_bias",
    "mlp0_kernel",
    "mlp0_bias",
    "mlp1_kernel",
    "mlp1_bias",
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


def _block_body(x, p, options, dropout_rate, seed):
    """One block; ``options`` is ``(approximate_gelu, eps, attention_dropout_rate, block_size)``."""
    approximate_gelu, eps, attention_dropout_rate, block_size = options
    h = _layer_norm(x, p["ln0_scale"], p["ln0_bias"], eps)
    q, k, v = (tf.einsum("btd,dnh->btnh", h, p[f"{n}_kernel"]) + p[f"{n}_bias"] for n in "qkv")
    if block_size:
        context = blockwise_attention(q, k, v, block_size)
    else:
        context, _ = dense_attention(q, k, v, None, attention_dropout_rate, seed + 1)
    y = tf.einsum("btnh,nhd->btd", context, p["out_kernel"]) + p["out_bias"]
    x = x + dropout(y, dropout_rate, seed + 2)
    h = _layer_norm(x, p["ln2_scale"], p["ln2_bias"], eps)
    h = _gelu(tf.matmul(h, p["mlp0_kernel"]) + p["mlp0_bias"], approximate_gelu)
    h = dropout(h, dropout_rate, seed + 3)
    h = tf.matmul(h, p["mlp1_kernel"]) + p["mlp1_bias"]
    return x + dropout(h, dropout_rate, seed + 4)


_block = tf.function(_block_body, jit_compile=True)


@tf.function(jit_compile=True)
def _encoder(x, pos_embedding, blocks, norm_scale, norm_bias, options, dropout_rate, seed):
    x = dropout(x + pos_embedding, dropout_rate, seed + 5)
    for i, params in enumerate(blocks):
        x = _block_body(x, params, options, dropout_rate, seed + 7 * (i + 1))
    return _layer_norm(x, norm_scale, norm_bias, options[1])


def encoder_block(
    x: TensorLike,
    params: dict[str, TensorLike],
    approximate_gelu: bool = True,
    epsilon: float = LAYER_NORM_EPSILON,
    dropout_rate: float = 0.0,
    attention_dropout_rate: float = 0.0,
    seed: TensorLike | None = None,
    block_size: int | None = None,
) -> tf.Tensor:
    """Applies one encoder block; same numbers as the layer-by-layer reference.

    Args:
        x: ``[batch, tokens, hidden]``.
        params: tensors named as ``PARAM_NAMES`` in the official layouts
            (``q_kernel`` ``[hidden, heads, head_dim]``, ``out_kernel``
            ``[heads, head_dim, hidden]``, ...), in the dtype of ``x``.
        approximate_gelu: tanh GELU (official checkpoints) or erf (timm).
        epsilon: LayerNorm epsilon.
        dropout_rate: dropout after attention and in the MLP (training only: pass 0
            in inference).
        attention_dropout_rate: dropout on the attention weights.
        seed: int32 ``[2]`` dropout seed, required with any dropout.
        block_size: key-block size of the online-softmax attention (long sequences);
            None for plain attention.

    Returns:
        ``[batch, tokens, hidden]``.
    """
    seed = dropout_seed(seed, dropout_rate, attention_dropout_rate, kernel="encoder_block")
    params = {name: params[name] for name in PARAM_NAMES}
    options = (bool(approximate_gelu), float(epsilon), float(attention_dropout_rate), block_size)
    return _block(x, params, options, float(dropout_rate), seed)


def encoder(
    x: TensorLike,
    pos_embedding: TensorLike,
    blocks: list[dict[str, TensorLike]],
    norm_scale: TensorLike,
    norm_bias: TensorLike,
    approximate_gelu: bool = True,
    epsilon: float = LAYER_NORM_EPSILON,
    dropout_rate: float = 0.0,
    attention_dropout_rate: float = 0.0,
    seed: TensorLike | None = None,
    block_size: int | None = None,
) -> tf.Tensor:
    """The whole encoder in one XLA function: position embeddings, every block, final norm.

    One compiled function instead of one per block: no hand-over between blocks
    and the residual add, dropout and next LayerNorm fuse across block borders.

    Args:
        x: ``[batch, tokens, hidden]`` (class token included).
        pos_embedding: ``[1, tokens, hidden]``.
        blocks: one ``encoder_block`` parameter dict per block.
        norm_scale: final LayerNorm scale ``[hidden]``.
        norm_bias: final LayerNorm bias ``[hidden]``.
        approximate_gelu: tanh GELU (official checkpoints) or erf (timm).
        epsilon: LayerNorm epsilon.
        dropout_rate: dropout rate (pass 0 in inference).
        attention_dropout_rate: attention-weights dropout rate.
        seed: int32 ``[2]`` dropout seed, required with any dropout.
        block_size: key-block size of the online-softmax attention; None for plain.

    Returns:
        The encoded tokens ``[batch, tokens, hidden]``.
    """
    seed = dropout_seed(seed, dropout_rate, attention_dropout_rate, kernel="encoder")
    blocks = [{name: params[name] for name in PARAM_NAMES} for params in blocks]
    options = (bool(approximate_gelu), float(epsilon), float(attention_dropout_rate), block_size)
    return _encoder(
        x, pos_embedding, blocks, norm_scale, norm_bias, options, float(dropout_rate), seed
    )
