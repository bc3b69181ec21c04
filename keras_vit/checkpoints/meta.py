"""Numerics metadata of ``save_npz`` files whose model computes otherwise than the official one.

The official layout implies the official numerics (tanh GELU, LayerNorm epsilon
1e-6, embedded class token, the official ResNet standardisation). A model loaded
from timm or Hugging Face computes otherwise; ``save_npz`` then adds one key,
``META_KEY``, holding JSON as a ``uint8`` array (readable with
``allow_pickle=False``), and the loader applies it to the file's family before
anything else reads the keys. Files of official-numerics models get no such key.

Example:
    >>> import numpy as np
    >>> from keras_vit.checkpoints.families import detect_family
    >>> raw = {"embedding/kernel": np.zeros(1), META_KEY: encode({"approximate_gelu": False})}
    >>> family, params = apply_metadata(detect_family(raw), raw)
    >>> family.approximate_gelu, sorted(params)
    (False, ['embedding/kernel'])
"""

from __future__ import annotations

import dataclasses
import json
import logging

import keras
import numpy as np

from keras_vit.checkpoints.families import Family, Params
from keras_vit.checkpoints.io import CheckpointError
from keras_vit.numerics import LAYER_NORM_EPSILON

logger = logging.getLogger("keras_vit")

META_KEY = "keras_vit/numerics"
# The official layout's numerics; only the fields that differ from these are written.
_OFFICIAL = dict(
    approximate_gelu=True,
    layer_norm_epsilon=LAYER_NORM_EPSILON,
    no_embed_class=False,
    resnet_numerics="official",
)


def encode(meta: dict) -> np.ndarray:
    """JSON as a ``uint8`` array (an ``.npz`` entry that needs no pickle)."""
    return np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)


def model_numerics(model: keras.Model) -> dict:
    """The numerics of a keras_vit model that differ from the official layout's.

    Args:
        model: a keras_vit ViT, hybrid or BiT model.

    Returns:
        The ``Family`` fields to record (empty for official numerics).
    """
    numerics = {}
    layers = model._flatten_layers(include_self=False, recursive=True)  # no public walk
    resnet = {layer.numerics for layer in layers if hasattr(layer, "numerics")}
    if resnet:
        numerics["resnet_numerics"] = resnet.pop()
    if any(layer.name == "Transformer" for layer in model.layers):
        config = model.get_layer("Transformer").get_config()
        numerics["approximate_gelu"] = config["approximate_gelu"]
        numerics["layer_norm_epsilon"] = config["layer_norm_epsilon"]
        learned = config["position_embedding"] == "learn"
        numerics["no_embed_class"] = learned and config["unembedded_tokens"] > 0
    return {key: value for key, value in numerics.items() if value != _OFFICIAL[key]}


def apply_metadata(family: Family, raw: Params) -> tuple[Family, Params]:
    """Applies (and strips) a file's numerics metadata.

    Args:
        family: the file's family, as its keys tell.
        raw: the file's arrays.

    Returns:
        ``(family with the recorded numerics, the arrays without META_KEY)``;
        unchanged when there is no metadata.

    Raises:
        CheckpointError: for metadata that is not JSON naming known numerics.
    """
    if META_KEY not in raw:
        return family, raw
    raw = dict(raw)
    array = raw.pop(META_KEY)
    try:
        meta = json.loads(np.asarray(array, dtype=np.uint8).tobytes().decode())
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"unreadable {META_KEY!r} entry: {error}") from None
    if not isinstance(meta, dict) or not meta.keys() <= _OFFICIAL.keys():
        raise CheckpointError(f"{META_KEY!r} names unknown numerics: {meta!r}")
    return dataclasses.replace(family, **meta), raw


def warn_numerics(family: Family, config: dict | None, source: str) -> None:
    """Warns when a model's GELU form or LayerNorm epsilon is not its checkpoint's.

    Args:
        family: the checkpoint's family (with its numerics).
        config: the model's ``Transformer`` config; None for BiT (nothing to compare).
        source: the file name, for messages.
    """
    if config is None:
        return
    if config["approximate_gelu"] != family.approximate_gelu:
        form = "tanh (approximate_gelu=True)" if family.approximate_gelu else "erf (False)"
        logger.warning("%s was trained with the %s GELU; the model uses the other", source, form)
    if config["layer_norm_epsilon"] != family.layer_norm_epsilon:
        logger.warning(
            "%s was trained with LayerNorm epsilon %g; the model uses %g",
            *(source, family.layer_norm_epsilon, config["layer_norm_epsilon"]),
        )
