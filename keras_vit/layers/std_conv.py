"""Weight-standardized convolution and GroupNorm, with each ResNet family's numerics.

Both ResNet families standardise their kernels and normalise with 32-group
GroupNorm, but each copies its numerics from its own source:

- BiT ResNet-v2 (``keras_vit.layers.bit``): kernels standardised as
  ``(w - mean) / sqrt(var + 1e-8)`` and GroupNorm epsilon 1e-5, as timm's
  ``resnetv2_*_bit`` (the PyTorch port of the BiT files).
- The ViT hybrid's ResNet (``keras_vit.layers.hybrid``): kernels standardised as
  ``(w - mean) / (std + 1e-5)`` (vision_transformer's ``StdConv``) and flax's
  GroupNorm epsilon 1e-6.
"""

from __future__ import annotations

import keras
from keras import ops

GROUPS = 32
BIT_NUMERICS = dict(std_eps=1e-8, std_form="var", gn_eps=1e-5)
HYBRID_NUMERICS = dict(std_eps=1e-5, std_form="std", gn_eps=1e-6)
STD_FORMS = ("var", "std")


def weight_standardize(kernel, eps: float, form: str):
    """Standardises a ``[kh, kw, in, out]`` kernel over its first three axes.

    Args:
        kernel: the convolution kernel.
        eps: the standardization epsilon.
        form: ``"var"``: ``(w - mean) / sqrt(var + eps)`` (BiT, timm);
            ``"std"``: ``(w - mean) / (std + eps)`` (vision_transformer's hybrid).

    Returns:
        The standardized kernel, of the kernel's shape.
    """
    mean = ops.mean(kernel, axis=(0, 1, 2), keepdims=True)
    centred = kernel - mean
    var = ops.mean(ops.square(centred), axis=(0, 1, 2), keepdims=True)
    if form == "var":
        return centred / ops.sqrt(var + eps)
    return centred / (ops.sqrt(var) + eps)


@keras.saving.register_keras_serializable(package="keras_vit")
class StdConv2D(keras.layers.Layer):
    """A bias-free convolution with a weight-standardized kernel.

    Args:
        filters: output channels.
        kernel_size: square kernel side.
        strides: square stride.
        padding: ``"same"`` (TensorFlow/flax SAME) or an int of symmetric zero
            padding followed by a VALID convolution (BiT, PyTorch).
        std_eps: standardization epsilon.
        std_form: ``"var"`` or ``"std"``, see ``weight_standardize``.
        **kwargs: standard layer arguments.

    Example:
        >>> import numpy as np
        >>> conv = StdConv2D(8, 3, strides=2, padding=1, name="standardized_conv2d")
        >>> tuple(conv(np.zeros((1, 8, 8, 4), "float32")).shape)
        (1, 4, 4, 8)
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int,
        strides: int = 1,
        padding: str | int = "same",
        std_eps: float = 1e-8,
        std_form: str = "var",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if std_form not in STD_FORMS:
            raise ValueError(f"std_form must be one of {STD_FORMS}; got {std_form!r}.")
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.padding = padding
        self.std_eps = std_eps
        self.std_form = std_form

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.kernel_size, self.kernel_size, input_shape[-1], self.filters),
            initializer="he_normal",
        )

    def call(self, inputs):
        kernel = ops.cast(
            weight_standardize(self.kernel, self.std_eps, self.std_form), inputs.dtype
        )
        if self.padding == "same":
            return ops.conv(inputs, kernel, self.strides, padding="same")
        if self.padding:
            p = self.padding
            inputs = ops.pad(inputs, ((0, 0), (p, p), (p, p), (0, 0)))
        return ops.conv(inputs, kernel, self.strides, padding="valid")

    def compute_output_shape(self, input_shape):
        def size(n):
            if n is None:
                return None
            if self.padding == "same":
                return -(-n // self.strides)
            return (n + 2 * self.padding - self.kernel_size) // self.strides + 1

        return (input_shape[0], size(input_shape[1]), size(input_shape[2]), self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "std_eps": self.std_eps,
            "std_form": self.std_form,
        }


def group_norm(
    name: str,
    eps: float,
    dtype_policy: str | keras.DTypePolicy | None = None,
    zero_init: bool = False,
) -> keras.layers.GroupNormalization:
    """GroupNorm with the 32 groups of BiT and the hybrid's ResNet.

    Args:
        name: the checkpoint scope (``gn1``, ``group_norm``, ...).
        eps: the family's epsilon (``BIT_NUMERICS["gn_eps"]`` or ``HYBRID_NUMERICS["gn_eps"]``).
        dtype_policy: the enclosing layer's dtype policy.
        zero_init: start the scale at zero (the last norm of a hybrid unit).

    Returns:
        An unbuilt ``keras.layers.GroupNormalization`` (weights ``gamma``/``beta``).
    """
    return keras.layers.GroupNormalization(
        groups=GROUPS,
        epsilon=eps,
        gamma_initializer="zeros" if zero_init else "ones",
        name=name,
        dtype=dtype_policy,
    )


def std_conv(
    filters: int,
    size: int,
    strides: int,
    padding: str | int,
    numerics: dict,
    name: str,
    dtype_policy: str | keras.DTypePolicy | None = None,
) -> StdConv2D:
    """A ``StdConv2D`` with one family's standardization.

    Args:
        filters: output channels.
        size: square kernel side.
        strides: square stride.
        padding: ``"same"`` or symmetric zero padding, as ``StdConv2D``.
        numerics: ``BIT_NUMERICS`` or ``HYBRID_NUMERICS``.
        name: the checkpoint scope (``conv1``, ``standardized_conv2d``, ...).
        dtype_policy: the enclosing layer's dtype policy.

    Returns:
        An unbuilt ``StdConv2D``.
    """
    return StdConv2D(
        filters,
        size,
        strides,
        padding=padding,
        std_eps=numerics["std_eps"],
        std_form=numerics["std_form"],
        name=name,
        dtype=dtype_policy,
    )
