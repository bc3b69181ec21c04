"""big_vision's multihead attention-pooling head (``MAPHead_0``, ``pool_type="map"``).

A learned ``probe`` attends over the encoded tokens with the encoder's head
count, then ``o + MlpBlock_0(LayerNorm_0(o))``; the pooled vector is ``o[:, 0]``.
Its attention (one query) always runs the reference path, whatever the model's
``attention_impl``. Scopes: ``MAPHead_0/probe``, ``MAPHead_0/MultiHeadDotProductAttention_0/{query,
key, value, out}``, ``MAPHead_0/LayerNorm_0``, ``MAPHead_0/MlpBlock_0/Dense_{0,1}``.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_vit.layers.attention import MultiHeadDotProductAttention
from keras_vit.layers.mlp import MlpBlock, layer_norm
from keras_vit.numerics import LAYER_NORM_EPSILON


@keras.saving.register_keras_serializable(package="keras_vit")
class MAPHead(keras.layers.Layer):
    """Attention pooling: ``[batch, tokens, hidden]`` -> ``[batch, hidden]``.

    Args:
        num_heads: attention heads (big_vision uses the encoder's).
        mlp_dim: hidden width of the MLP (big_vision: the encoder's).
        approximate_gelu: the MLP's GELU form (big_vision: tanh).
        layer_norm_epsilon: epsilon of ``LayerNorm_0``.
        **kwargs: standard layer arguments; the model names it ``"MAPHead_0"``.

    Example:
        >>> import numpy as np
        >>> head = MAPHead(num_heads=2, mlp_dim=16, name="MAPHead_0")
        >>> tuple(head(np.zeros((3, 5, 8), "float32")).shape)
        (3, 8)
    """

    def __init__(
        self,
        num_heads: int,
        mlp_dim: int,
        approximate_gelu: bool = True,
        layer_norm_epsilon: float = LAYER_NORM_EPSILON,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.approximate_gelu = approximate_gelu
        self.layer_norm_epsilon = layer_norm_epsilon

    def build(self, input_shape):
        policy, width = self.dtype_policy, input_shape[-1]
        self.probe = self.add_weight(
            name="probe", shape=(1, 1, width), initializer="glorot_uniform"
        )
        probe_shape = (input_shape[0], 1, width)
        self.attention = MultiHeadDotProductAttention(
            self.num_heads,
            attention_impl="reference",
            name="MultiHeadDotProductAttention_0",
            dtype=policy,
        )
        self.attention.build(probe_shape)
        self.norm = layer_norm("LayerNorm_0", policy, self.layer_norm_epsilon)
        self.norm.build(probe_shape)
        self.mlp = MlpBlock(
            self.mlp_dim, approximate_gelu=self.approximate_gelu, name="MlpBlock_0", dtype=policy
        )
        self.mlp.build(probe_shape)

    def call(self, inputs, training=None):
        batch, width = ops.shape(inputs)[0], ops.shape(inputs)[-1]
        probe = ops.broadcast_to(ops.cast(self.probe, inputs.dtype), (batch, 1, width))
        x = self.attention(probe, inputs, training=training)
        x = x + self.mlp(self.norm(x), training=training)
        return x[:, 0]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "mlp_dim": self.mlp_dim,
            "approximate_gelu": self.approximate_gelu,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        }
