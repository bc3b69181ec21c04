"""Named constructors generated from the variant table, and ``create_model``.

Example:
    >>> from keras_vit.models import create_model
    >>> model = create_model("ViT-Mu/16", image_size=32, num_classes=10)
    >>> model.output_shape
    (None, 10)
"""

from __future__ import annotations

from typing import Any, Callable

import keras

from keras_vit.models.vit import ViT
from keras_vit.models.weights import VIT_WEIGHTS
from keras_vit.variants import VIT_VARIANTS, canonical_vit_name, parse_vit_name


def create_model(name: str, weights: str | None = None, **kwargs: Any) -> keras.Model:
    """Builds a model from its variant name.

    Args:
        name: a variant name such as ``"ViT-B/16"`` or ``"B/16"``.
        weights: None, a checkpoint file, or a named official checkpoint of the
            variant; a named checkpoint sets the defaults of ``image_size``,
            ``num_classes`` and ``representation_size`` to the ones it was saved
            with (any of them may still be overridden: fine-tuning).
        **kwargs: any other argument of ``keras_vit.models.ViT``.

    Returns:
        The model.

    Raises:
        ValueError: for an unknown variant name or named checkpoint.
    """
    variant = canonical_vit_name(name)
    config: dict[str, Any] = parse_vit_name(variant)
    named = VIT_WEIGHTS.get(variant, {}).get(weights) if isinstance(weights, str) else None
    if named is not None:
        config.update(
            image_size=named.image_size,
            num_classes=named.num_classes,
            representation_size=named.representation_size,
        )
    config.setdefault("name", "vit_" + variant.replace("/", "").lower())
    config.update(kwargs)
    return ViT(weights=weights, **config)


def _constructor(variant: str) -> Callable[..., keras.Model]:
    def constructor(weights: str | None = None, **kwargs: Any) -> keras.Model:
        return create_model(variant, weights=weights, **kwargs)

    function_name = "ViT_" + variant.replace("/", "")
    constructor.__name__ = constructor.__qualname__ = function_name
    names = ", ".join(f'"{w}"' for w in sorted(VIT_WEIGHTS.get(variant, {}))) or "none"
    constructor.__doc__ = (
        f"ViT-{variant}: `create_model(\"ViT-{variant}\", weights, **kwargs)`.\n\n"
        f"Named checkpoints: {names}. See `keras_vit.models.ViT` for the arguments.\n"
    )
    return constructor


VARIANT_CONSTRUCTORS = {_constructor(v).__name__: _constructor(v) for v in VIT_VARIANTS}
