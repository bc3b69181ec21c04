"""ResNet building blocks: weight-standardized convolution and GroupNorm units.

Two families with different numerics, each copied from its source:

- BiT ResNet-v2 (``PreActBottleneck``): pre-activation units, scopes of the
  BiT checkpoints (``block1/unit01/a/group_norm``, ``a/standardized_conv2d``,
  ``a/proj/standardized_conv2d``); kernels standardised as
  ``(w - mean) / sqrt(var + 1e-8)`` and GroupNorm epsilon 1e-5, as timm's
  ``resnetv2_*_bit`` (the PyTorch port of the BiT files).
- The ViT hybrid stem (``ResidualUnit``): post-activation bottlenecks of
  vision_transformer's ``models_resnet.py`` (``conv1``, ``gn1``, ...,
  ``conv_proj``, ``gn_proj``); kernels standardised as
  ``(w - mean) / (std + 1e-5)`` and flax's GroupNorm epsilon 1e-6.
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

    ``form="var"``: ``(w - mean) / sqrt(var + eps)`` (BiT, timm);
    ``form="std"``: ``(w - mean) / (std + eps)`` (vision_transformer's hybrid).
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
        padding="same",
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
        kernel = weight_standardize(self.kernel, self.std_eps, self.std_form)
        if self.padding == "same":
            return ops.conv(inputs, ops.cast(kernel, inputs.dtype), self.strides, padding="same")
        if self.padding:
            p = self.padding
            inputs = ops.pad(inputs, ((0, 0), (p, p), (p, p), (0, 0)))
        return ops.conv(inputs, ops.cast(kernel, inputs.dtype), self.strides, padding="valid")

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


def group_norm(name: str, eps: float, dtype_policy=None, zero_init: bool = False):
    """GroupNorm with the 32 groups of BiT and the hybrid stem."""
    return keras.layers.GroupNormalization(
        groups=GROUPS,
        epsilon=eps,
        gamma_initializer="zeros" if zero_init else "ones",
        name=name,
        dtype=dtype_policy,
    )


def std_conv(
    filters: int, size: int, strides: int, padding, numerics: dict, name: str, dtype_policy=None
):
    """A ``StdConv2D`` with one family's standardization (``BIT_NUMERICS`` or ``HYBRID_NUMERICS``)."""
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


class _Composite(keras.layers.Layer):
    """Builds its sublayers in order, so weights carry nested checkpoint scopes."""

    def _build_chain(self, layers, input_shape):
        shape = input_shape
        for layer in layers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        return shape


