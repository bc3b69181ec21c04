"""Keys of the official JAX checkpoints, brought to one canonical naming.

The canonical names are the released vision_transformer files' own (pre-Linen
block numbering ``LayerNorm_0 / MultiHeadDotProductAttention_1 / LayerNorm_2 /
MlpBlock_3``), which are also this package's layer scopes. Named fix-ups bring
the other official layouts there; each takes and returns parameters by key and
leaves keys it does not concern alone (``keras_vit.checkpoints.loader`` says
which family gets which):

- ``linen_numbering``: Linen files number modules per type
  (``MultiHeadDotProductAttention_0``, ``LayerNorm_1``, ``MlpBlock_0``).
- ``big_vision_posemb``: big_vision stores ``pos_embedding`` at the top level.
- ``big_vision_scan``: big_vision's scanned encoder stacks every block's
  parameters along a leading axis under ``Transformer/encoderblock/``.
- ``squeeze_groupnorm``: old hybrid files store GroupNorm parameters as
  ``(1, 1, 1, C)`` (flax issue 1721).
- ``bit_layout``: BiT files nest everything under ``resnet/``, name GroupNorm
  parameters ``gamma``/``beta`` and store the head as a 1x1 convolution
  (``head/conv2d``). ``to_bit_layout`` is its inverse, for saving.

Example:
    >>> import numpy as np
    >>> sorted(linen_numbering({"Transformer/encoderblock_0/MlpBlock_0/Dense_0/bias": np.zeros(2)}))
    ['Transformer/encoderblock_0/MlpBlock_3/Dense_0/bias']
"""

from __future__ import annotations

import re

import numpy as np

Params = dict[str, np.ndarray]

_LINEN_TO_PRE_LINEN = {
    "MultiHeadDotProductAttention_0": "MultiHeadDotProductAttention_1",
    "LayerNorm_1": "LayerNorm_2",
    "MlpBlock_0": "MlpBlock_3",
}
_BLOCK_MODULE = re.compile(r"^(Transformer/encoderblock_\d+)/([A-Za-z]+_\d+)/")
_GROUPNORM = re.compile(r"(^|/)gn(\d+|_root|_proj)/(scale|bias)$")
_SCANNED = "Transformer/encoderblock/"


def big_vision_scan(params: Params) -> Params:
    """Unstacks a scanned encoder (``Transformer/encoderblock/...``) into numbered blocks.

    Args:
        params: checkpoint parameters by key.

    Returns:
        The parameters with one ``Transformer/encoderblock_{i}/`` entry per layer.
    """
    out = {}
    for key, value in params.items():
        if key.startswith(_SCANNED):
            for i, layer_value in enumerate(value):
                out[f"Transformer/encoderblock_{i}/{key[len(_SCANNED) :]}"] = layer_value
        else:
            out[key] = value
    return out


def big_vision_posemb(params: Params) -> Params:
    """Moves big_vision's top-level ``pos_embedding`` to ``Transformer/posembed_input``.

    Args:
        params: checkpoint parameters by key.

    Returns:
        The parameters, the position embeddings renamed.
    """
    return {
        ("Transformer/posembed_input/pos_embedding" if k == "pos_embedding" else k): v
        for k, v in params.items()
    }


def linen_numbering(params: Params) -> Params:
    """Renames Linen's per-type block numbering to the released files' numbering.

    Args:
        params: checkpoint parameters by key.

    Returns:
        The parameters with pre-Linen block module names.
    """

    def rename(key: str) -> str:
        match = _BLOCK_MODULE.match(key)
        if not match or match[2] not in _LINEN_TO_PRE_LINEN:
            return key
        return f"{match[1]}/{_LINEN_TO_PRE_LINEN[match[2]]}/{key[match.end() :]}"

    return {rename(k): v for k, v in params.items()}


def squeeze_groupnorm(params: Params) -> Params:
    """Reshapes ``(1, 1, 1, C)`` GroupNorm parameters of old hybrid files to ``(C,)``.

    Args:
        params: checkpoint parameters by key.

    Returns:
        The parameters with one-dimensional GroupNorm scales and biases.
    """
    return {k: (v.reshape(v.shape[-1:]) if _GROUPNORM.search(k) else v) for k, v in params.items()}


def bit_layout(params: Params) -> Params:
    """BiT's file layout (``resnet/``, ``gamma``/``beta``, 1x1-conv head) to canonical keys.

    Args:
        params: a BiT ``.npz`` file's parameters.

    Returns:
        The parameters by canonical key (the model's scopes).
    """
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


def to_bit_layout(params: Params) -> Params:
    """The inverse of ``bit_layout``: canonical BiT keys to BiT's own file layout.

    Args:
        params: a BiT model's parameters by canonical key.

    Returns:
        The parameters as BiT's ``.npz`` files store them.
    """
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
