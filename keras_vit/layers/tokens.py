"""Token-level layers around the encoder: prefix tokens (class, distillation, registers)
and pooling."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class ClassToken(keras.layers.Layer):
    """Prepends learned tokens: ``[1, num_tokens, hidden]``, the weight named as the layer.

    The models use it for the class token (layer and checkpoint key ``cls``),
    DeiT's distillation token (``dist``) and register tokens (``reg``).

    Args:
        num_tokens: how many tokens to prepend.
        **kwargs: standard layer arguments.

    Example:
        >>> import numpy as np
        >>> tuple(ClassToken(name="cls")(np.zeros((2, 4, 8), "float32")).shape)
        (2, 5, 8)
    """

    def __init__(self, num_tokens: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.num_tokens = num_tokens

    def build(self, input_shape):
        self.cls = self.add_weight(
            name=self.name, shape=(1, self.num_tokens, input_shape[-1]), initializer="zeros"
        )

    def call(self, inputs):
        batch = ops.shape(inputs)[0]
        tokens = ops.broadcast_to(
            ops.cast(self.cls, inputs.dtype), (batch, self.num_tokens, ops.shape(inputs)[-1])
        )
        return ops.concatenate([tokens, inputs], axis=1)

    def compute_output_shape(self, input_shape):
        tokens = None if input_shape[1] is None else input_shape[1] + self.num_tokens
        return (input_shape[0], tokens, input_shape[2])

    def get_config(self):
        return {**super().get_config(), "num_tokens": self.num_tokens}


@keras.saving.register_keras_serializable(package="keras_vit")
class TokenPooling(keras.layers.Layer):
    """Reduces ``[batch, tokens, hidden]`` to ``[batch, hidden]``.

    Args:
        mode: ``"token"`` takes the class token (first), ``"gap"`` averages the
            patch tokens (the official ``gap`` classifier, and timm's
            ``global_pool="avg"``, which leaves the prefix tokens out), ``"max"``
            takes the maximum over the patch tokens.
        num_prefix_tokens: leading non-patch tokens (class, distillation,
            registers) that ``"gap"`` and ``"max"`` leave out.
        token_index: the token ``"token"`` takes (1: DeiT's distillation token).
        **kwargs: standard layer arguments.

    Example:
        >>> import numpy as np
        >>> x = np.arange(6, dtype="float32").reshape(1, 3, 2)
        >>> TokenPooling("gap", num_prefix_tokens=1)(x).numpy().tolist()
        [[3.0, 4.0]]
    """

    MODES = ("token", "gap", "max")

    def __init__(
        self, mode: str = "token", num_prefix_tokens: int = 0, token_index: int = 0, **kwargs
    ):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"Unknown pooling mode {mode!r}; expected one of {self.MODES}.")
        self.mode = mode
        self.num_prefix_tokens = num_prefix_tokens
        self.token_index = token_index

    def call(self, inputs):
        if self.mode == "token":
            return inputs[:, self.token_index]
        patches = inputs[:, self.num_prefix_tokens :]
        if self.mode == "gap":
            return ops.mean(patches, axis=1)
        return ops.max(patches, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self):
        return {
            **super().get_config(),
            "mode": self.mode,
            "num_prefix_tokens": self.num_prefix_tokens,
            "token_index": self.token_index,
        }
