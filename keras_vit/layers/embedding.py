"""The patch embedding (checkpoint scope ``embedding``: kernel ``[p, p, channels, hidden]``)
and big_vision's computed ``sincos2d`` position embeddings."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_vit.kernels import patch_embed, patch_embed_reference
from keras_vit.layers.attention import check_attention_impl


@keras.saving.register_keras_serializable(package="keras_vit")
class PatchEmbedding(keras.layers.Layer):
    """Cuts images into ``patch_size`` patches and projects each to ``hidden_size``.

    Returns the grid ``[batch, grid_h, grid_w, hidden]``, as the official strided
    convolution does.

    Args:
        hidden_size: embedding width.
        patch_size: square patch side.
        attention_impl: ``"fused"`` (reshape + one XLA matmul) or ``"reference"``
            (the strided convolution); the name follows the models' one switch.
        **kwargs: standard layer arguments; the model names it ``"embedding"``.

    Example:
        >>> import numpy as np
        >>> layer = PatchEmbedding(8, 4, name="embedding")
        >>> tuple(layer(np.zeros((2, 8, 12, 3), "float32")).shape)
        (2, 2, 3, 8)
    """

    def __init__(self, hidden_size: int, patch_size: int, attention_impl: str = "fused", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.patch_size = patch_size
        self.attention_impl = check_attention_impl(attention_impl)

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.patch_size, self.patch_size, input_shape[-1], self.hidden_size),
            initializer="lecun_normal",
        )
        self.bias = self.add_weight(name="bias", shape=(self.hidden_size,), initializer="zeros")

    def call(self, inputs):
        kernel, bias = ops.cast(self.kernel, inputs.dtype), ops.cast(self.bias, inputs.dtype)
        if self.attention_impl == "fused":
            tokens = patch_embed(inputs, kernel, bias)
        else:
            tokens = patch_embed_reference(inputs, kernel, bias)
        # Static sizes where known (the functional model's shapes); dynamic ones
        # where a trace has relaxed them to None.
        grid = [
            (static if static is not None else ops.shape(inputs)[axis]) // self.patch_size
            for axis, static in ((1, inputs.shape[1]), (2, inputs.shape[2]))
        ]
        return ops.reshape(tokens, (-1, *grid, self.hidden_size))

    def compute_output_shape(self, input_shape):
        p = self.patch_size
        return (input_shape[0], input_shape[1] // p, input_shape[2] // p, self.hidden_size)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_size": self.hidden_size,
            "patch_size": self.patch_size,
            "attention_impl": self.attention_impl,
        }


def sincos2d(grid_h: int, grid_w: int, width: int, temperature: float = 10_000.0) -> np.ndarray:
    """big_vision's ``posemb_sincos_2d``: fixed position embeddings of a patch grid.

    ``omega = 1 / temperature**(arange(D/4) / (D/4 - 1))``; each position (row
    ``y``, column ``x``, row-major) gets ``[sin(x·ω), cos(x·ω), sin(y·ω), cos(y·ω)]``:
    the column comes first. Computed in float64, returned as float32.

    Args:
        grid_h: grid rows.
        grid_w: grid columns.
        width: embedding width, a multiple of 4.
        temperature: the frequency base.

    Returns:
        float32 ``[grid_h * grid_w, width]``.

    Example:
        >>> sincos2d(2, 3, 8).shape
        (6, 8)
    """
    if width % 4:
        raise ValueError(f"sincos2d position embeddings need a width divisible by 4; got {width}.")
    y, x = np.mgrid[:grid_h, :grid_w]
    quarter = width // 4
    omega = 1.0 / temperature ** (np.arange(quarter) / max(quarter - 1, 1))
    x = x.reshape(-1, 1) * omega[None]
    y = y.reshape(-1, 1) * omega[None]
    return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1).astype(np.float32)


@keras.saving.register_keras_serializable(package="keras_vit")
class SinCos2DPositionEmbedding(keras.layers.Layer):
    """Adds ``sincos2d`` embeddings (computed, not learned) to a patch grid.

    Applied to the ``[batch, grid_h, grid_w, hidden]`` grid, before any prefix
    token is prepended (big_vision's ``posemb="sincos2d"``); the grid size comes
    from the input.

    Args:
        temperature: the frequency base (big_vision: 10000).
        **kwargs: standard layer arguments.

    Example:
        >>> import numpy as np
        >>> layer = SinCos2DPositionEmbedding()
        >>> tuple(layer(np.zeros((1, 2, 3, 8), "float32")).shape)
        (1, 2, 3, 8)
    """

    def __init__(self, temperature: float = 10_000.0, **kwargs):
        super().__init__(**kwargs)
        self.temperature = temperature

    def call(self, inputs):
        grid_h, grid_w, width = inputs.shape[1:]
        posemb = sincos2d(grid_h, grid_w, width, self.temperature).reshape(grid_h, grid_w, width)
        return inputs + ops.cast(posemb, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}
