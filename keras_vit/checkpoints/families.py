"""The checkpoint families: how each is recognised and brought to canonical keys.

``FAMILIES`` is the one table: each row names a family (official ViT, official
hybrid, BiT, big_vision, timm ViT (DeiT, registers, LayerScale, ``fc_norm``
included), timm hybrid, timm BiT, Hugging Face ViT, and the ones keras_vit
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

from keras_vit.checkpoints.hf import canonical_hf_vit
from keras_vit.checkpoints.io import CheckpointError
from keras_vit.checkpoints.official import (
    big_vision_posemb,
    big_vision_scan,
    bit_layout,
    linen_numbering,
    squeeze_groupnorm,
)
from keras_vit.checkpoints.timm import canonical_timm_bit, canonical_timm_vit
from keras_vit.numerics import LAYER_NORM_EPSILON

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
        source: ``"official"`` (read by ``load_npz``), ``"timm"`` (``load_timm``)
            or ``"hf"`` (``load_hf``).
        split_heads: the fix-up that needs the head count, which the file does
            not record (timm's fused ``qkv``; Hugging Face's ``config.json``
            holds it): applied last, with the model's ``num_heads``.
        approximate_gelu: the GELU form it was trained with (None: no GELU;
            Hugging Face: from ``config.json``).
        posemb_method: the family's own position-embedding resampling.
        layer_norm_epsilon: its LayerNorms' epsilon (Hugging Face: from
            ``config.json``, 1e-12 by default; the others 1e-6).
        no_embed_class: whether the prefix tokens have no position embeddings
            (big_vision); None where the file tells (timm's ``no_embed_class``
            shows in the number of rows).
        refused: why keras_vit models cannot hold it, or None.
        resnet_numerics: the numerics of its ResNet (BiT, the hybrid's stem):
            ``"timm"`` for timm's files, else ``"official"``
            (``keras_vit.layers.std_conv.NUMERICS``).
    """

    name: str
    model: str
    marks: tuple[str, ...]
    fixups: tuple[Callable[[Params], Params], ...] = ()
    source: str = "official"
    split_heads: Callable[[Params, int], Params] | None = None
    approximate_gelu: bool | None = None
    posemb_method: str = "bilinear"
    layer_norm_epsilon: float = LAYER_NORM_EPSILON
    no_embed_class: bool | None = False
    refused: str | None = None
    resnet_numerics: str = "official"


# flax's default GELU: the tanh form. The released files embed the class token too (save_npz
# files of models built with no_embed_class=True need that override).
_OFFICIAL = dict(approximate_gelu=True)
_TIMM = dict(source="timm", posemb_method="bicubic", resnet_numerics="timm")
# timm: exact (erf) GELU; whether the prefix tokens have position embeddings shows in pos_embed.
_TIMM_VIT = dict(_TIMM, split_heads=canonical_timm_vit, approximate_gelu=False, no_embed_class=None)
# transformers' ViTConfig defaults (config.json overrides them): hidden_act="gelu" (erf), eps 1e-12.
_HF = dict(source="hf", split_heads=canonical_hf_vit, posemb_method="bicubic")
_HF.update(approximate_gelu=False, layer_norm_epsilon=1e-12)
# big_vision adds position embeddings to the patches only, before any class token.
_BIG_VISION = dict(_OFFICIAL, no_embed_class=True)
_ATTN_POOL = "keras_vit reads big_vision's MAP head (MAPHead_0), not timm's attn_pool"
_NORM_PRE = "keras_vit models have no pre-encoder LayerNorm (timm's norm_pre, CLIP-style)"

# name, model family, marks (key prefixes), fix-ups, then the family's numerics.
# The first row with a matching key wins, so the more specific rows come first.
FAMILIES: tuple[Family, ...] = (
    Family("timm ViT with attention pool", "vit", ("attn_pool.",), refused=_ATTN_POOL, **_TIMM),
    Family("timm ViT with norm_pre", "vit", ("norm_pre.",), refused=_NORM_PRE, **_TIMM),
    Family("timm BiT", "bit", ("stem.", "stages."), (canonical_timm_bit,), **_TIMM),
    Family("timm hybrid ViT", "hybrid", ("patch_embed.backbone.",), **_TIMM_VIT),
    Family("timm ViT", "vit", ("blocks.", "patch_embed."), **_TIMM_VIT),
    Family("Hugging Face ViT", "vit", ("vit.embeddings.", "embeddings.patch_embeddings."), **_HF),
    Family("BiT", "bit", ("resnet/",), (bit_layout,)),
    Family(
        "big_vision ViT",
        "vit",
        ("pos_embedding", "Transformer/encoderblock/", "MAPHead_0/"),
        (big_vision_scan, big_vision_posemb, linen_numbering),
        **_BIG_VISION,
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
        "unrecognised checkpoint: none of the keys of an official, big_vision, timm or "
        f"Hugging Face ViT, hybrid or BiT checkpoint (first keys: {sorted(keys)[:5]})"
    )


def canonicalise(family: Family, params: Params, num_heads: int | None = None) -> Params:
    """Applies the family's fix-ups; returns the parameters by canonical key.

    Args:
        family: the checkpoint's family (``detect_family``).
        params: the checkpoint's arrays, as read.
        num_heads: the model's heads; needed for families with ``split_heads``.

    Returns:
        The parameters by canonical key.

    Raises:
        CheckpointError: for a refused family, or a missing ``num_heads``.
    """
    if family.refused is not None:
        raise CheckpointError(f"cannot load a {family.name} checkpoint: {family.refused}")
    for fixup in family.fixups:
        params = fixup(params)
    if family.split_heads is not None:
        if num_heads is None:
            raise CheckpointError(
                f"{family.source} checkpoints do not record the number of heads: pass num_heads="
            )
        params = family.split_heads(params, num_heads)
    return params
