"""``keras-vit train``'s recipe flags: which recipe, and the fields a flag overrides.

``--init FILE`` without ``--model`` makes the checkpoint the recipe's model: the
run fine-tunes the checkpoint's own architecture (``keras_vit.training.model``),
not the recipe's default variant.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING

from keras_vit.variants import is_checkpoint

if TYPE_CHECKING:
    from keras_vit.training import Recipe

# Recipe fields a flag may override: field -> (type, help); the flag is --field-name.
_OVERRIDES = {
    "model": (
        str,
        "model variant, e.g. ViT-B/16, R50+ViT-B/16, BiT-R50x1, or a checkpoint file "
        "(default: the --init file's architecture, else the recipe's model)",
    ),
    "dataset": (
        str,
        "'digits', a TFDS name (cifar10, imagenet2012, ...) or an image folder with "
        "train/<class>/ and test/<class>/",
    ),
    "train_split": (str, "training split, e.g. train or 'train[:98%%]'"),
    "eval_split": (str, "evaluation split, e.g. test or validation"),
    "image_size": (int, "input resolution"),
    "batch_size": (int, "global batch size (over all replicas)"),
    "epochs": (float, "passes over the training split (when --steps is not given)"),
    "optimizer": (str, "adam or sgd"),
    "learning_rate": (float, "peak learning rate"),
    "weight_decay": (float, "decoupled weight decay (adam)"),
    "momentum": (float, "SGD momentum"),
    "decay": (str, "learning-rate decay after warm-up: cosine, linear or steps"),
    "warmup_steps": (float, "linear warm-up steps (below 1: a fraction)"),
    "grad_clip": (float, "clip the global gradient norm (0: off)"),
    "label_smoothing": (float, "label smoothing"),
}


def what_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the recipe and its overrides (``--recipe``, ``--model``, ``--init``, ...) to ``train``.

    Args:
        parser: the ``keras-vit train`` parser.
    """
    from keras_vit.training import RECIPES

    what = parser.add_argument_group("what to train (a recipe; any flag overrides it)")
    what.add_argument(
        "--recipe", default="digits", choices=sorted(RECIPES), help="named recipe (default digits)"
    )
    for field, (kind, text) in _OVERRIDES.items():
        what.add_argument("--" + field.replace("_", "-"), type=kind, default=None, help=text)
    what.add_argument("--dropout", type=float, default=None, help="dropout rate of the ViT")
    what.add_argument("--mixup", type=float, default=None, help="mixup alpha (0: off)")
    what.add_argument(
        "--randaugment",
        default=None,
        metavar="OPS,FACTOR",
        help="RandAugment with OPS operations of strength FACTOR in [0, 1], e.g. 2,0.5",
    )
    what.add_argument(
        "--crop",
        choices=("inception", "resize_crop", "none"),
        default=None,
        help="training crop: inception (official ViT), resize_crop (BiT) or none",
    )
    what.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    what.add_argument(
        "--init",
        default=None,
        help="checkpoint to start from: a file (without --model, the model is the file's own "
        "architecture) or a named checkpoint of --model",
    )
    what.add_argument(
        "--num-heads",
        type=int,
        default=None,
        help="attention heads, for a timm checkpoint (its fused qkv does not record them) or a "
        "--model whose recipe does not set them",
    )


def _augmentation_from_args(args: argparse.Namespace) -> dict[str, object]:
    """The augmentation fields the flags set."""
    augmentation: dict[str, object] = {}
    if args.mixup is not None:
        augmentation["mixup"] = args.mixup
    if args.crop is not None:
        augmentation["crop"] = args.crop
    if args.no_flip:
        augmentation["flip"] = False
    if args.randaugment:
        ops, _, factor = args.randaugment.partition(",")
        try:
            augmentation["randaugment"] = (int(ops), float(factor or 0.5))
        except ValueError:
            raise ValueError(
                f"--randaugment takes OPS,FACTOR such as 2,0.5; got {args.randaugment!r}"
            ) from None
    return augmentation


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """The named recipe with the flags' overrides.

    Args:
        args: parsed ``keras-vit train`` arguments.

    Returns:
        The recipe to train with; with a checkpoint file as ``--init`` and no
        ``--model``, its ``model`` is that file.

    Raises:
        ValueError: for an unknown recipe or a malformed ``--randaugment``.
    """
    from keras_vit.data import Augmentation
    from keras_vit.training import get_recipe

    recipe = get_recipe(args.recipe)
    given = vars(args)
    fields = {field: given[field] for field in _OVERRIDES if given[field] is not None}
    if fields.get("grad_clip") == 0:
        fields["grad_clip"] = None
    if "model" not in fields and is_checkpoint(args.init):
        fields["model"] = args.init  # fine-tune the checkpoint's own architecture
    model_args = dict(recipe.model_args)
    if fields.get("model", recipe.model) != recipe.model:
        # The recipe's architecture arguments belong to its own model; dropout is a setting.
        model_args = {k: v for k, v in model_args.items() if k == "dropout_rate"}
    if args.dropout is not None:
        model_args["dropout_rate"] = args.dropout
    if args.num_heads is not None:
        model_args["num_heads"] = args.num_heads
    fields["model_args"] = model_args
    augmentation = _augmentation_from_args(args)
    if augmentation:
        fields["augmentation"] = Augmentation(
            **{**dataclasses.asdict(recipe.augmentation), **augmentation}
        )
    return dataclasses.replace(recipe, **fields)
