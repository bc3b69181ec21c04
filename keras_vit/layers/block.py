"""One pre-norm Transformer block, scoped as the official checkpoints.

Scopes: ``LayerNorm_0``, ``MultiHeadDotProductAttention_1``, ``LayerNorm_2``,
``MlpBlock_3/Dense_{0,1}`` (the pre-Linen numbering of the released files), and
with LayerScale (timm ``init_values``, DINOv2) ``ls1`` / ``ls2``.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_vit.kernels import encoder_block
from keras_vit.layers.attention import MultiHeadDotProductAttention, check_attention_impl
from keras_vit.layers.mlp import LayerScale, MlpBlock, layer_norm
from keras_vit.layers.norm_dense import layer_norm_dense
from keras_vit.numerics import LAYER_NORM_EPSILON


@keras.saving.register_keras_serializable(package="keras_vit")
class Encoder1DBlock(keras.layers.Layer):
    """Pre-norm Transformer block: x + [ls1·]MHA(LN(x)), then x + [ls2·]MLP(LN(x)).

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
            the gradient of the XLA kernel: see the README's benchmark). On
            TensorFlow a training step runs ``LayerNorm_0`` and the attention's
            projections as ``keras_vit.layers.norm_dense.layer_norm_dense``,
            whose gradient recomputes the normalized tokens rather than keep them.
        attention_block_size: key-block size of the fused kernel's memory-saving
            attention for sequences longer than it (None: plain attention).
        layer_norm_epsilon: the LayerNorms' epsilon (1e-6; Hugging Face: 1e-12).
        layer_scale_init: None for no LayerScale; else the initial value of
            ``ls1`` / ``ls2`` (timm's ``init_values``). The fused kernel has no
            LayerScale: its scale is folded into the ``out`` and ``Dense_1``
            weights it is given (``s·(xW + b) = x(W·s) + b·s``).
        qkv_bias: whether the attention's query, key and value have biases (the
            fused kernel is given zeros when not).
        **kwargs: standard layer arguments.

    Example:
        >>> import numpy as np
        >>> block = Encoder1DBlock(16, 2, layer_scale_init=1e-5)
        >>> tuple(block(np.zeros((1, 5, 8), "float32")).shape)
        (1, 5, 8)
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
        layer_norm_epsilon: float = LAYER_NORM_EPSILON,
        layer_scale_init: float | None = None,
        qkv_bias: bool = True,
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
        self.layer_norm_epsilon = layer_norm_epsilon
        self.layer_scale_init = layer_scale_init
        self.qkv_bias = qkv_bias

    def build(self, input_shape):
        policy, eps = self.dtype_policy, self.layer_norm_epsilon
        self.norm_0 = layer_norm("LayerNorm_0", policy, eps)
        self.attention = MultiHeadDotProductAttention(
            self.num_heads,
            self.attention_dropout_rate,
            self.attention_impl,
            self.qkv_bias,
            name="MultiHeadDotProductAttention_1",
            dtype=policy,
        )
        self.norm_2 = layer_norm("LayerNorm_2", policy, eps)
        self.mlp = MlpBlock(
            self.mlp_dim, self.dropout_rate, self.approximate_gelu, name="MlpBlock_3", dtype=policy
        )
        sublayers = [self.norm_0, self.attention, self.norm_2, self.mlp]
        self.ls1 = self.ls2 = None
        if self.layer_scale_init is not None:
            self.ls1 = LayerScale(self.layer_scale_init, name="ls1", dtype=policy)
            self.ls2 = LayerScale(self.layer_scale_init, name="ls2", dtype=policy)
            sublayers += [self.ls1, self.ls2]
        for layer in sublayers:
            layer.build(input_shape)
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=policy)

    def fused_params(self, dtype: str) -> dict:
        """The block's weights under the names of ``keras_vit.kernels.encoder_block``.

        Args:
            dtype: the dtype of the inputs (the weights are cast to it).

        Returns:
            ``PARAM_NAMES`` -> the weight, cast to ``dtype`` (LayerScale folded in).
        """
        attention, mlp = self.attention, self.mlp
        weights = dict(
            ln0_scale=self.norm_0.gamma,
            ln0_bias=self.norm_0.beta,
            out_kernel=attention.out.kernel,
            out_bias=attention.out.bias,
            ln2_scale=self.norm_2.gamma,
            ln2_bias=self.norm_2.beta,
            mlp0_kernel=mlp.dense_0.kernel,
            mlp0_bias=mlp.dense_0.bias,
            mlp1_kernel=mlp.dense_1.kernel,
            mlp1_bias=mlp.dense_1.bias,
        )
        for name, dense in (("q", attention.query), ("k", attention.key), ("v", attention.value)):
            weights[f"{name}_kernel"] = dense.kernel
            weights[f"{name}_bias"] = (
                ops.zeros(dense.kernel.shape[1:]) if dense.bias is None else dense.bias
            )
        if self.ls1 is not None:
            for scale, prefix in ((self.ls1.scale, "out"), (self.ls2.scale, "mlp1")):
                weights[f"{prefix}_kernel"] = weights[f"{prefix}_kernel"] * scale
                weights[f"{prefix}_bias"] = weights[f"{prefix}_bias"] * scale
        return {name: ops.cast(value, dtype) for name, value in weights.items()}

    def call(self, inputs, training=None):
        if self.attention_impl == "fused" and not training:
            params = self.fused_params(inputs.dtype)
            return encoder_block(
                inputs,
                params,
                self.approximate_gelu,
                self.layer_norm_epsilon,
                block_size=self.attention_block_size,
            )
        if training and keras.backend.backend() == "tensorflow":
            x = self._attend_recomputing_norm(inputs, training)
        else:
            x = self.attention(self.norm_0(inputs), training=training)
        if self.ls1 is not None:
            x = self.ls1(x)
        x = inputs + self.dropout(x, training=training)
        y = self.mlp(self.norm_2(x), training=training)
        return x + (y if self.ls2 is None else self.ls2(y))

    def _attend_recomputing_norm(self, inputs, training):
        """The attention of ``LayerNorm_0(inputs)``, projected by ``layer_norm_dense``.

        That function's gradient recomputes the normalized tokens rather than keep them.
        """
        attention, dtype = self.attention, inputs.dtype
        projections = (attention.query, attention.key, attention.value)
        query, key, value = layer_norm_dense(
            inputs,
            self.norm_0.gamma,
            self.norm_0.beta,
            self.norm_0.epsilon,
            [ops.cast(p.kernel, dtype) for p in projections],
            [None if p.bias is None else ops.cast(p.bias, dtype) for p in projections],
        )
        return attention.attend(query, key, value, training)

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
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "layer_scale_init": self.layer_scale_init,
            "qkv_bias": self.qkv_bias,
        }
