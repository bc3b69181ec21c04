"""Argument checks shared by the model builders (``ViT``, ``ResNetV2``), and ``weights``.

Each check raises a ``ValueError`` that names the argument and the value it got.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from keras_vit.models import weights as named_weights


def image_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    """The ``(height, width)`` of an ``image_size`` argument.

    Args:
        image_size: a positive int (square images) or a ``(height, width)`` pair.

    Returns:
        ``(height, width)``.

    Raises:
        ValueError: for anything else.
    """
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(
            f"image_size must be a positive int or a (height, width) pair; got {image_size!r}."
        )
    return size


def check_head(
    include_top: bool, num_classes: int, pooling: str | None, poolings: Sequence[str | None]
) -> None:
    """Checks the head arguments of the ``keras.applications`` signature.

    Args:
        include_top: whether the model ends with its classification head.
        num_classes: size of the head; a positive int when ``include_top``.
        pooling: pooling of a headless model, one of ``poolings``.
        poolings: the model's pooling choices, None included.

    Raises:
        ValueError: for an unknown ``pooling``, a ``pooling`` with ``include_top``,
            or a ``num_classes`` that is not a positive int.
    """
    if pooling not in poolings:
        raise ValueError(f"pooling must be one of {tuple(poolings)}; got {pooling!r}.")
    if include_top and pooling is not None:
        raise ValueError("pooling applies only with include_top=False.")
    if include_top and (not isinstance(num_classes, int) or num_classes <= 0):
        raise ValueError(f"num_classes must be a positive int; got {num_classes!r}.")


def resolve_weights(weights: str | os.PathLike | None, variant: str | None) -> str | None:
    """Turns a ``weights`` argument into a local file path.

    Args:
        weights: None, a file path, or the name of an official checkpoint of ``variant``.
        variant: the model's variant name (``"B/16"``, ``"R50x1"``), for named checkpoints.

    Returns:
        None, the file itself, or the downloaded named checkpoint.
    """
    if weights is None:
        return None
    path = os.fspath(weights)
    if os.path.isfile(path):
        return path
    return named_weights.fetch(named_weights.lookup(variant, path))
