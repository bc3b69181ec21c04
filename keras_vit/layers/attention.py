"""Multi-head self-attention with the official checkpoints' weights."""

from __future__ import annotations

import keras

from keras_vit.kernels import attention_reference, fused_attention
from keras_vit.layers.dense_general import DenseGeneral

ATTENTION_IMPLS = ("fused", "reference")


def check_attention_impl(attention_impl: str) -> str:
    """Validates the models' one kernel switch.

    Args:
        attention_impl: ``"fused"`` or ``"reference"``.

    Returns:
        ``attention_impl``, unchanged.

    Raises:
        ValueError: for any other value, naming the allowed ones.
    """
    if attention_impl not in ATTENTION_IMPLS:
        raise ValueError(
            f"attention_impl must be one of {ATTENTION_IMPLS}; got {attention_impl!r}."
        )
    return attention_impl


@keras.saving.register_keras_serializable(package="keras_vit")
class MultiHeadDotProductAttention(keras.layers.Layer):
    """Attention whose weights are ``query``, ``key``, ``value`` and ``out``.

    Self-attention by default; given ``inputs_kv`` (big_vision's MAP head: a
    learned probe attending over the encoded tokens), keys and values come from it.

    Kernels are stored as in the official checkpoints: ``query/kernel`` is
    ``[hidden, heads, head_dim]``, ``out/kernel`` is ``[heads, head_dim, hidden]``.

    Args:
        num_heads: number of attention heads; must divide the hidden size.
        attention_dropout_rate: dropout on the attention weights.
        attention_impl: ``"fused"`` (XLA kernel, ``keras_vit.kernels``) or
            ``"reference"`` (plain ``keras.ops``).
        qkv_bias: whether ``query``, ``key`` and ``value`` have biases.
        **kwargs: standard layer arguments.

    Example:
        >>> import numpy as np
        >>> attn = MultiHeadDotProductAttention(num_heads=2)
        >>> tuple(attn(np.zeros((1, 5, 8), "float32")).shape)
        (1, 5, 8)
    """

    def __init__(
        self,
        num_heads: int,
        attention_dropout_rate: float = 0.0,
        attention_impl: str = "fused",
        qkv_bias: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.attention_dropout_rate = attention_dropout_rate
        self.attention_impl = check_attention_impl(attention_impl)
        self.qkv_bias = qkv_bias
        self.seed_generator = keras.random.SeedGenerator()

    def build(self, input_shape):
        hidden = input_shape[-1]
        if hidden % self.num_heads:
            raise ValueError(
                f"hidden size {hidden} is not divisible by num_heads={self.num_heads}."
            )
        head_dim = hidden // self.num_heads
        self.query, self.key, self.value = (
            DenseGeneral(
                (self.num_heads, head_dim), use_bias=self.qkv_bias, name=n, dtype=self.dtype_policy
            )
            for n in ("query", "key", "value")
        )
        for layer in (self.query, self.key, self.value):
            layer.build(input_shape)
        self.out = DenseGeneral(hidden, in_axes=2, name="out", dtype=self.dtype_policy)
        self.out.build(tuple(input_shape[:-1]) + (self.num_heads, head_dim))

    def call(self, inputs, inputs_kv=None, training=None):
        inputs_kv = inputs if inputs_kv is None else inputs_kv
        query, key, value = self.query(inputs), self.key(inputs_kv), self.value(inputs_kv)
        return self.attend(query, key, value, training)

    def attend(self, query, key, value, training: bool | None = None):
        """The attention and ``out`` over projected queries, keys and values.

        ``Encoder1DBlock`` calls it with projections it computed itself
        (``keras_vit.layers.norm_dense``); ``call`` projects, then calls it.

        Args:
            query: ``[batch, q_tokens, heads, head_dim]``.
            key: ``[batch, kv_tokens, heads, head_dim]``.
            value: ``[batch, kv_tokens, heads, head_dim]``.
            training: whether attention dropout applies.

        Returns:
            ``[batch, q_tokens, hidden]``.
        """
        rate = self.attention_dropout_rate if training else 0.0
        if self.attention_impl == "fused":
            seed = (
                keras.random.randint((2,), 0, 2**30, seed=self.seed_generator, dtype="int32")
                if rate
                else None
            )
            context = fused_attention(query, key, value, dropout_rate=rate, seed=seed)
        else:
            context = attention_reference(
                query, key, value, dropout_rate=rate, seed=self.seed_generator
            )
        return self.out(context)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "attention_dropout_rate": self.attention_dropout_rate,
            "attention_impl": self.attention_impl,
            "qkv_bias": self.qkv_bias,
        }