@keras.saving.register_keras_serializable(package="keras_vit")
class PreActConv(_Composite):
    """One third of a BiT unit: GroupNorm → ReLU → StdConv (scopes ``group_norm``,
    ``standardized_conv2d``; with ``projection_filters``, also ``proj``: the
    shortcut convolution of the pre-activated input).

    Args:
        filters: convolution output channels.
        kernel_size: 1 or 3.
        strides: convolution stride.
        projection_filters: channels of the shortcut projection, or None.
        projection_strides: stride of the shortcut projection.
        **kwargs: standard layer arguments.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int = 1,
        strides: int = 1,
        projection_filters: int | None = None,
        projection_strides: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.projection_filters = projection_filters
        self.projection_strides = projection_strides

    def build(self, input_shape):
        self.group_norm = group_norm("group_norm", BIT_NUMERICS["gn_eps"], self.dtype_policy)
        self.group_norm.build(input_shape)
        self.standardized_conv2d = std_conv(
            self.filters,
            self.kernel_size,
            self.strides,
            self.kernel_size // 2,
            BIT_NUMERICS,
            "standardized_conv2d",
            self.dtype_policy,
        )
        self.standardized_conv2d.build(input_shape)
        self.proj = None
        if self.projection_filters:
            self.proj = _Projection(
                self.projection_filters,
                self.projection_strides,
                name="proj",
                dtype=self.dtype_policy,
            )
            self.proj.build(input_shape)

    def call(self, inputs):
        """Returns ``(conv output, shortcut)``; the shortcut is None without projection."""
        x = ops.relu(self.group_norm(inputs))
        shortcut = None if self.proj is None else self.proj(x)
        return self.standardized_conv2d(x), shortcut

    def compute_output_shape(self, input_shape):
        return self.standardized_conv2d.compute_output_shape(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "projection_filters": self.projection_filters,
            "projection_strides": self.projection_strides,
        }


@keras.saving.register_keras_serializable(package="keras_vit")
class _Projection(_Composite):
    """The BiT shortcut projection, scoped ``proj/standardized_conv2d``."""

    def __init__(self, filters: int, strides: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides

    def build(self, input_shape):
        self.standardized_conv2d = std_conv(
            self.filters, 1, self.strides, 0, BIT_NUMERICS, "standardized_conv2d", self.dtype_policy
        )
        self.standardized_conv2d.build(input_shape)

    def call(self, inputs):
        return self.standardized_conv2d(inputs)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides}


@keras.saving.register_keras_serializable(package="keras_vit")
class PreActBottleneck(_Composite):
    """BiT's pre-activation bottleneck unit (``a``, ``b``, ``c``), stride on the 3x3.

    Args:
        filters: output channels (4x the bottleneck width in BiT).
        mid_filters: bottleneck width.
        strides: stride of the 3x3 convolution and of the projection.
        project: whether the shortcut is projected (first unit of a stage).
        **kwargs: standard layer arguments; named ``unit01``, ``unit02``, ...
    """

    def __init__(
        self, filters: int, mid_filters: int, strides: int = 1, project: bool = False, **kwargs
    ):
        super().__init__(**kwargs)
        self.filters = filters
        self.mid_filters = mid_filters
        self.strides = strides
        self.project = project

    def build(self, input_shape):
        policy = self.dtype_policy
        self.a = PreActConv(
            self.mid_filters,
            1,
            1,
            self.filters if self.project else None,
            self.strides,
            name="a",
            dtype=policy,
        )
        self.b = PreActConv(self.mid_filters, 3, self.strides, name="b", dtype=policy)
        self.c = PreActConv(self.filters, 1, 1, name="c", dtype=policy)
        self._build_chain((self.a, self.b, self.c), input_shape)

    def call(self, inputs):
        x, shortcut = self.a(inputs)
        x, _ = self.b(x)
        x, _ = self.c(x)
        return x + (inputs if shortcut is None else shortcut)

    def compute_output_shape(self, input_shape):
        return self.b.compute_output_shape(input_shape)[:3] + (self.filters,)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "mid_filters": self.mid_filters,
            "strides": self.strides,
            "project": self.project,
        }


@keras.saving.register_keras_serializable(package="keras_vit")
class ResidualUnit(_Composite):
    """The hybrid stem's bottleneck (vision_transformer ``models_resnet.py``):
    conv1 → gn1 → ReLU → conv2 (3x3, stride) → gn2 → ReLU → conv3 → gn3, plus the
    (projected) shortcut, then ReLU. Convolutions pad "SAME" as flax does.

    Args:
        features: bottleneck width; the unit outputs ``4 * features`` channels.
        strides: stride of conv2 and of the projection.
        **kwargs: standard layer arguments; named ``unit1``, ``unit2``, ...
    """

    def __init__(self, features: int, strides: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.features = features
        self.strides = strides

    def _conv(self, filters, size, strides, name):
        return std_conv(filters, size, strides, "same", HYBRID_NUMERICS, name, self.dtype_policy)

    def build(self, input_shape):
        eps, policy, out = HYBRID_NUMERICS["gn_eps"], self.dtype_policy, 4 * self.features
        self.needs_projection = input_shape[-1] != out or self.strides != 1
        if self.needs_projection:
            self.conv_proj = self._conv(out, 1, self.strides, "conv_proj")
            self.gn_proj = group_norm("gn_proj", eps, policy)
            self._build_chain((self.conv_proj, self.gn_proj), input_shape)
        self.conv1 = self._conv(self.features, 1, 1, "conv1")
        self.gn1 = group_norm("gn1", eps, policy)
        self.conv2 = self._conv(self.features, 3, self.strides, "conv2")
        self.gn2 = group_norm("gn2", eps, policy)
        self.conv3 = self._conv(out, 1, 1, "conv3")
        self.gn3 = group_norm("gn3", eps, policy, zero_init=True)
        self._build_chain(
            (self.conv1, self.gn1, self.conv2, self.gn2, self.conv3, self.gn3), input_shape
        )

    def call(self, inputs):
        residual = inputs
        if self.needs_projection:
            residual = self.gn_proj(self.conv_proj(inputs))
        y = ops.relu(self.gn1(self.conv1(inputs)))
        y = ops.relu(self.gn2(self.conv2(y)))
        y = self.gn3(self.conv3(y))
        return ops.relu(residual + y)

    def compute_output_shape(self, input_shape):
        return self.conv2.compute_output_shape(input_shape)[:3] + (4 * self.features,)

    def get_config(self):
        return {**super().get_config(), "features": self.features, "strides": self.strides}


@keras.saving.register_keras_serializable(package="keras_vit")
class ResNetStage(_Composite):
    """A stage of units named ``unit{i}`` (hybrid) or ``unit{i:02d}`` (BiT).

    Args:
        num_units: units in the stage.
        width: bottleneck width of each unit.
        strides: stride of the first unit.
        preact: BiT pre-activation units (True) or the hybrid stem's (False).
        **kwargs: standard layer arguments; named ``block1``, ``block2``, ...

    Example:
        >>> import numpy as np
        >>> stage = ResNetStage(2, width=32, strides=2, preact=True, name="block2")
        >>> tuple(stage(np.zeros((1, 8, 8, 64), "float32")).shape)
        (1, 4, 4, 128)
    """

    def __init__(self, num_units: int, width: int, strides: int = 1, preact: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.num_units = num_units
        self.width = width
        self.strides = strides
        self.preact = preact

    def build(self, input_shape):
        policy = self.dtype_policy
        if self.preact:
            self.units = [
                PreActBottleneck(
                    4 * self.width,
                    self.width,
                    self.strides if i == 0 else 1,
                    project=i == 0,
                    name=f"unit{i + 1:02d}",
                    dtype=policy,
                )
                for i in range(self.num_units)
            ]
        else:
            self.units = [
                ResidualUnit(
                    self.width, self.strides if i == 0 else 1, name=f"unit{i + 1}", dtype=policy
                )
                for i in range(self.num_units)
            ]
        self._build_chain(self.units, input_shape)

    def call(self, inputs):
        x = inputs
        for unit in self.units:
            x = unit(x)
        return x

    def compute_output_shape(self, input_shape):
        shape = input_shape
        for unit in self.units:
            shape = unit.compute_output_shape(shape)
        return shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_units": self.num_units,
            "width": self.width,
            "strides": self.strides,
            "preact": self.preact,
        }


@keras.saving.register_keras_serializable(package="keras_vit")
class BiTRootBlock(_Composite):
    """BiT's root: 7x7/2 StdConv (``root_block/standardized_conv2d``), then a
    zero pad of 1 and a 3x3/2 max-pool, as BiT (and timm's ``stem_type='fixed'``).

    Args:
        filters: output channels.
        **kwargs: standard layer arguments; named ``root_block``.
    """

    def __init__(self, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters

    def build(self, input_shape):
        self.standardized_conv2d = std_conv(
            self.filters, 7, 2, 3, BIT_NUMERICS, "standardized_conv2d", self.dtype_policy
        )
        self.standardized_conv2d.build(input_shape)

    def call(self, inputs):
        x = self.standardized_conv2d(inputs)
        x = ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        return ops.max_pool(x, 3, 2, padding="valid")

    def compute_output_shape(self, input_shape):
        shape = self.standardized_conv2d.compute_output_shape(input_shape)
        size = [None if n is None else (n + 2 - 3) // 2 + 1 for n in shape[1:3]]
        return (shape[0], *size, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}
