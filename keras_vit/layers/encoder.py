"""The Transformer encoder of ViT, scoped as the official checkpoints.

Scopes: ``Transformer/posembed_input/pos_embedding``,
``Transformer/encoderblock_{i}/{LayerNorm_0, MultiHeadDotProductAttention_1,
LayerNorm_2, MlpBlock_3/Dense_{0,1}}``, ``Transformer/encoder_norm``
(the pre-Linen numbering of the released checkpoints).
"""

from __future__ import annotations

import keras
from keras import ops

from keras_vit.kernels import encoder, encoder_block
from keras_vit.layers.attention import MultiHeadDotProductAttention, check_attention_impl
from keras_vit.layers.dense_general import flat_glorot_uniform
from keras_vit.numerics import LAYER_NORM_EPSILON  # also keras_vit.layers.LAYER_NORM_EPSILON


def layer_norm(
    name: str, dtype_policy: str | keras.DTypePolicy | None
) -> keras.layers.LayerNormalization:
    """A LayerNorm with the official epsilon (weights ``gamma``/``beta`` = ``scale``/``bias``).

    Args:
        name: the checkpoint scope (``LayerNorm_0``, ``encoder_norm``, ...).
        dtype_policy: the enclosing layer's dtype policy.

    Returns:
        An unbuilt ``keras.layers.LayerNormalization``.
    """
    return keras.layers.LayerNormalization(
        epsilon=LAYER_NORM_EPSILON, name=name, dtype=dtype_policy
    )


def _official_dense(units: int, fan_in: int, name: str, dtype_policy) -> keras.layers.Dense:
    return keras.layers.Dense(
        units,
        kernel_initializer=flat_glorot_uniform(fan_in, units),
        bias_initializer=keras.initializers.RandomNormal(stddev=1e-6),
        name=name,
        dtype=dtype_policy,
    )


@keras.saving.register_keras_serializable(package="keras_vit")
class MlpBlock(keras.layers.Layer):
    """Dense → GELU → dropout → Dense → dropout (``Dense_0``, ``Dense_1``).

    Args:
        mlp_dim: width of the hidden layer.
        dropout_rate: dropout after each Dense.
        approximate_gelu: tanh form of GELU (official JAX checkpoints) if True,
            exact erf form (timm) if False.
        **kwargs: standard layer arguments.
    """

    def __init__(
        self, mlp_dim: int, dropout_rate: float = 0.0, approximate_gelu: bool = True, **kwargs
    ):
        super().__init__(**kwargs)
        self.mlp_dim = mlp_dim
        self.dropout_rate = dropout_rate
        self.approximate_gelu = approximate_gelu

    def build(self, input_shape):
        hidden = input_shape[-1]
        self.dense_0 = _official_dense(self.mlp_dim, hidden, "Dense_0", self.dtype_policy)
        self.dense_0.build(input_shape)
        self.dense_1 = _official_dense(hidden, self.mlp_dim, "Dense_1", self.dtype_policy)
        self.dense_1.build(tuple(input_shape[:-1]) + (self.mlp_dim,))
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=self.dtype_policy)

    def call(self, inputs, training=None):
        x = self.dense_0(inputs)
        x = keras.activations.gelu(x, approximate=self.approximate_gelu)
        x = self.dropout(x, training=training)
        return self.dropout(self.dense_1(x), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "mlp_dim": self.mlp_dim,
            "dropout_rate": self.dropout_rate,
            "approximate_gelu": self.approximate_gelu,
        }


