"""Token-level layers around the encoder: the class token and the pooling."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class ClassToken(keras.layers.Layer):
    """Prepends the learned class token (checkpoint key ``cls``, ``[1, 1, hidden]``).

    Example:
        >>> import numpy as np
        >>> tuple(ClassToken(name="cls")(np.zeros((2, 4, 8), "float32")).shape)
        (2, 5, 8)
    """

    def build(self, input_shape):
        self.cls = self.add_weight(name="cls", shape=(1, 1, input_shape[-1]), initializer="zeros")

    def call(self, inputs):
        batch = ops.shape(inputs)[0]
        token = ops.broadcast_to(
            ops.cast(self.cls, inputs.dtype), (batch, 1, ops.shape(inputs)[-1])
        )
        return ops.concatenate([token, inputs], axis=1)

    def compute_output_shape(self, input_shape):
        tokens = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], tokens, input_shape[2])


@keras.saving.register_keras_serializable(package="keras_vit")
class TokenPooling(keras.layers.Layer):
    """Reduces ``[batch, tokens, hidden]`` to ``[batch, hidden]``.

    Args:
        mode: ``"token"`` takes the class token (first), ``"gap"`` averages all
            tokens (the official ``gap`` classifier: the encoder has already
            normalised every token), ``"max"`` takes the maximum.
        **kwargs: standard layer arguments.
    """

    MODES = ("token", "gap", "max")

    def __init__(self, mode: str = "token", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"Unknown pooling mode {mode!r}; expected one of {self.MODES}.")
        self.mode = mode

    def call(self, inputs):
        if self.mode == "token":
            return inputs[:, 0]
        if self.mode == "gap":
            return ops.mean(inputs, axis=1)
        return ops.max(inputs, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
