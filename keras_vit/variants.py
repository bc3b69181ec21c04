"""The one table of model variants, decoded from names such as ``"B/16"``.

Every public constructor (``ViT_B16``, ``R50_ViT_B16``, ``BiT_R50x1``,
``create_model("ViT-B/16")``, ...) is derived from the tables below, so a
variant exists in exactly one place.

Example:
    >>> from keras_vit.variants import parse_model_name
    >>> parse_model_name("ViT-B/16")
    ('vit', 'B/16', {'hidden_size': 768, 'num_layers': 12, 'mlp_dim': 3072, 'num_heads': 12, 'patch_size': 16})
    >>> parse_model_name("R50+ViT-B/16")[2]["resnet_layers"]
    (3, 4, 9)
"""

from __future__ import annotations

import os
import re
from typing import Any

# Transformer sizes of the paper (Table 1) plus the AugReg "Ti" and "S" and a
# tiny "Mu" variant for tests (the size of the reference fixtures).
VIT_SIZES: dict[str, dict[str, int]] = {
    "Mu": dict(hidden_size=64, num_layers=2, mlp_dim=128, num_heads=2),
    "Ti": dict(hidden_size=192, num_layers=12, mlp_dim=768, num_heads=3),
    "S": dict(hidden_size=384, num_layers=12, mlp_dim=1536, num_heads=6),
    "B": dict(hidden_size=768, num_layers=12, mlp_dim=3072, num_heads=12),
    "L": dict(hidden_size=1024, num_layers=24, mlp_dim=4096, num_heads=16),
    "H": dict(hidden_size=1280, num_layers=32, mlp_dim=5120, num_heads=16),
}

# The named ViT variants of the paper and of the AugReg release: name -> (size, patch).
VIT_VARIANTS: dict[str, tuple[str, int]] = {
    "Ti/16": ("Ti", 16),
    "S/16": ("S", 16),
    "S/32": ("S", 32),
    "B/8": ("B", 8),
    "B/16": ("B", 16),
    "B/32": ("B", 32),
    "L/16": ("L", 16),
    "L/32": ("L", 32),
    "H/14": ("H", 14),
}

# Hybrids of vision_transformer's configs: name -> (size, patch on the feature map,
# ResNet stages). "/16" is the effective patch: R50's stem with 3 stages downsamples
# 16x, so the Transformer takes 1x1 patches; R+Ti/16 is the root alone with 8x8 patches.
HYBRID_VARIANTS: dict[str, tuple[str, int, tuple[int, ...]]] = {
    "R+Ti/16": ("Ti", 8, ()),
    "R26+S/32": ("S", 1, (2, 2, 2, 2)),
    "R26+B/32": ("B", 1, (2, 2, 2, 2)),
    "R50+B/16": ("B", 1, (3, 4, 9)),
    "R50+L/32": ("L", 1, (3, 4, 6, 3)),
}

# BiT ResNet-v2: name -> (units per stage, width multiplier).
_BIT_DEPTHS = {"R50": (3, 4, 6, 3), "R101": (3, 4, 23, 3), "R152": (3, 8, 36, 3)}
BIT_VARIANTS: dict[str, tuple[tuple[int, ...], int]] = {
    f"{depth}x{width}": (_BIT_DEPTHS[depth], width)
    for depth, width in [("R50", 1), ("R50", 3), ("R101", 1), ("R101", 3), ("R152", 2), ("R152", 4)]
}

_VIT_NAME = re.compile(r"^(?:ViT-)?(?P<size>Mu|Ti|S|B|L|H)/(?P<patch>\d+)$")
_HYBRID_NAME = re.compile(r"^(?P<resnet>R\d*)\+(?:ViT-)?(?P<vit>\w+/\d+)$")
_BIT_NAME = re.compile(r"^(?:BiT-)?(?P<name>R\d+x\d+)$")


ALL_VARIANTS: tuple[str, ...] = (*VIT_VARIANTS, *HYBRID_VARIANTS, *BIT_VARIANTS)


CHECKPOINT_SUFFIXES = (".npz", ".safetensors")


def is_checkpoint(name: str | None) -> bool:
    """Whether a model name (``--model``, ``--weights``, ``--init``) names a checkpoint.

    Args:
        name: a variant name, a checkpoint file or folder, or None.

    Returns:
        True for an ``.npz`` / ``.safetensors`` name or an existing folder.

    Example:
        >>> is_checkpoint("runs/digits/model.npz"), is_checkpoint("ViT-B/16")
        (True, False)
    """
    return bool(name) and (name.endswith(CHECKPOINT_SUFFIXES) or os.path.isdir(name))


def display_name(variant: str) -> str:
    """The user-facing name of a canonical variant: ``ViT-B/16``, ``R50+ViT-B/16``, ``BiT-R50x1``."""
    if variant in BIT_VARIANTS:
        return f"BiT-{variant}"
    return variant.replace("+", "+ViT-") if "+" in variant else f"ViT-{variant}"


def _known_names() -> str:
    return ", ".join(display_name(v) for v in ALL_VARIANTS)


def parse_model_name(name: str) -> tuple[str, str, dict[str, Any]]:
    """Decodes a variant name into its family, canonical name and constructor arguments.

    Args:
        name: ``"ViT-B/16"`` / ``"B/16"`` (any patch size for the sizes of
            ``VIT_SIZES``; ``"Mu/16"`` is the tiny test model), ``"R50+ViT-B/16"``
            / ``"R50+B/16"``, or ``"BiT-R50x1"`` / ``"R50x1"``.

    Returns:
        ``(family, canonical name, arguments)`` with family ``"vit"``,
        ``"hybrid"`` or ``"bit"``.

    Raises:
        ValueError: for a name that names no variant.
    """
    text = name.strip() if isinstance(name, str) else ""
    if match := _VIT_NAME.match(text):
        canonical = f"{match['size']}/{match['patch']}"
        return "vit", canonical, dict(VIT_SIZES[match["size"]], patch_size=int(match["patch"]))
    if (
        match := _HYBRID_NAME.match(text)
    ) and f"{match['resnet']}+{match['vit']}" in HYBRID_VARIANTS:
        canonical = f"{match['resnet']}+{match['vit']}"
        size, patch, stages = HYBRID_VARIANTS[canonical]
        config = dict(VIT_SIZES[size], patch_size=patch, resnet_layers=stages, resnet_width=1)
        return "hybrid", canonical, config
    if (match := _BIT_NAME.match(text)) and match["name"] in BIT_VARIANTS:
        layers, width = BIT_VARIANTS[match["name"]]
        return "bit", match["name"], dict(layers=layers, width=width)
    raise ValueError(f"Unknown model variant {name!r}. Known variants: {_known_names()}.")


def vit_variant_name(config: dict[str, Any]) -> str | None:
    """The canonical name of a ViT or hybrid configuration, or None if it has none."""
    dims = {k: config[k] for k in ("hidden_size", "num_layers", "mlp_dim", "num_heads")}
    size = next((s for s, c in VIT_SIZES.items() if c == dims), None)
    if size is None:
        return None
    stages = config.get("resnet_layers")
    if stages is None:
        return f"{size}/{config['patch_size']}"
    stages = tuple(stages)
    for name, (hybrid_size, patch, hybrid_stages) in HYBRID_VARIANTS.items():
        if (hybrid_size, patch, hybrid_stages) == (
            size,
            config["patch_size"],
            stages,
        ) and config.get("resnet_width", 1) == 1:
            return name
    return None