@keras.saving.register_keras_serializable(package="keras_vit")
class Encoder1DBlock(keras.layers.Layer):
    """Pre-norm Transformer block: x + MHA(LN(x)), then x + MLP(LN(x)).

    Args:
        mlp_dim: MLP hidden width.
        num_heads: attention heads.
        dropout_rate: dropout after attention and in the MLP.
        attention_dropout_rate: dropout on attention weights.
        approximate_gelu: see ``MlpBlock``.
        attention_impl: ``"fused"`` runs the whole block as one XLA-compiled
            kernel (``keras_vit.kernels.encoder_block``) in inference;
            ``"reference"``, and every training step, runs the sublayers one by
            one (TensorFlow's own gradient of those measured faster here than
            the gradient of the XLA kernel: see the README's benchmark).
        attention_block_size: key-block size of the fused kernel's memory-saving
            attention for sequences longer than it (None: plain attention).
        **kwargs: standard layer arguments.
    """

    def __init__(
        self,
        mlp_dim: int,
        num_heads: int,
        dropout_rate: float = 0.0,
        attention_dropout_rate: float = 0.0,
        approximate_gelu: bool = True,
        attention_impl: str = "fused",
        attention_block_size: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.mlp_dim = mlp_dim
        self.num_heads = num_heads
        self.dropout_rate = dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.approximate_gelu = approximate_gelu
        self.attention_impl = check_attention_impl(attention_impl)
        self.attention_block_size = attention_block_size

    def build(self, input_shape):
        policy = self.dtype_policy
        self.norm_0 = layer_norm("LayerNorm_0", policy)
        self.attention = MultiHeadDotProductAttention(
            self.num_heads,
            self.attention_dropout_rate,
            self.attention_impl,
            name="MultiHeadDotProductAttention_1",
            dtype=policy,
        )
        self.norm_2 = layer_norm("LayerNorm_2", policy)
        self.mlp = MlpBlock(
            self.mlp_dim, self.dropout_rate, self.approximate_gelu, name="MlpBlock_3", dtype=policy
        )
        for layer in (self.norm_0, self.attention, self.norm_2, self.mlp):
            layer.build(input_shape)
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=policy)

    def fused_params(self, dtype: str) -> dict:
        """The block's weights under the names of ``keras_vit.kernels.encoder_block``.

        Args:
            dtype: the dtype of the inputs (the weights are cast to it).

        Returns:
            ``PARAM_NAMES`` -> the weight, cast to ``dtype``.
        """
        attention, mlp = self.attention, self.mlp
        weights = dict(
            ln0_scale=self.norm_0.gamma,
            ln0_bias=self.norm_0.beta,
            q_kernel=attention.query.kernel,
            q_bias=attention.query.bias,
            k_kernel=attention.key.kernel,
            k_bias=attention.key.bias,
            v_kernel=attention.value.kernel,
            v_bias=attention.value.bias,
            out_kernel=attention.out.kernel,
            out_bias=attention.out.bias,
            ln2_scale=self.norm_2.gamma,
            ln2_bias=self.norm_2.beta,
            mlp0_kernel=mlp.dense_0.kernel,
            mlp0_bias=mlp.dense_0.bias,
            mlp1_kernel=mlp.dense_1.kernel,
            mlp1_bias=mlp.dense_1.bias,
        )
        return {name: ops.cast(value, dtype) for name, value in weights.items()}

    def call(self, inputs, training=None):
        if self.attention_impl == "fused" and not training:
            params = self.fused_params(inputs.dtype)
            return encoder_block(
                inputs,
                params,
                self.approximate_gelu,
                LAYER_NORM_EPSILON,
                block_size=self.attention_block_size,
            )
        x = self.attention(self.norm_0(inputs), training=training)
        x = inputs + self.dropout(x, training=training)
        return x + self.mlp(self.norm_2(x), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "mlp_dim": self.mlp_dim,
            "num_heads": self.num_heads,
            "dropout_rate": self.dropout_rate,
            "attention_dropout_rate": self.attention_dropout_rate,
            "approximate_gelu": self.approximate_gelu,
            "attention_impl": self.attention_impl,
            "attention_block_size": self.attention_block_size,
        }


