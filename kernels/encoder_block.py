"""One whole pre-norm Transformer block (or the whole encoder) as a single compiled function.

LayerNorm → q/k/v projections (the checkpoint's three kernels, as stored)
→ attention → output projection → residual → LayerNorm → Dense → GELU → Dense →
residual, compiled per backend (``keras_vit.kernels.dispatch``). XLA fuses the
memory-bound work (normalisation, GELU, softmax, bias adds, residuals) around
the matmuls. The weights arrive as arguments (the
checkpoint's separate query/key/value kernels stay the stored weights), so the
function captures no variables (and runs under ``tf.distribute``).

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

from keras_vit.kernels.dispatch import Tensor, backend_kernels, check_seed
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


def encoder_block(
    x: Tensor,
    params: dict[str, Tensor],
    approximate_gelu: bool = True,
    epsilon: float = LAYER_NORM_EPSILON,
    dropout_rate: float = 0.0,
    attention_dropout_rate: float = 0.0,
    seed: Tensor | None = None,
    block_size: int | None = None,
) -> Tensor:
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
    check_seed(seed, dropout_rate, attention_dropout_rate, kernel="encoder_block")
    params = {name: params[name] for name in PARAM_NAMES}
    options = (bool(approximate_gelu), float(epsilon), float(attention_dropout_rate), block_size)
    return backend_kernels().encoder_block(x, params, options, float(dropout_rate), seed)


def encoder(
    x: Tensor,
    pos_embedding: Tensor,
    blocks: list[dict[str, Tensor]],
    norm_scale: Tensor,
    norm_bias: Tensor,
    approximate_gelu: bool = True,
    epsilon: float = LAYER_NORM_EPSILON,
    dropout_rate: float = 0.0,
    attention_dropout_rate: float = 0.0,
    seed: Tensor | None = None,
    block_size: int | None = None,
) -> Tensor:
    """The whole encoder in one compiled function: position embeddings, every block, final norm.

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
    check_seed(seed, dropout_rate, attention_dropout_rate, kernel="encoder")
    blocks = [{name: params[name] for name in PARAM_NAMES} for params in blocks]
    options = (bool(approximate_gelu), float(epsilon), float(attention_dropout_rate), block_size)
    return backend_kernels().encoder(
        x, pos_embedding, blocks, norm_scale, norm_bias, options, float(dropout_rate), seed
    )
