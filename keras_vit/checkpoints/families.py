"""The checkpoint families: how each is recognised and brought to canonical keys.

``FAMILIES`` is the one table: each row names a family (official ViT, official
hybrid, BiT, big_vision, timm ViT, timm hybrid, timm BiT, and the ones keras_vit
refuses), the key prefixes that recognise it, the named fix-ups that bring its
keys to the canonical names (the model's scopes), the model family it fits and
its numerics. ``detect_family`` picks the row; ``canonicalise`` applies it.

Example:
    >>> import numpy as np
    >>> detect_family({"resnet/root_block/standardized_conv2d/kernel": np.zeros(1)}).name
    'BiT'
    >>> detect_family({"blocks.0.attn.qkv.weight": np.zeros(1)}).model
    'vit'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from keras_vit.checkpoints.io import CheckpointError
from keras_vit.checkpoints.official import (
    big_vision_posemb,
    big_vision_scan,
    bit_layout,
    linen_numbering,
    squeeze_groupnorm,
)
from keras_vit.checkpoints.timm import canonical_timm_bit, canonical_timm_vit

Params = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Family:
    """One kind of checkpoint file: how it is recognised and how it is read.

    Attributes:
        name: the family's name, for messages.
        model: the model family it fits: ``"vit"``, ``"hybrid"`` or ``"bit"``.
        marks: the family is recognised by a key starting with one of these.
        fixups: named fix-ups, applied in order; each leaves alone the keys
            it does not concern.
        source: ``"official"`` (read by ``load_npz``) or ``"timm"`` (``load_timm``).
        fused_qkv: the file stores q, k, v fused and so not the head count
            (timm); they are split with the model's ``num_heads``.
        approximate_gelu: the GELU form it was trained with (None: no GELU).
        posemb_method: the family's own position-embedding resampling.
        refused: why keras_vit models cannot hold it, or None.
    """

    name: str
    model: str
    marks: tuple[str, ...]
    fixups: tuple[Callable[[Params], Params], ...] = ()
    source: str = "official"
    fused_qkv: bool = False
    approximate_gelu: bool | None = None
    posemb_method: str = "bilinear"
    refused: str | None = None


_OFFICIAL = dict(approximate_gelu=True)  # flax's default GELU: the tanh form
_TIMM = dict(source="timm", posemb_method="bicubic")
_TIMM_VIT = dict(_TIMM, fused_qkv=True, approximate_gelu=False)  # timm: exact (erf) GELU
_BIG_VISION = (big_vision_scan, big_vision_posemb, linen_numbering)
_FC_NORM = "keras_vit models have no fc_norm (timm's global_pool='avg' pools before the final norm)"
_DISTILLED = "keras_vit models have no distillation token (dist_token, head_dist)"
_MAP_HEAD = "keras_vit models have no MAP head (MAPHead_0/...)"

# name, model family, marks (key prefixes), fix-ups, then the family's numerics.
# The first row with a matching key wins, so the more specific rows come first.
FAMILIES: tuple[Family, ...] = (
    Family("timm ViT with fc_norm", "vit", ("fc_norm.",), refused=_FC_NORM, **_TIMM_VIT),
    Family("timm DeiT distilled", "vit", ("dist_token",), refused=_DISTILLED, **_TIMM_VIT),
    Family("timm BiT", "bit", ("stem.", "stages."), (canonical_timm_bit,), **_TIMM),
    Family("timm hybrid ViT", "hybrid", ("patch_embed.backbone.",), **_TIMM_VIT),
    Family("timm ViT", "vit", ("blocks.", "patch_embed."), **_TIMM_VIT),
    Family("BiT", "bit", ("resnet/",), (bit_layout,)),
    Family("big_vision ViT with MAP head", "vit", ("MAPHead_0/",), refused=_MAP_HEAD, **_OFFICIAL),
    Family(
        "big_vision ViT",
        "vit",
        ("pos_embedding", "Transformer/encoderblock/"),
        _BIG_VISION,
        **_OFFICIAL,
    ),
    Family(
        "official hybrid",
        "hybrid",
        ("conv_root/",),
        (linen_numbering, squeeze_groupnorm),
        **_OFFICIAL,
    ),
    Family("official ViT", "vit", ("Transformer/", "embedding/"), (linen_numbering,), **_OFFICIAL),
)


def detect_family(keys) -> Family:
    """The family of a checkpoint, from its keys: the first row of ``FAMILIES`` that matches.

    Args:
        keys: the checkpoint's keys (or the checkpoint itself).

    Returns:
        The ``Family`` row.

    Raises:
        CheckpointError: when no family matches.
    """
    keys = list(keys)
    for family in FAMILIES:
        if any(key.startswith(family.marks) for key in keys):
            return family
    raise CheckpointError(
        "unrecognised checkpoint: none of the keys of an official ViT, hybrid or BiT "
        f"checkpoint or of a timm state dict (first keys: {sorted(keys)[:5]})"
    )


def canonicalise(family: Family, params: Params, num_heads: int | None = None) -> Params:
    """Applies the family's fix-ups; returns the parameters by canonical key.

    Args:
        family: the checkpoint's family (``detect_family``).
        params: the checkpoint's arrays, as read.
        num_heads: the model's heads; needed for families with ``fused_qkv``.

    Returns:
        The parameters by canonical key.

    Raises:
        CheckpointError: for a refused family, or a missing ``num_heads``.
    """
    if family.refused is not None:
        raise CheckpointError(f"cannot load a {family.name} checkpoint: {family.refused}")
    for fixup in family.fixups:
        params = fixup(params)
    if family.fused_qkv:
        if num_heads is None:
            raise CheckpointError(
                "timm checkpoints do not record the number of heads: pass num_heads="
            )
        params = canonical_timm_vit(params, num_heads)
    return params