@keras.saving.register_keras_serializable(package="keras_vit")
class AddPositionEmbs(keras.layers.Layer):
    """Adds a learned ``pos_embedding`` of shape ``[1, tokens, hidden]``."""

    def build(self, input_shape):
        self.pos_embedding = self.add_weight(
            name="pos_embedding",
            shape=(1, input_shape[1], input_shape[2]),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
        )

    def call(self, inputs):
        return inputs + ops.cast(self.pos_embedding, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="keras_vit")
class Encoder(keras.layers.Layer):
    """Position embeddings, ``num_layers`` blocks and the final ``encoder_norm``.

    Args:
        num_layers: number of ``encoderblock_{i}``.
        mlp_dim: MLP hidden width.
        num_heads: attention heads.
        dropout_rate: dropout rate.
        attention_dropout_rate: attention-weights dropout rate.
        approximate_gelu: see ``MlpBlock``.
        attention_impl: ``"fused"`` runs the whole encoder (position embeddings,
            blocks, final norm) as one XLA-compiled kernel
            (``keras_vit.kernels.encoder``) in inference; ``"reference"``, and
            every training step, layer by layer (see ``Encoder1DBlock``).
        attention_block_size: see ``Encoder1DBlock``.
        **kwargs: standard layer arguments; the model names it ``"Transformer"``.

    Example:
        >>> import numpy as np
        >>> enc = Encoder(num_layers=1, mlp_dim=16, num_heads=2, name="Transformer")
        >>> tuple(enc(np.zeros((2, 5, 8), "float32")).shape)
        (2, 5, 8)
    """

    def __init__(
        self,
        num_layers: int,
        mlp_dim: int,
        num_heads: int,
        dropout_rate: float = 0.0,
        attention_dropout_rate: float = 0.0,
        approximate_gelu: bool = True,
        attention_impl: str = "fused",
        attention_block_size: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_layers = num_layers
        self.mlp_dim = mlp_dim
        self.num_heads = num_heads
        self.dropout_rate = dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.approximate_gelu = approximate_gelu
        self.attention_impl = check_attention_impl(attention_impl)
        self.attention_block_size = attention_block_size

    def build(self, input_shape):
        policy = self.dtype_policy
        self.posembed_input = AddPositionEmbs(name="posembed_input", dtype=policy)
        self.posembed_input.build(input_shape)
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=policy)
        self.blocks = [
            Encoder1DBlock(
                self.mlp_dim,
                self.num_heads,
                self.dropout_rate,
                self.attention_dropout_rate,
                self.approximate_gelu,
                self.attention_impl,
                self.attention_block_size,
                name=f"encoderblock_{i}",
                dtype=policy,
            )
            for i in range(self.num_layers)
        ]
        for block in self.blocks:
            block.build(input_shape)
        self.encoder_norm = layer_norm("encoder_norm", policy)
        self.encoder_norm.build(input_shape)

    def call(self, inputs, training=None):
        if self.attention_impl == "fused" and not training:
            dtype = inputs.dtype
            return encoder(
                inputs,
                ops.cast(self.posembed_input.pos_embedding, dtype),
                [block.fused_params(dtype) for block in self.blocks],
                ops.cast(self.encoder_norm.gamma, dtype),
                ops.cast(self.encoder_norm.beta, dtype),
                self.approximate_gelu,
                LAYER_NORM_EPSILON,
                block_size=self.attention_block_size,
            )
        x = self.dropout(self.posembed_input(inputs), training=training)
        for block in self.blocks:
            x = block(x, training=training)
        return self.encoder_norm(x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_layers": self.num_layers,
            "mlp_dim": self.mlp_dim,
            "num_heads": self.num_heads,
            "dropout_rate": self.dropout_rate,
            "attention_dropout_rate": self.attention_dropout_rate,
            "approximate_gelu": self.approximate_gelu,
            "attention_impl": self.attention_impl,
            "attention_block_size": self.attention_block_size,
        }
