"""BiT ResNet-v2's pre-activation units and root, under the BiT checkpoint scopes.

Scopes: ``root_block/standardized_conv2d``, ``block1/unit01/a/group_norm``,
``a/standardized_conv2d``, ``a/proj/standardized_conv2d``. Each layer takes
``numerics``: ``"official"`` (BiT's own code) or ``"timm"`` (``resnetv2_*_bit``), see
``keras_vit.layers.std_conv.NUMERICS``; the default is timm's, the numerics of
files saved before this was a choice. A BiT stage is a ``ResNetStage`` of
``PreActBottleneck`` units.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_vit.layers.stage import build_in_order
from keras_vit.layers.std_conv import group_norm, numerics_of, std_conv

LEGACY_NUMERICS = "timm"  # what BiT layers computed before numerics were a choice


@keras.saving.register_keras_serializable(package="keras_vit")
class PreActConv(keras.layers.Layer):
    """One third of a BiT unit: GroupNorm → ReLU → StdConv (scopes ``group_norm``,
    ``standardized_conv2d``; with ``projection_filters``, also ``proj``: the
    shortcut convolution of the pre-activated input).

    Args:
        filters: convolution output channels.
        kernel_size: 1 or 3.
        strides: convolution stride.
        projection_filters: channels of the shortcut projection, or None.
        projection_strides: stride of the shortcut projection.
        numerics: ``"official"`` or ``"timm"``.
        **kwargs: standard layer arguments.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int = 1,
        strides: int = 1,
        projection_filters: int | None = None,
        projection_strides: int = 1,
        numerics: str = LEGACY_NUMERICS,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.projection_filters = projection_filters
        self.projection_strides = projection_strides
        self.numerics = numerics
        numerics_of("bit", numerics)  # refuses an unknown source now, not at build

    def build(self, input_shape):
        numerics = numerics_of("bit", self.numerics)
        self.group_norm = group_norm("group_norm", numerics["gn_eps"], self.dtype_policy)
        self.group_norm.build(input_shape)
        self.standardized_conv2d = std_conv(
            self.filters,
            self.kernel_size,
            self.strides,
            self.kernel_size // 2,
            numerics,
            "standardized_conv2d",
            self.dtype_policy,
        )
        self.standardized_conv2d.build(input_shape)
        self.proj = None
        if self.projection_filters:
            self.proj = _Projection(
                self.projection_filters,
                self.projection_strides,
                numerics=self.numerics,
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
            "numerics": self.numerics,
        }


@keras.saving.register_keras_serializable(package="keras_vit")
class _Projection(keras.layers.Layer):
    """The BiT shortcut projection, scoped ``proj/standardized_conv2d``."""

    def __init__(self, filters: int, strides: int = 1, numerics: str = LEGACY_NUMERICS, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides
        self.numerics = numerics

    def build(self, input_shape):
        numerics = numerics_of("bit", self.numerics)
        self.standardized_conv2d = std_conv(
            self.filters, 1, self.strides, 0, numerics, "standardized_conv2d", self.dtype_policy
        )
        self.standardized_conv2d.build(input_shape)

    def call(self, inputs):
        return self.standardized_conv2d(inputs)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "strides": self.strides,
            "numerics": self.numerics,
        }


@keras.saving.register_keras_serializable(package="keras_vit")
class PreActBottleneck(keras.layers.Layer):
    """BiT's pre-activation bottleneck unit (``a``, ``b``, ``c``), stride on the 3x3.

    Args:
        filters: output channels (4x the bottleneck width in BiT).
        mid_filters: bottleneck width.
        strides: stride of the 3x3 convolution and of the projection.
        project: whether the shortcut is projected (first unit of a stage).
        numerics: ``"official"`` or ``"timm"``.
        **kwargs: standard layer arguments; named ``unit01``, ``unit02``, ...
    """

    def __init__(
        self,
        filters: int,
        mid_filters: int,
        strides: int = 1,
        project: bool = False,
        numerics: str = LEGACY_NUMERICS,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = filters
        self.mid_filters = mid_filters
        self.strides = strides
        self.project = project
        self.numerics = numerics

    @classmethod
    def for_stage(cls, index: int, width: int, strides: int, **kwargs) -> PreActBottleneck:
        """Unit ``index`` (from 0) of a BiT stage: ``unit01``, ``unit02``, ...

        Args:
            index: the unit's position in the stage; the first strides and projects.
            width: the bottleneck width; the unit outputs ``4 * width`` channels.
            strides: the stage's stride.
            **kwargs: ``numerics`` and standard layer arguments (``dtype``).

        Returns:
            The unit.
        """
        first = index == 0
        return cls(
            4 * width,
            width,
            strides if first else 1,
            project=first,
            name=f"unit{index + 1:02d}",
            **kwargs,
        )

    def build(self, input_shape):
        common = dict(numerics=self.numerics, dtype=self.dtype_policy)
        self.a = PreActConv(
            self.mid_filters,
            1,
            1,
            self.filters if self.project else None,
            self.strides,
            name="a",
            **common,
        )
        self.b = PreActConv(self.mid_filters, 3, self.strides, name="b", **common)
        self.c = PreActConv(self.filters, 1, 1, name="c", **common)
        build_in_order((self.a, self.b, self.c), input_shape)

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
            "numerics": self.numerics,
        }


@keras.saving.register_keras_serializable(package="keras_vit")
class BiTRootBlock(keras.layers.Layer):
    """BiT's root: 7x7/2 StdConv (``root_block/standardized_conv2d``), then a
    zero pad of 1 and a 3x3/2 max-pool, as BiT (and timm's ``stem_type='fixed'``).

    Args:
        filters: output channels.
        numerics: ``"official"`` or ``"timm"``.
        **kwargs: standard layer arguments; named ``root_block``.

    Example:
        >>> import numpy as np
        >>> root = BiTRootBlock(32, numerics="official", name="root_block")
        >>> tuple(root(np.zeros((1, 32, 32, 3), "float32")).shape)
        (1, 8, 8, 32)
    """

    def __init__(self, filters: int, numerics: str = LEGACY_NUMERICS, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.numerics = numerics
        numerics_of("bit", numerics)  # refuses an unknown source now, not at build

    def build(self, input_shape):
        numerics = numerics_of("bit", self.numerics)
        self.standardized_conv2d = std_conv(
            self.filters, 7, 2, 3, numerics, "standardized_conv2d", self.dtype_policy
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
        return {**super().get_config(), "filters": self.filters, "numerics": self.numerics}
