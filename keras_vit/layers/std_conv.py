"""Weight-standardized convolution and GroupNorm, with each source's numerics.

Both ResNet families standardise their kernels and normalise with 32-group
GroupNorm, but the numerics are the source's, not the family's (``NUMERICS``):

- BiT ResNet-v2, ``"official"``: kernels standardised as ``(w - mean) / sqrt(var + 1e-10)``,
  GroupNorm epsilon 1e-5 (google-research/big_transfer: ``bit_jax/models.py``
  ``standardize`` with ``eps=1e-10`` in ``StdConv``, 1e-5 in ``GroupNorm``; the same in
  ``bit_pytorch`` and ``bit_tf2``).
- BiT ResNet-v2, ``"timm"``: ``sqrt(var + 1e-8)``, GroupNorm 1e-5 (timm's
  ``_create_resnetv2_bit``: ``StdConv2d(eps=1e-8)``; ``GroupNormAct`` eps 1e-5).
- The ViT hybrid's ResNet, ``"official"``: ``(w - mean) / (std + 1e-5)`` (vision_transformer's
  ``models_resnet.weight_standardize``) and flax's GroupNorm epsilon 1e-6.
- The ViT hybrid's ResNet, ``"timm"``: ``sqrt(var + 1e-8)``, GroupNorm 1e-5 (timm's
  ``vision_transformer_hybrid._resnetv2``: ``StdConv2dSame(eps=1e-8)``; ``GroupNormAct``).

The loaders set the numerics of the checkpoint's source (``set_numerics``).
"""

from __future__ import annotations

import logging

import keras
from keras import ops

logger = logging.getLogger("keras_vit")

GROUPS = 32
SOURCES = ("official", "timm")
_TIMM = dict(std_eps=1e-8, std_form="var", gn_eps=1e-5)
# family -> source -> numerics. Each source chose its own epsilons: BiT's code 1e-10 under the
# square root (its bit_tf2 notes that the authors' first code used std + 1e-5, the form
# vision_transformer kept for the hybrid), timm 1e-8 for both of its ports. The choice shows
# in the logits when a kernel's variance is small next to the epsilon.
NUMERICS = {
    "bit": {"official": dict(std_eps=1e-10, std_form="var", gn_eps=1e-5), "timm": _TIMM},
    "hybrid": {"official": dict(std_eps=1e-5, std_form="std", gn_eps=1e-6), "timm": _TIMM},
}
STD_FORMS = ("var", "std")


def numerics_of(family: str, source: str) -> dict:
    """The numerics of one ResNet family as one source computes it.

    Args:
        family: ``"bit"`` or ``"hybrid"``.
        source: ``"official"`` or ``"timm"``.

    Returns:
        ``dict(std_eps=..., std_form=..., gn_eps=...)``.

    Raises:
        ValueError: for an unknown source.

    Example:
        >>> numerics_of("bit", "official")["std_eps"]
        1e-10
    """
    if source not in SOURCES:
        raise ValueError(f"numerics must be one of {SOURCES}; got {source!r}.")
    return NUMERICS[family][source]


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
        eps: the source's epsilon (``numerics_of(family, source)["gn_eps"]``).
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
    """A ``StdConv2D`` with one source's standardization.

    Args:
        filters: output channels.
        size: square kernel side.
        strides: square stride.
        padding: ``"same"`` or symmetric zero padding, as ``StdConv2D``.
        numerics: ``numerics_of(family, source)``.
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


def set_numerics(model: keras.Model, family: str, source: str) -> bool:
    """Gives every weight-standardized convolution and GroupNorm of ``model`` a source's numerics.

    In keras_vit models these layers belong to the ResNet (BiT, or the hybrid's
    stem) alone, so each takes ``numerics_of(family, source)``; the layers that
    record the choice (``numerics`` in their config) record ``source``. Compiled
    functions are dropped, so the next ``predict`` traces the new numerics.

    Args:
        model: a keras_vit BiT or hybrid model (a plain ViT is left unchanged).
        family: ``"bit"`` or ``"hybrid"``.
        source: ``"official"`` or ``"timm"``.

    Returns:
        Whether anything changed.

    Example:
        >>> from keras_vit.models import ResNetV2
        >>> model = ResNetV2(layers=(1,), width=0.5, image_size=32, num_classes=2)
        >>> set_numerics(model, "bit", "timm")
        True
        >>> model.get_layer("root_block").numerics
        'timm'
    """
    numerics = numerics_of(family, source)
    changed = False
    # Keras has no public recursive walk over nested layers.
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, StdConv2D):
            new = dict(std_eps=numerics["std_eps"], std_form=numerics["std_form"])
        elif isinstance(layer, keras.layers.GroupNormalization):
            new = dict(epsilon=numerics["gn_eps"])
        elif hasattr(layer, "numerics"):
            new = dict(numerics=source)
        else:
            continue
        for name, value in new.items():
            changed |= getattr(layer, name) != value
            setattr(layer, name, value)
    if changed:
        logger.info("%s: %s numerics set to %s's", model.name, family, source)
        model.train_function = model.test_function = model.predict_function = None
    return changed
