"""``--model``, ``--weights`` and ``--image-size``: how every command names a model.

``--model`` takes one of three forms:

- a variant name (``ViT-B/16``, ``R50+ViT-B/16``, ``BiT-R50x1``), with
  ``--weights`` a named checkpoint or a checkpoint file, and ``--image-size``;
- a saved ``.keras`` model;
- a checkpoint file (``.npz``, ``.safetensors``) or Hugging Face folder, whose
  keys and shapes give the architecture (``keras_vit.models.from_checkpoint``),
  with ``--image-size`` (and ``--num-heads`` for timm files, which do not record it).

``--weights FILE`` without ``--model`` is the third form. A checkpoint that does
not fit a named ``--model`` is reported as a short summary (``--verbose``: every key).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from keras_vit.variants import is_checkpoint

if TYPE_CHECKING:
    import keras


def add_model_arguments(
    parser: argparse.ArgumentParser, default: str | None = None, default_weights: str | None = None
) -> None:
    """Adds ``--model``, ``--weights`` and ``--image-size`` to a command's parser.

    Args:
        parser: the command's parser.
        default: the ``--model`` when none is given; None makes ``--model`` required.
        default_weights: the ``--weights`` of a variant name when none are given.
    """
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default=None,
        help="a variant name (ViT-B/16, R50+ViT-B/16, BiT-R50x1), a saved .keras model or a "
        "checkpoint file (.npz, .safetensors)"
        + (f" (default {default})" if default else " (default: the --weights file's own)"),
    )
    group.add_argument(
        "--weights",
        default=None,
        help="with a variant name: a named checkpoint (downloaded once) or a checkpoint file; "
        "a checkpoint file alone gives its own architecture"
        + (f" (default {default_weights})" if default_weights else ""),
    )
    group.add_argument(
        "--num-heads",
        type=int,
        default=None,
        help="attention heads of a timm checkpoint file (its fused qkv does not record them)",
    )
    group.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="input size of a variant name or a checkpoint file (resamples the position "
        "embeddings of a checkpoint made for another size)",
    )
    parser.set_defaults(default_model=default, default_weights=default_weights)


def load_model(args: argparse.Namespace) -> keras.Model:
    """Builds the model that ``--model``, ``--weights`` and ``--image-size`` name.

    Args:
        args: parsed arguments of a parser given ``add_model_arguments``.

    Returns:
        The model, with its weights.

    Raises:
        ValueError: for no model at all, an unknown variant or named checkpoint, an
            unreadable file or one that does not fit ``--model``, ``--weights`` with
            a file, or ``--image-size`` with a ``.keras`` model.
    """
    overrides = {} if args.image_size is None else {"image_size": args.image_size}
    if args.model is None:  # a checkpoint file alone names its own architecture
        model, weights = (
            (args.weights, None)
            if is_checkpoint(args.weights)
            else (args.default_model, args.weights)
        )
        if model is None:
            raise ValueError("name a model: --model, or --weights with a checkpoint file")
        args = argparse.Namespace(**{**vars(args), "model": model, "weights": weights})
    if is_checkpoint(args.model):
        if args.weights is not None:
            raise ValueError(f"--weights goes with a variant name, not with the file {args.model}")
        from keras_vit.models import from_checkpoint

        if args.num_heads is not None:
            overrides["num_heads"] = args.num_heads
        return from_checkpoint(args.model, **overrides)
    if not args.model.endswith(".keras"):
        from keras_vit.models import create_model

        weights = args.weights if args.weights is not None else args.default_weights
        return create_model(args.model, weights=weights, **overrides)
    if args.weights is not None:
        raise ValueError(f"--weights goes with a variant name, not with the file {args.model}")
    if overrides:
        raise ValueError(f"--image-size cannot change the saved model {args.model}")
    import keras

    import keras_vit.models  # noqa: F401 -- registers the layers a .keras file names

    return keras.saving.load_model(args.model)
