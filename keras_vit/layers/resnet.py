"""Old import path of the ResNet layers, kept for existing imports.

The layers now live by family: ``keras_vit.layers.std_conv`` (weight
standardization, GroupNorm, the numerics of each source), ``keras_vit.layers.bit``
(BiT's pre-activation units and root), ``keras_vit.layers.hybrid`` (the ViT
hybrid's units and root) and ``keras_vit.layers.stage`` (``ResNetStage``).
"""

from keras_vit.layers.bit import BiTRootBlock, PreActBottleneck, PreActConv
from keras_vit.layers.hybrid import HybridRoot, ResidualUnit
from keras_vit.layers.stage import ResNetStage
from keras_vit.layers.std_conv import (
    GROUPS,
    NUMERICS,
    SOURCES,
    STD_FORMS,
    StdConv2D,
    group_norm,
    numerics_of,
    set_numerics,
    std_conv,
    weight_standardize,
)

__all__ = [
    "GROUPS",
    "NUMERICS",
    "SOURCES",
    "STD_FORMS",
    "BiTRootBlock",
    "HybridRoot",
    "PreActBottleneck",
    "PreActConv",
    "ResNetStage",
    "ResidualUnit",
    "StdConv2D",
    "group_norm",
    "numerics_of",
    "set_numerics",
    "std_conv",
    "weight_standardize",
]
