"""Named constructors generated from the variant tables, and ``create_model``.

Example:
    >>> from keras_vit.models import create_model
    >>> model = create_model("ViT-Mu/16", image_size=32, num_classes=10)
    >>> model.output_shape
    (None, 10)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from keras_vit.models.bit import ResNetV2
from keras_vit.models.vit import ViT
from keras_vit.models.weights import NAMED_WEIGHTS
from keras_vit.variants import ALL_VARIANTS, BIT_VARIANTS, display_name, parse_model_name


def create_model(name: str, weights: str | None = None, **kwargs: Any) -> keras.Model:
    """Builds a model from its variant name.

    Args:
        name: ``"ViT-B/16"``, ``"R50+ViT-B/16"``, ``"BiT-R50x1"`` (see
            ``keras_vit.variants``).
        weights: None, a checkpoint file, or a named official checkpoint of the
            variant; a named checkpoint sets the defaults of ``image_size``,
            ``num_classes`` (and ``representation_size``) to the ones it was
            saved with; any of them may still be overridden (fine-tuning).
        **kwargs: any other argument of ``keras_vit.models.ViT`` or
            ``keras_vit.models.ResNetV2``.

    Returns:
        The model.

    Raises:
        ValueError: for an unknown variant name or named checkpoint.
    """
    family, variant, config = parse_model_name(name)
    named = NAMED_WEIGHTS.get(variant, {}).get(weights) if isinstance(weights, str) else None
    if named is not None:
        config.update(image_size=named.image_size, num_classes=named.num_classes)
        if family != "bit":
            config["representation_size"] = named.representation_size
    slug = "".join(c for c in variant.lower() if c.isalnum() or c == "x")
    config.setdefault("name", f"{family}_{slug}")
    config.update(kwargs)
    if family == "bit":
        return ResNetV2(weights=weights, variant=variant, **config)
    return ViT(weights=weights, **config)


def constructor_name(variant: str) -> str:
    """``"B/16"`` -> ``ViT_B16``, ``"R50+B/16"`` -> ``R50_ViT_B16``, ``"R50x1"`` -> ``BiT_R50x1``."""
    if variant in BIT_VARIANTS:
        return f"BiT_{variant}"
    resnet, _, vit = variant.rpartition("+")
    return (f"{resnet}_" if resnet else "") + "ViT_" + vit.replace("/", "")


def _constructor(variant: str) -> Callable[..., keras.Model]:
    display = display_name(variant)

    def constructor(weights: str | None = None, **kwargs: Any) -> keras.Model:
        return create_model(display, weights=weights, **kwargs)

    constructor.__name__ = constructor.__qualname__ = constructor_name(variant)
    names = ", ".join(f'"{w}"' for w in sorted(NAMED_WEIGHTS.get(variant, {}))) or "none"
    builder = "ResNetV2" if variant in BIT_VARIANTS else "ViT"
    constructor.__doc__ = (
        f'{display}: `create_model("{display}", weights, **kwargs)`.\n\n'
        f"Named checkpoints: {names}. See `keras_vit.models.{builder}` for the arguments.\n"
    )
    return constructor


VARIANT_CONSTRUCTORS = {constructor_name(v): _constructor(v) for v in ALL_VARIANTS}
