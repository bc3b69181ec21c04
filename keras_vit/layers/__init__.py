"""Keras layers of keras_vit, named after the official checkpoint scopes."""

from keras_vit.layers.attention import MultiHeadDotProductAttention
from keras_vit.layers.bit import BiTRootBlock, PreActBottleneck, PreActConv
from keras_vit.layers.block import Encoder1DBlock
from keras_vit.layers.dense_general import DenseGeneral
from keras_vit.layers.embedding import PatchEmbedding, SinCos2DPositionEmbedding, sincos2d
from keras_vit.layers.encoder import (
    LAYER_NORM_EPSILON,
    AddPositionEmbs,
    Encoder,
)
from keras_vit.layers.hybrid import HybridRoot, ResidualUnit
from keras_vit.layers.map_head import MAPHead
from keras_vit.layers.mlp import LayerScale, MlpBlock, layer_norm
from keras_vit.layers.stage import ResNetStage
from keras_vit.layers.std_conv import StdConv2D, weight_standardize
from keras_vit.layers.tokens import ClassToken, TokenPooling

__all__ = [
    "LAYER_NORM_EPSILON",
    "AddPositionEmbs",
    "BiTRootBlock",
    "ClassToken",
    "DenseGeneral",
    "Encoder",
    "Encoder1DBlock",
    "HybridRoot",
    "LayerScale",
    "MAPHead",
    "MlpBlock",
    "MultiHeadDotProductAttention",
    "PatchEmbedding",
    "PreActBottleneck",
    "PreActConv",
    "ResNetStage",
    "ResidualUnit",
    "SinCos2DPositionEmbedding",
    "StdConv2D",
    "TokenPooling",
    "layer_norm",
    "sincos2d",
    "weight_standardize",
]
