"""The one table of model variants, decoded from names such as ``"B/16"``.

Every public constructor (``ViT_B16``, ``create_model("ViT-B/16")``, ...) is
derived from the tables below, so a variant exists in exactly one place.

Example:
    >>> from keras_vit.variants import parse_vit_name
    >>> parse_vit_name("ViT-B/16")["hidden_size"]
    768
"""

from __future__ import annotations

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

# The named variants of the paper and of the AugReg release: name -> (size, patch).
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

_VIT_NAME = re.compile(r"^(?:ViT-)?(?P<size>Mu|Ti|S|B|L|H)/(?P<patch>\d+)$")


def parse_vit_name(name: str) -> dict[str, Any]:
    """Decodes a ViT variant name into constructor arguments.

    Args:
        name: ``"B/16"`` or ``"ViT-B/16"``; any patch size is accepted for the
            sizes of ``VIT_SIZES`` (``"Mu/8"`` is the tiny test model).

    Returns:
        A dict with ``hidden_size``, ``num_layers``, ``mlp_dim``, ``num_heads``
        and ``patch_size``.

    Raises:
        ValueError: for a name that names no variant.
    """
    match = _VIT_NAME.match(name.strip())
    if match is None:
        known = ", ".join(f"ViT-{v}" for v in VIT_VARIANTS)
        raise ValueError(
            f"Unknown ViT variant {name!r}. Known variants: {known} "
            "(or 'Mu/<patch>' for the tiny test model)."
        )
    return dict(VIT_SIZES[match["size"]], patch_size=int(match["patch"]))


def canonical_vit_name(name: str) -> str:
    """Returns ``"B/16"`` for ``"ViT-B/16"`` or ``"B/16"`` (validated)."""
    parse_vit_name(name)
    return name.strip().removeprefix("ViT-")
