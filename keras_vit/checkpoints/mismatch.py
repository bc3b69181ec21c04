"""A checkpoint that does not fit a model, said in a few lines a person can read.

``CheckpointMismatchError`` is the error ``assign.assign_params`` raises: its message
says what the checkpoint is and what the model is (each described from its
canonical keys and shapes), counts the missing, unexpected and mis-shaped keys
and names the first few of each; the full lists are its ``missing``,
``unexpected`` and ``mismatched`` attributes (``details()`` joins them, and
``keras-vit --verbose`` prints them).

Example:
    >>> err = CheckpointMismatchError(
    ...     "model.npz",
    ...     "vit",
    ...     {"embedding/kernel": (4, 4, 3, 64)},
    ...     {"embedding/kernel": (16, 16, 3, 768)},
    ...     missing=[],
    ...     unexpected=[],
    ...     mismatched=["embedding/kernel: checkpoint (4, 4, 3, 64), model (16, 16, 3, 768)"],
    ... )
    >>> print(str(err).splitlines()[1])
      checkpoint: ViT: patch 4, width 64
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from keras_vit.checkpoints.io import CheckpointError

Shapes = Mapping[str, Sequence[int]]
SHOWN = 3  # keys named per kind in the message
_BLOCK = re.compile(r"^Transformer/encoderblock_(\d+)/")
_UNIT = re.compile(r"^block(\d+)/unit(\d+)/")
_QUERY = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel"
_MLP = "Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel"
_POSEMB = "Transformer/posembed_input/pos_embedding"


def _stages(shapes: Shapes) -> str:
    units: dict[str, set[str]] = {}
    for key in shapes:
        match = _UNIT.match(key)
        if match:
            units.setdefault(match[1], set()).add(match[2])
    return "(" + ", ".join(str(len(units[s])) for s in sorted(units, key=int)) + ")"


def describe(shapes: Shapes) -> str:
    """What canonical keys and shapes describe: family and the sizes they show.

    Args:
        shapes: canonical key -> shape, of a checkpoint or of a model's weights.

    Returns:
        A one-line description, e.g. ``"ViT: patch 16, width 768, depth 12, 12 heads,
        MLP 3072, 1000 classes, 197 position embeddings"``; the sizes whose keys
        are absent are left out.

    Example:
        >>> describe({"root_block/standardized_conv2d/kernel": (7, 7, 3, 64),
        ...           "block1/unit01/a/standardized_conv2d/kernel": (1, 1, 64, 64)})
        'BiT: root width 64, units per stage (1)'
    """
    facts = []
    if "root_block/standardized_conv2d/kernel" in shapes:
        family = "BiT"
        facts.append(f"root width {shapes['root_block/standardized_conv2d/kernel'][-1]}")
        facts.append(f"units per stage {_stages(shapes)}")
    else:
        family = "hybrid ViT" if "conv_root/kernel" in shapes else "ViT"
        if "conv_root/kernel" in shapes:
            facts.append(f"ResNet stem width {shapes['conv_root/kernel'][-1]}")
            facts.append(f"units per stage {_stages(shapes)}")
        if "embedding/kernel" in shapes:
            kernel = shapes["embedding/kernel"]
            facts += [f"patch {kernel[0]}", f"width {kernel[-1]}"]
        depth = len({m[1] for m in map(_BLOCK.match, shapes) if m})
        if depth:
            facts.append(f"depth {depth}")
        if _QUERY in shapes and len(shapes[_QUERY]) == 3:
            facts.append(f"{shapes[_QUERY][1]} heads")
        if _MLP in shapes:
            facts.append(f"MLP {shapes[_MLP][-1]}")
    if "head/kernel" in shapes:
        facts.append(f"{shapes['head/kernel'][-1]} classes")
    if _POSEMB in shapes:
        facts.append(f"{shapes[_POSEMB][1]} position embeddings")
    return f"{family}: " + ", ".join(facts)


def _first(items: Sequence[str], separator: str) -> str:
    shown = separator.join(items[:SHOWN])
    return shown + (f"{separator}... ({len(items)} in all)" if len(items) > SHOWN else "")


class CheckpointMismatchError(CheckpointError):
    """A checkpoint whose keys or shapes do not fit the model; nothing was assigned.

    Args:
        source: the checkpoint's file name.
        model_name: the model's name.
        checkpoint: the checkpoint's canonical keys and shapes.
        model: the model's weights' canonical keys and shapes.
        missing: the model's keys the checkpoint lacks.
        unexpected: the checkpoint's keys the model has no place for.
        mismatched: ``"key: checkpoint (...), model (...)"`` for each mis-shaped key.

    Attributes:
        missing, unexpected, mismatched: the full lists.
    """

    def __init__(
        self,
        source: str,
        model_name: str,
        checkpoint: Shapes,
        model: Shapes,
        missing: Sequence[str],
        unexpected: Sequence[str],
        mismatched: Sequence[str],
    ):
        self.missing, self.unexpected = list(missing), list(unexpected)
        self.mismatched = list(mismatched)
        lines = [
            f"cannot load {source} into model {model_name!r} (model left unchanged):",
            f"  checkpoint: {describe(checkpoint)}",
            f"  model:      {describe(model)}",
            f"  {len(self.missing)} missing, {len(self.unexpected)} unexpected, "
            f"{len(self.mismatched)} mis-shaped keys",
        ]
        if self.missing:
            lines.append("  missing keys: " + _first(self.missing, ", "))
        if self.unexpected:
            lines.append("  keys the model has no place for: " + _first(self.unexpected, ", "))
        if self.mismatched:
            lines.append("  shape mismatch: " + _first(self.mismatched, "; "))
        lines.append(
            "  to build the model the checkpoint describes: keras_vit.models.from_checkpoint "
            "(keras-vit: leave out --model); every key: keras-vit --verbose, or this error's "
            ".missing, .unexpected, .mismatched"
        )
        super().__init__("\n".join(lines))

    def details(self) -> str:
        """Every missing, unexpected and mis-shaped key, one a line.

        Returns:
            The full lists, under a heading each.
        """
        parts = []
        for title, items in (
            ("missing keys", self.missing),
            ("keys the model has no place for", self.unexpected),
            ("shape mismatches", self.mismatched),
        ):
            if items:
                parts.append(f"{title} ({len(items)}):\n" + "\n".join(f"  {i}" for i in items))
        return "\n".join(parts)
