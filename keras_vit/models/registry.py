"""Named constructors generated from the variant tables, ``create_model``, and the
model of a training recipe (``create_recipe_model``).

Example:
    >>> from keras_vit.models import create_model
    >>> model = create_model("ViT-Mu/16", image_size=32, num_classes=10)
    >>> model.output_shape
    (None, 10)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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


def create_recipe_model(
    name: str,
    num_classes: int,
    image_size: int,
    model_args: Mapping[str, Any] | None = None,
    pre_logits: bool = False,
    init: str | None = None,
    reset_head: bool = False,
) -> keras.Model:
    """The model that a training recipe describes, from scratch or from a checkpoint.

    Args:
        name: the variant name, as for ``create_model``.
        num_classes: classes of the new head.
        image_size: input resolution (a checkpoint's position embeddings are resampled).
        model_args: other constructor arguments (dropout, heads); BiT models take none.
        pre_logits: a Dense+tanh layer of the hidden size before the head (the
            paper's pre-training); ignored by BiT models, which have none.
        init: checkpoint to start from (file or named checkpoint), or None.
        reset_head: with ``init``, zero the head (a fresh start for fine-tuning).

    Returns:
        The model.

    Raises:
        ValueError: for an unknown variant, or ``model_args`` given to a BiT model.

    Example:
        >>> from keras_vit.models.registry import create_recipe_model
        >>> model = create_recipe_model("ViT-Mu/8", 5, 16, pre_logits=True)
        >>> model.get_layer("pre_logits").units, model.output_shape
        (64, (None, 5))
    """
    family, _, config = parse_model_name(name)
    args = dict(model_args or {})
    if family == "bit" and args:
        raise ValueError(f"{name} takes no {', '.join(args)} (BiT models have no dropout)")
    if family != "bit":
        args.setdefault("representation_size", config["hidden_size"] if pre_logits else None)
    model = create_model(name, weights=init, image_size=image_size, num_classes=num_classes, **args)
    if init and reset_head:
        for variable in model.get_layer("head").weights:
            variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
    return model


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
