"""BiT ResNet-v2 (Kolesnikov et al., 2019): GroupNorm and weight-standardized convs.

Layer names follow the BiT checkpoints (``root_block``, ``block{i}/unit{jj}``,
``group_norm``, ``head``), so BiT ``.npz`` files and timm ``resnetv2_*_bit``
state dicts load with a short map.

Example:
    >>> import numpy as np
    >>> from keras_vit.models import ResNetV2
    >>> model = ResNetV2(layers=(1, 1), width=0.5, image_size=32, num_classes=10)
    >>> model.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0).shape
    (1, 10)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras

from keras_vit.checkpoints import load_weights_file
from keras_vit.layers.bit import BiTRootBlock, PreActBottleneck
from keras_vit.layers.stage import ResNetStage
from keras_vit.layers.std_conv import group_norm, numerics_of
from keras_vit.models.args import check_head, image_hw, resolve_weights

POOLINGS = (None, "avg", "max")


def make_divisible(value: float, divisor: int = 8) -> int:
    """Channel counts for fractional widths, rounded as timm does."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def ResNetV2(
    layers: Sequence[int] = (3, 4, 6, 3),
    width: float = 1,
    image_size: int | Sequence[int] = 224,
    num_classes: int = 1000,
    include_top: bool = True,
    weights: str | os.PathLike | None = None,
    pooling: str | None = None,
    classifier_activation: str | None = None,
    name: str = "resnetv2",
    variant: str | None = None,
    numerics: str = "official",
) -> keras.Model:
    """Builds a BiT ResNet-v2.

    Args:
        layers: units per stage (R50: ``(3, 4, 6, 3)``).
        width: width multiplier; may be fractional (0.5 halves every channel count).
        image_size: input size, an int or ``(height, width)``.
        num_classes: size of the zero-initialised ``head``.
        include_top: whether to end with global average pooling and ``head``;
            without it the model returns the final (normalised, ReLU'd) feature map.
        weights: None, a checkpoint file (BiT ``.npz``, timm ``.npz``/``.safetensors``,
            ``.weights.h5``) or a named BiT checkpoint of the variant.
        pooling: with ``include_top=False``: ``"avg"`` or ``"max"``.
        classifier_activation: activation of the head; None returns logits.
        name: model name.
        variant: the variant name (``"R50x1"``) for named checkpoints; the
            ``BiT_*`` constructors set it.
        numerics: the weight standardization and GroupNorm epsilons of
            ``"official"`` BiT (``sqrt(var + 1e-10)``) or ``"timm"``'s port
            (``sqrt(var + 1e-8)``), see ``keras_vit.layers.std_conv.NUMERICS``.
            Loading a checkpoint (``weights=``, ``load_npz``, ``load_timm``) sets
            the numerics of the checkpoint's source.

    Returns:
        A ``keras.Model`` on float images in [-1, 1]; ``model.get_layer("pre_logits")``
        is the pooled feature vector when ``include_top`` is True.
    """
    height, width_px = image_hw(image_size)
    if not layers or not all(isinstance(n, int) and n > 0 for n in layers):
        raise ValueError(f"layers must be a non-empty sequence of positive ints; got {layers!r}.")
    if not width or width <= 0:
        raise ValueError(f"width must be positive; got {width!r}.")
    check_head(include_top, num_classes, pooling, POOLINGS)
    gn_eps = numerics_of("bit", numerics)["gn_eps"]
    weights_path = resolve_weights(weights, variant)

    images = keras.Input(shape=(height, width_px, 3), name="images")
    x = BiTRootBlock(make_divisible(64 * width), numerics=numerics, name="root_block")(images)
    for i, units in enumerate(layers):
        mid = make_divisible(make_divisible(256 * 2**i * width) / 4)
        stride = 1 if i == 0 else 2
        x = ResNetStage(
            units, mid, stride, unit=PreActBottleneck, numerics=numerics, name=f"block{i + 1}"
        )(x)
    x = group_norm("group_norm", gn_eps)(x)
    x = keras.layers.ReLU(name="group_norm_relu")(x)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="pre_logits")(x)
        x = keras.layers.Dense(
            num_classes, kernel_initializer="zeros", activation=classifier_activation, name="head"
        )(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="pool")(x)
    model = keras.Model(images, x, name=name)
    if weights_path is not None:
        load_weights_file(model, weights_path)
    return model
