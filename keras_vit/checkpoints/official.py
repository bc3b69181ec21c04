"""Keys of the official JAX checkpoints, brought to one canonical naming.

The canonical names are the released vision_transformer files' own (pre-Linen
block numbering ``LayerNorm_0 / MultiHeadDotProductAttention_1 / LayerNorm_2 /
MlpBlock_3``), which are also this package's layer scopes. Named fix-ups bring
the other official layouts there:

- ``linen_numbering``: Linen files number modules per type
  (``MultiHeadDotProductAttention_0``, ``LayerNorm_1``, ``MlpBlock_0``).
- ``big_vision_posemb``: big_vision stores ``pos_embedding`` at the top level.
- ``big_vision_scan``: big_vision's scanned encoder stacks every block's
  parameters along a leading axis under ``Transformer/encoderblock/``.
- ``squeeze_groupnorm``: old hybrid files store GroupNorm parameters as
  ``(1, 1, 1, C)`` (flax issue 1721).
- ``bit_layout``: BiT files nest everything under ``resnet/``, name GroupNorm
  parameters ``gamma``/``beta`` and store the head as a 1x1 convolution
  (``head/conv2d``).
"""

from __future__ import annotations

import re

import numpy as np

from keras_vit.checkpoints.io import CheckpointError

_LINEN_TO_PRE_LINEN = {
    "MultiHeadDotProductAttention_0": "MultiHeadDotProductAttention_1",
    "LayerNorm_1": "LayerNorm_2",
    "MlpBlock_0": "MlpBlock_3",
}
_BLOCK_MODULE = re.compile(r"^(Transformer/encoderblock_\d+)/([A-Za-z]+_\d+)/")
TIMM_PREFIXES = ("blocks.", "patch_embed.", "stem.", "stages.")
_GROUPNORM = re.compile(r"(^|/)gn(\d+|_root|_proj)/(scale|bias)$")


def detect_family(keys) -> str:
    """Names the family of a checkpoint from its keys.

    Returns one of ``"vit"``, ``"hybrid"``, ``"bit"``, ``"timm"``.
    """
    keys = set(keys)
    if any(k.startswith(TIMM_PREFIXES) for k in keys):
        return "timm"
    if any(k.startswith("resnet/") for k in keys):
        return "bit"
    if "conv_root/kernel" in keys:
        return "hybrid"
    if any(k.startswith(("Transformer/", "embedding/")) for k in keys):
        return "vit"
    raise CheckpointError(
        "unrecognised checkpoint: none of the keys of an official ViT, hybrid or BiT "
        f"checkpoint or of a timm state dict (first keys: {sorted(keys)[:5]})"
    )


def big_vision_scan(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    prefix = "Transformer/encoderblock/"
    out = {}
    for key, value in params.items():
        if key.startswith(prefix):
            for i, layer_value in enumerate(value):
                out[f"Transformer/encoderblock_{i}/{key[len(prefix) :]}"] = layer_value
        else:
            out[key] = value
    return out


def big_vision_posemb(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        ("Transformer/posembed_input/pos_embedding" if k == "pos_embedding" else k): v
        for k, v in params.items()
    }


def linen_numbering(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    def rename(key: str) -> str:
        match = _BLOCK_MODULE.match(key)
        if not match or match[2] not in _LINEN_TO_PRE_LINEN:
            return key
        return f"{match[1]}/{_LINEN_TO_PRE_LINEN[match[2]]}/{key[match.end() :]}"

    return {rename(k): v for k, v in params.items()}


def squeeze_groupnorm(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: (v.reshape(v.shape[-1:]) if _GROUPNORM.search(k) else v) for k, v in params.items()}


def bit_layout(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for key, value in params.items():
        key = key.removeprefix("resnet/")
        key = re.sub(r"group_norm/gamma$", "group_norm/scale", key)
        key = re.sub(r"group_norm/beta$", "group_norm/bias", key)
        if key == "head/conv2d/kernel":
            key, value = "head/kernel", value.reshape(value.shape[-2:])
        elif key == "head/conv2d/bias":
            key = "head/bias"
        out[key] = value
    return out


def to_bit_layout(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inverse of ``bit_layout``: canonical BiT keys to BiT's own file layout."""
    out = {}
    for key, value in params.items():
        key = re.sub(r"group_norm/scale$", "group_norm/gamma", key)
        key = re.sub(r"group_norm/bias$", "group_norm/beta", key)
        if key == "head/kernel":
            key, value = "head/conv2d/kernel", value.reshape((1, 1) + value.shape)
        elif key == "head/bias":
            key = "head/conv2d/bias"
        out["resnet/" + key] = value
    return out


def canonical_official(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Applies the fix-ups that the keys call for; returns canonical keys."""
    if any(k.startswith("resnet/") for k in params):
        return bit_layout(params)
    if any(k.startswith("MAPHead_0/") for k in params):
        raise CheckpointError(
            "checkpoint uses big_vision's MAP head (MAPHead_0/...), which keras_vit models do not have"
        )
    if any(k.startswith("Transformer/encoderblock/") for k in params):
        params = big_vision_scan(params)
    if "pos_embedding" in params:
        params = big_vision_posemb(params)
    if any(re.match(r"^Transformer/encoderblock_\d+/MlpBlock_0/", k) for k in params):
        params = linen_numbering(params)
    return squeeze_groupnorm(params)
