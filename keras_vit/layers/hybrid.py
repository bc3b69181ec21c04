"""The ViT hybrid's ResNet: post-activation units and root of vision_transformer.

The units follow ``vit_jax/models_resnet.py`` (scopes ``conv1``, ``gn1``, ...,
``conv_proj``, ``gn_proj``), the root its ``conv_root`` and ``gn_root``, "SAME"
padding as flax (and timm's ``StdConv2dSame``). Each layer takes ``numerics``:
``"official"`` (vision_transformer, the default) or ``"timm"`` (timm's hybrid ports), see
``keras_vit.layers.std_conv.NUMERICS``. A hybrid stage is a ``ResNetStage`` of
``ResidualUnit`` units.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_vit.layers.stage import build_in_order
from keras_vit.layers.std_conv import group_norm, numerics_of, std_conv


@keras.saving.register_keras_serializable(package="keras_vit")
class ResidualUnit(keras.layers.Layer):
    """The hybrid's bottleneck unit (vision_transformer ``models_resnet.py``):
    conv1 → gn1 → ReLU → conv2 (3x3, stride) → gn2 → ReLU → conv3 → gn3, plus the
    (projected) shortcut, then ReLU.

    Args:
        features: bottleneck width; the unit outputs ``4 * features`` channels.
        strides: stride of conv2 and of the projection.
        numerics: ``"official"`` or ``"timm"``.
        **kwargs: standard layer arguments; named ``unit1``, ``unit2``, ...
    """

    def __init__(self, features: int, strides: int = 1, numerics: str = "official", **kwargs):
        super().__init__(**kwargs)
        self.features = features
        self.strides = strides
        self.numerics = numerics
        numerics_of("hybrid", numerics)  # refuses an unknown source now, not at build

    @classmethod
    def for_stage(cls, index: int, width: int, strides: int, **kwargs) -> ResidualUnit:
        """Unit ``index`` (from 0) of a hybrid stage: ``unit1``, ``unit2``, ...

        Args:
            index: the unit's position in the stage; the first strides.
            width: the bottleneck width (``features``).
            strides: the stage's stride.
            **kwargs: ``numerics`` and standard layer arguments (``dtype``).

        Returns:
            The unit.
        """
        return cls(width, strides if index == 0 else 1, name=f"unit{index + 1}", **kwargs)

    def _conv(self, filters, size, strides, name):
        numerics = numerics_of("hybrid", self.numerics)
        return std_conv(filters, size, strides, "same", numerics, name, self.dtype_policy)

    def build(self, input_shape):
        eps = numerics_of("hybrid", self.numerics)["gn_eps"]
        policy, out = self.dtype_policy, 4 * self.features
        self.needs_projection = input_shape[-1] != out or self.strides != 1
        if self.needs_projection:
            self.conv_proj = self._conv(out, 1, self.strides, "conv_proj")
            self.gn_proj = group_norm("gn_proj", eps, policy)
            build_in_order((self.conv_proj, self.gn_proj), input_shape)
        self.conv1 = self._conv(self.features, 1, 1, "conv1")
        self.gn1 = group_norm("gn1", eps, policy)
        self.conv2 = self._conv(self.features, 3, self.strides, "conv2")
        self.gn2 = group_norm("gn2", eps, policy)
        self.conv3 = self._conv(out, 1, 1, "conv3")
        self.gn3 = group_norm("gn3", eps, policy, zero_init=True)
        build_in_order(
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
        return {
            **super().get_config(),
            "features": self.features,
            "strides": self.strides,
            "numerics": self.numerics,
        }


@keras.saving.register_keras_serializable(package="keras_vit")
class HybridRoot(keras.layers.Layer):
    """The hybrid's root: 7x7/2 StdConv ``conv_root`` → GroupNorm ``gn_root`` → ReLU →
    3x3/2 max-pool, all "SAME" (vision_transformer ``models_vit.py``).

    The official code has no scope around its root, so its checkpoint keys are
    ``conv_root/kernel`` and ``gn_root/scale``; here the weights are
    ``root/conv_root/kernel``, ..., and ``keras_vit.checkpoints`` drops the ``root/``.

    Args:
        filters: output channels (64 times the width multiplier).
        numerics: ``"official"`` or ``"timm"``.
        **kwargs: standard layer arguments; named ``root``.

    Example:
        >>> import numpy as np
        >>> root = HybridRoot(32, name="root")
        >>> tuple(root(np.zeros((1, 16, 16, 3), "float32")).shape)
        (1, 4, 4, 32)
    """

    def __init__(self, filters: int, numerics: str = "official", **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.numerics = numerics
        numerics_of("hybrid", numerics)  # refuses an unknown source now, not at build

    def build(self, input_shape):
        numerics = numerics_of("hybrid", self.numerics)
        self.conv_root = std_conv(
            self.filters, 7, 2, "same", numerics, "conv_root", self.dtype_policy
        )
        self.gn_root = group_norm("gn_root", numerics["gn_eps"], self.dtype_policy)
        build_in_order((self.conv_root, self.gn_root), input_shape)

    def call(self, inputs):
        x = ops.relu(self.gn_root(self.conv_root(inputs)))
        return ops.max_pool(x, 3, 2, padding="same")

    def compute_output_shape(self, input_shape):
        size = [None if n is None else -(-n // 4) for n in input_shape[1:3]]
        return (input_shape[0], *size, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "numerics": self.numerics}
