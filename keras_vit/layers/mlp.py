"""The parts of an encoder block: LayerNorm, the MLP and LayerScale.

Scopes as in the checkpoints: ``LayerNorm_{i}``, ``MlpBlock_{i}/Dense_{0,1}``,
and timm's LayerScale ``ls1`` / ``ls2`` (DINOv2, CaiT-style blocks).
"""

from __future__ import annotations

import math

import keras
from keras import ops

from keras_vit.layers.dense_general import flat_glorot_uniform
from keras_vit.numerics import LAYER_NORM_EPSILON


def layer_norm(
    name: str,
    dtype_policy: str | keras.DTypePolicy | None,
    epsilon: float = LAYER_NORM_EPSILON,
) -> keras.layers.LayerNormalization:
    """A LayerNorm (weights ``gamma``/``beta`` = the checkpoints' ``scale``/``bias``).

    Args:
        name: the checkpoint scope (``LayerNorm_0``, ``encoder_norm``, ...).
        dtype_policy: the enclosing layer's dtype policy.
        epsilon: the source's epsilon: 1e-6 for the official code, big_vision
            and timm; Hugging Face's ``layer_norm_eps`` (1e-12 by default).

    Returns:
        An unbuilt ``keras.layers.LayerNormalization``.

    Example:
        >>> layer_norm("LayerNorm_0", None).epsilon
        1e-06
    """
    return keras.layers.LayerNormalization(epsilon=epsilon, name=name, dtype=dtype_policy)


def _official_dense(units: int, fan_in: int, name: str, dtype_policy) -> keras.layers.Dense:
    return keras.layers.Dense(
        units,
        kernel_initializer=flat_glorot_uniform(fan_in, units),
        bias_initializer=keras.initializers.RandomNormal(stddev=1e-6),
        name=name,
        dtype=dtype_policy,
    )


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_CUBIC = 0.044715  # the tanh form: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))


def _tanh_gelu_with_recomputed_gradient(x):
    def grad(upstream):
        t = ops.tanh(_SQRT_2_OVER_PI * (x + _CUBIC * x * x * x))
        dt = (1.0 - t * t) * _SQRT_2_OVER_PI * (1.0 + 3 * _CUBIC * x * x)
        return upstream * (0.5 * (1.0 + t) + 0.5 * x * dt)

    return keras.activations.gelu(x, approximate=True), grad


def gelu(x, approximate: bool):
    """GELU, tanh (``approximate=True``) or erf form, as ``keras.activations.gelu``.

    On TensorFlow the tanh form's gradient is recomputed from ``x`` alone:
    TensorFlow's own gradient keeps the ``tanh`` of every MLP (``[batch, tokens,
    mlp_dim]``) alive until the backward pass; in an XLA-compiled ViT-S/16
    training step (batch 16) that was 232 MB of the 1.65 GB XLA allocated. The
    other backends run ``keras.activations.gelu`` as it is.

    Args:
        x: the activations.
        approximate: the tanh form if True, the exact erf form if False.

    Returns:
        GELU of ``x``, in its dtype.

    Example:
        >>> import numpy as np
        >>> round(float(gelu(np.float32(1.0), approximate=True)), 4)
        0.8412
    """
    if approximate and keras.backend.backend() == "tensorflow":
        return ops.custom_gradient(_tanh_gelu_with_recomputed_gradient)(x)
    return keras.activations.gelu(x, approximate=approximate)


@keras.saving.register_keras_serializable(package="keras_vit")
class MlpBlock(keras.layers.Layer):
    """Dense → GELU → dropout → Dense → dropout (``Dense_0``, ``Dense_1``).

    Args:
        mlp_dim: width of the hidden layer.
        dropout_rate: dropout after each Dense.
        approximate_gelu: tanh form of GELU (official JAX checkpoints, big_vision,
            Hugging Face ``gelu_new``) if True, exact erf form (timm, Hugging Face
            ``gelu``) if False.
        **kwargs: standard layer arguments.

    Example:
        >>> import numpy as np
        >>> tuple(MlpBlock(16)(np.zeros((2, 5, 8), "float32")).shape)
        (2, 5, 8)
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
        x = gelu(x, self.approximate_gelu)
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
class LayerScale(keras.layers.Layer):
    """Multiplies each channel by a learned ``scale`` (timm's ``ls1.gamma`` / ``ls2.gamma``).

    Args:
        init_value: the initial value of every channel's scale (timm's ``init_values``).
        **kwargs: standard layer arguments; the blocks name it ``ls1`` / ``ls2``.

    Example:
        >>> import numpy as np
        >>> LayerScale(0.5)(np.ones((1, 2, 4), "float32")).numpy().tolist()[0][0]
        [0.5, 0.5, 0.5, 0.5]
    """

    def __init__(self, init_value: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.init_value = init_value

    def build(self, input_shape):
        self.scale = self.add_weight(
            name="scale",
            shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(self.init_value),
        )

    def call(self, inputs):
        return inputs * ops.cast(self.scale, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "init_value": self.init_value}
