"""A dense layer over several axes, stored as the official checkpoints store it."""

from __future__ import annotations

import math

import keras
from keras import ops


def flat_glorot_uniform(
    fan_in: int, fan_out: int, seed: int | None = None
) -> keras.initializers.RandomUniform:
    """Glorot-uniform over the flattened ``[fan_in, fan_out]`` matrix.

    flax's ``DenseGeneral`` initialises the kernel as one matrix and reshapes it;
    Keras's own glorot on a 3-D shape would count fans differently.

    Args:
        fan_in: product of the contracted input dimensions.
        fan_out: product of the output feature dimensions.
        seed: initializer seed.

    Returns:
        A uniform initializer on ``±sqrt(6 / (fan_in + fan_out))``.
    """
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return keras.initializers.RandomUniform(-limit, limit, seed=seed)


@keras.saving.register_keras_serializable(package="keras_vit")
class DenseGeneral(keras.layers.Layer):
    """``y = x · kernel + bias`` contracting the last ``in_axes`` axes of ``x``.

    The kernel is ``input_shape[-in_axes:] + features`` and the bias ``features``,
    the layout of flax's ``DenseGeneral`` (for example the attention's ``query``
    kernel ``[hidden, heads, head_dim]``).

    Args:
        features: output feature shape, an int or a tuple.
        in_axes: how many trailing input axes are contracted.
        use_bias: whether to add ``bias`` (timm's and Hugging Face's
            ``qkv_bias=False`` attention has none).
        **kwargs: standard layer arguments (``name``, ``dtype``).

    Example:
        >>> import numpy as np
        >>> layer = DenseGeneral((2, 4), name="query")
        >>> tuple(layer(np.zeros((1, 3, 8), "float32")).shape)
        (1, 3, 2, 4)
    """

    def __init__(
        self, features: int | tuple[int, ...], in_axes: int = 1, use_bias: bool = True, **kwargs
    ):
        super().__init__(**kwargs)
        self.features = (features,) if isinstance(features, int) else tuple(features)
        self.in_axes = in_axes
        self.use_bias = use_bias

    def build(self, input_shape):
        in_shape = tuple(input_shape[-self.in_axes :])
        self.kernel = self.add_weight(
            name="kernel",
            shape=in_shape + self.features,
            initializer=flat_glorot_uniform(math.prod(in_shape), math.prod(self.features)),
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=self.features,
                initializer=keras.initializers.RandomNormal(stddev=1e-6),
            )

    def call(self, inputs):
        outputs = ops.tensordot(inputs, self.kernel, axes=self.in_axes)
        return outputs if self.bias is None else outputs + self.bias

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[: -self.in_axes]) + self.features

    def get_config(self):
        return {
            **super().get_config(),
            "features": self.features,
            "in_axes": self.in_axes,
            "use_bias": self.use_bias,
        }
