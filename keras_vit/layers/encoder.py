"""The Transformer encoder of ViT, scoped as the official checkpoints.

Scopes: ``Transformer/posembed_input/pos_embedding``,
``Transformer/encoderblock_{i}/...`` (``keras_vit.layers.block``),
``Transformer/encoder_norm``.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_vit.kernels import encoder, encoder_block
from keras_vit.layers.attention import check_attention_impl
from keras_vit.layers.block import Encoder1DBlock
from keras_vit.layers.mlp import MlpBlock, layer_norm
from keras_vit.numerics import LAYER_NORM_EPSILON  # also keras_vit.layers.LAYER_NORM_EPSILON

__all__ = ["LAYER_NORM_EPSILON", "AddPositionEmbs", "Encoder", "Encoder1DBlock", "MlpBlock"]
POSITION_EMBEDDINGS = ("learn", "none")


@keras.saving.register_keras_serializable(package="keras_vit")
class AddPositionEmbs(keras.layers.Layer):
    """Adds a learned ``pos_embedding`` of shape ``[1, tokens - unembedded_tokens, hidden]``.

    Args:
        unembedded_tokens: leading (prefix) tokens that get no position
            embedding: timm's ``no_embed_class=True`` (registers, DINOv2) and
            big_vision's class token, whose embeddings cover the patches only.
        **kwargs: standard layer arguments.

    Example:
        >>> import numpy as np
        >>> layer = AddPositionEmbs(unembedded_tokens=1)
        >>> tuple(layer(np.zeros((2, 5, 8), "float32")).shape), tuple(layer.pos_embedding.shape)
        ((2, 5, 8), (1, 4, 8))
    """

    def __init__(self, unembedded_tokens: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.unembedded_tokens = unembedded_tokens

    def build(self, input_shape):
        self.pos_embedding = self.add_weight(
            name="pos_embedding",
            shape=(1, input_shape[1] - self.unembedded_tokens, input_shape[2]),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
        )

    def padded(self, dtype: str):
        """``[1, tokens, hidden]``: zero rows (exact under addition) for the unembedded tokens.

        Args:
            dtype: the dtype to cast to.

        Returns:
            The embeddings of every token.
        """
        posemb = ops.cast(self.pos_embedding, dtype)
        if not self.unembedded_tokens:
            return posemb
        zeros = ops.zeros((1, self.unembedded_tokens, posemb.shape[-1]), dtype)
        return ops.concatenate([zeros, posemb], axis=1)

    def call(self, inputs):
        return inputs + self.padded(inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "unembedded_tokens": self.unembedded_tokens}


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
            (``keras_vit.kernels.encoder``) in inference, or without a final
            norm one kernel per block; ``"reference"``, and every training
            step, layer by layer (see ``Encoder1DBlock``).
        attention_block_size: see ``Encoder1DBlock``.
        layer_norm_epsilon: see ``Encoder1DBlock``.
        layer_scale_init: see ``Encoder1DBlock``.
        qkv_bias: see ``Encoder1DBlock``.
        final_norm: whether ``encoder_norm`` ends the encoder (timm's
            ``fc_norm`` models normalise after pooling instead).
        position_embedding: ``"learn"`` (``posembed_input``) or ``"none"``
            (the model adds computed ones, such as sincos2d, before).
        unembedded_tokens: see ``AddPositionEmbs``.
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
        layer_norm_epsilon: float = LAYER_NORM_EPSILON,
        layer_scale_init: float | None = None,
        qkv_bias: bool = True,
        final_norm: bool = True,
        position_embedding: str = "learn",
        unembedded_tokens: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if position_embedding not in POSITION_EMBEDDINGS:
            raise ValueError(
                f"position_embedding must be one of {POSITION_EMBEDDINGS}; "
                f"got {position_embedding!r}."
            )
        self.num_layers = num_layers
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
        self.final_norm = final_norm
        self.position_embedding = position_embedding
        self.unembedded_tokens = unembedded_tokens

    def _block_config(self) -> dict:
        return dict(
            mlp_dim=self.mlp_dim,
            num_heads=self.num_heads,
            dropout_rate=self.dropout_rate,
            attention_dropout_rate=self.attention_dropout_rate,
            approximate_gelu=self.approximate_gelu,
            attention_impl=self.attention_impl,
            attention_block_size=self.attention_block_size,
            layer_norm_epsilon=self.layer_norm_epsilon,
            layer_scale_init=self.layer_scale_init,
            qkv_bias=self.qkv_bias,
        )

    def build(self, input_shape):
        policy = self.dtype_policy
        self.posembed_input = None
        if self.position_embedding == "learn":
            self.posembed_input = AddPositionEmbs(
                self.unembedded_tokens, name="posembed_input", dtype=policy
            )
            self.posembed_input.build(input_shape)
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=policy)
        self.blocks = [
            Encoder1DBlock(**self._block_config(), name=f"encoderblock_{i}", dtype=policy)
            for i in range(self.num_layers)
        ]
        for block in self.blocks:
            block.build(input_shape)
        self.encoder_norm = None
        if self.final_norm:
            self.encoder_norm = layer_norm("encoder_norm", policy, self.layer_norm_epsilon)
            self.encoder_norm.build(input_shape)

    def embed(self, inputs):
        """The tokens plus their position embeddings (before any block).

        Args:
            inputs: ``[batch, tokens, hidden]``.

        Returns:
            ``inputs`` with the learned position embeddings added (unchanged
            with ``position_embedding="none"``).
        """
        return inputs if self.posembed_input is None else self.posembed_input(inputs)

    def _fused(self, inputs):
        dtype = inputs.dtype
        blocks = [block.fused_params(dtype) for block in self.blocks]
        options = dict(block_size=self.attention_block_size)
        if self.final_norm:
            posemb = (
                ops.zeros((1, 1, inputs.shape[-1]), dtype)
                if self.posembed_input is None
                else self.posembed_input.padded(dtype)
            )
            scale, bias = (
                ops.cast(w, dtype) for w in (self.encoder_norm.gamma, self.encoder_norm.beta)
            )
            return encoder(
                inputs,
                posemb,
                blocks,
                scale,
                bias,
                self.approximate_gelu,
                self.layer_norm_epsilon,
                **options,
            )
        x = self.embed(inputs)
        for params in blocks:
            x = encoder_block(x, params, self.approximate_gelu, self.layer_norm_epsilon, **options)
        return x

    def call(self, inputs, training=None):
        if self.attention_impl == "fused" and not training:
            return self._fused(inputs)
        x = self.dropout(self.embed(inputs), training=training)
        for block in self.blocks:
            x = block(x, training=training)
        return x if self.encoder_norm is None else self.encoder_norm(x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_layers": self.num_layers,
            **self._block_config(),
            "final_norm": self.final_norm,
            "position_embedding": self.position_embedding,
            "unembedded_tokens": self.unembedded_tokens,
        }
