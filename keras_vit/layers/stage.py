"""A ResNet stage of either family: ``num_units`` residual units of one unit class.

The unit class (``keras_vit.layers.bit.PreActBottleneck`` or
``keras_vit.layers.hybrid.ResidualUnit``) names and configures its units
through its ``for_stage`` class method, so the stage knows no family.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras


def build_in_order(layers: Sequence[keras.layers.Layer], input_shape: tuple) -> tuple:
    """Builds ``layers`` one after the other, so their weights exist before the first call.

    Called from a composite layer's ``build``, this gives the sublayers' weights
    the nested checkpoint scopes (``unit1/conv1/kernel``).

    Args:
        layers: the sublayers, in the order they are applied.
        input_shape: the input shape of the first.

    Returns:
        The output shape of the last.
    """
    shape = input_shape
    for layer in layers:
        layer.build(shape)
        shape = layer.compute_output_shape(shape)
    return shape


def _unit_class(unit: str | type) -> type:
    name = unit if isinstance(unit, str) else keras.saving.get_registered_name(unit)
    cls = keras.saving.get_registered_object(name)
    if not hasattr(cls, "for_stage"):
        raise ValueError(
            "unit must be a residual unit class of keras_vit (or its registered name, "
            f"'keras_vit>PreActBottleneck' or 'keras_vit>ResidualUnit'); got {unit!r}."
        )
    return cls


@keras.saving.register_keras_serializable(package="keras_vit")
class ResNetStage(keras.layers.Layer):
    """A stage of residual units named ``unit1``, ... (hybrid) or ``unit01``, ... (BiT).

    Args:
        num_units: units in the stage.
        width: bottleneck width of each unit.
        strides: stride of the first unit.
        unit: the unit class, or its registered name (``"keras_vit>PreActBottleneck"``
            for BiT, ``"keras_vit>ResidualUnit"`` for the hybrid).
        numerics: ``"official"`` or ``"timm"`` (see ``keras_vit.layers.std_conv.NUMERICS``);
            None for the unit class's default (as in files saved before this argument).
        **kwargs: standard layer arguments; named ``block1``, ``block2``, ...

    Example:
        >>> import numpy as np
        >>> from keras_vit.layers import PreActBottleneck
        >>> stage = ResNetStage(2, width=32, strides=2, unit=PreActBottleneck, name="block2")
        >>> tuple(stage(np.zeros((1, 8, 8, 64), "float32")).shape)
        (1, 4, 4, 128)
    """

    def __init__(
        self,
        num_units: int,
        width: int,
        strides: int = 1,
        *,
        unit: str | type,
        numerics: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_units = num_units
        self.width = width
        self.strides = strides
        self.unit = keras.saving.get_registered_name(_unit_class(unit))
        self.numerics = numerics

    def build(self, input_shape):
        unit_class = _unit_class(self.unit)
        common = dict(dtype=self.dtype_policy)
        if self.numerics is not None:
            common["numerics"] = self.numerics
        self.units = [
            unit_class.for_stage(i, self.width, self.strides, **common)
            for i in range(self.num_units)
        ]
        build_in_order(self.units, input_shape)

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
            "unit": self.unit,
            "numerics": self.numerics,
        }

    @classmethod
    def from_config(cls, config: dict) -> ResNetStage:
        """Also reads the configs of ``.keras`` files saved before the families were split.

        Args:
            config: a ``get_config()`` dict; older files have ``preact`` (True for
                BiT units) in place of ``unit``.

        Returns:
            The stage.
        """
        config = dict(config)
        if "preact" in config:
            preact = config.pop("preact")
            config["unit"] = "keras_vit>PreActBottleneck" if preact else "keras_vit>ResidualUnit"
        return cls(**config)
