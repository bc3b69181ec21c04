"""The token layout and block options a ViT checkpoint's canonical keys describe.

What ``from_checkpoint`` reads beyond widths and depths: the prefix tokens
(``cls``, DeiT's ``dist``, registers ``reg``), the pooling (class token, mean
of the patch tokens with timm's ``fc_norm``, big_vision's ``MAPHead_0``), the
position embeddings (learned, and whether they cover the prefix tokens; or
big_vision's computed ``sincos2d`` when none is stored), LayerScale, query /
key / value biases and the family's LayerNorm epsilon.

Example:
    >>> import numpy as np
    >>> from keras_vit.checkpoints.families import detect_family
    >>> params = {"cls": np.zeros((1, 1, 8)), "reg": np.zeros((1, 4, 8)),
    ...           "Transformer/posembed_input/pos_embedding": np.zeros((1, 16, 8))}
    >>> layout = layout_arguments(params, detect_family(["blocks.0.attn.qkv.weight"]))
    >>> layout["num_register_tokens"], layout["no_embed_class"], layout["classifier"]
    (4, True, 'token')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from keras_vit.checkpoints.assign import POSEMB_KEY
from keras_vit.checkpoints.families import Family
from keras_vit.checkpoints.io import CheckpointError
from keras_vit.models.args import image_hw

_BLOCK_0 = "Transformer/encoderblock_0"
# The initial value of LayerScale for training from a LayerScale checkpoint (its
# own scales are loaded): DINOv2's init_values.
LAYER_SCALE_INIT = 1e-5


def _square(n: int) -> bool:
    return n > 0 and math.isqrt(n) ** 2 == n


def _no_embed_class(rows: int, prefix: int, family: Family, grid: tuple[int, int] | None) -> bool:
    """Whether the prefix tokens have no position embeddings, from the embeddings' rows."""
    if family.no_embed_class is not None or not prefix:
        return bool(family.no_embed_class) and prefix > 0
    if grid is not None and rows in (grid[0] * grid[1], grid[0] * grid[1] + prefix):
        return rows == grid[0] * grid[1]
    if _square(rows - prefix) and _square(rows):
        raise CheckpointError(
            f"the checkpoint's {rows} position embeddings form a square grid both with and "
            f"without its {prefix} prefix tokens: pass no_embed_class= (True: the prefix "
            "tokens have none) or image_size="
        )
    if _square(rows - prefix):
        return False  # timm's default: pos_embed has rows for the prefix tokens
    if _square(rows):
        return True
    raise CheckpointError(
        f"the checkpoint's {rows} position embeddings form no square grid with or without its "
        f"{prefix} prefix tokens: pass image_size= and no_embed_class="
    )


def _pooling(params: dict[str, np.ndarray]) -> dict[str, Any]:
    class_token = "cls" in params
    fc_norm = "fc_norm/scale" in params
    if "MAPHead_0/probe" in params:
        classifier = "map"
    elif class_token and not fc_norm:
        classifier = "token"
    else:
        classifier = "gap"  # timm's global_pool="avg" with fc_norm; official and big_vision gap
    return dict(classifier=classifier, class_token=class_token, fc_norm=fc_norm)


def layout_arguments(
    params: dict[str, np.ndarray],
    family: Family,
    image_size: int | Sequence[int] | None = None,
    effective_patch: int | None = None,
) -> dict[str, Any]:
    """The ``ViT`` layout arguments canonical parameters describe.

    Args:
        params: canonical checkpoint parameters.
        family: the checkpoint's family (epsilon; whether prefix tokens have
            position embeddings, where the family fixes it).
        image_size: the image size the caller gives, if any (tells the grid).
        effective_patch: pixels per patch (patch size times the hybrid stem's stride).

    Returns:
        ``classifier``, ``class_token``, ``fc_norm``, ``distilled``,
        ``num_register_tokens``, ``posemb``, ``no_embed_class``,
        ``layer_scale_init``, ``qkv_bias`` and ``layer_norm_epsilon``.

    Raises:
        CheckpointError: when the position embeddings' rows do not tell whether
            the prefix tokens have embeddings.
    """
    args = _pooling(params)
    args["distilled"] = "dist" in params
    args["num_register_tokens"] = int(params["reg"].shape[1]) if "reg" in params else 0
    prefix = int(args["class_token"]) + int(args["distilled"]) + args["num_register_tokens"]
    grid = None
    if image_size is not None and effective_patch:
        height, width = image_hw(image_size)
        grid = (height // effective_patch, width // effective_patch)
    if POSEMB_KEY in params:
        rows = int(params[POSEMB_KEY].shape[1])
        args.update(posemb="learn", no_embed_class=_no_embed_class(rows, prefix, family, grid))
    else:
        args.update(posemb="sincos2d", no_embed_class=True)  # big_vision: computed, patches only
    has_scale = f"{_BLOCK_0}/ls1/scale" in params
    args["layer_scale_init"] = LAYER_SCALE_INIT if has_scale else None
    args["qkv_bias"] = f"{_BLOCK_0}/MultiHeadDotProductAttention_1/query/bias" in params
    args["layer_norm_epsilon"] = family.layer_norm_epsilon
    return args


def embedded_prefix(layout: dict[str, Any]) -> int:
    """How many rows of the learned position embeddings belong to prefix tokens.

    Args:
        layout: ``layout_arguments``'s result.

    Returns:
        The number of prefix tokens with position embeddings.
    """
    if layout["no_embed_class"]:
        return 0
    return int(layout["class_token"]) + int(layout["distilled"]) + layout["num_register_tokens"]
