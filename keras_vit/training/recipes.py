"""Named training recipes: the paper's settings, one row each; any flag overrides a field.

Sources: Dosovitskiy et al. 2020, Table 3 and Appendix B.1 (pre-training, training
from scratch on ImageNet), vision_transformer's fine-tuning configs (SGD, cosine,
warm-up 500, clipping at 1, batch 512, step counts per dataset), and Kolesnikov
et al. 2020 (BiT-HyperRule).

Example:
    >>> from keras_vit.data import load_source
    >>> from keras_vit.training.recipes import get_recipe, resolve
    >>> recipe = resolve(get_recipe("bit-hyperrule"), load_source("digits"))
    >>> recipe.steps, recipe.image_size, recipe.learning_rate, recipe.augmentation.resize_size
    (500, 128, 0.003, 160)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from keras_vit.data import Augmentation, Source
from keras_vit.data.augment import NO_AUGMENTATION


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Every setting of a training run.

    ``steps`` (optimizer steps) wins over ``epochs``; ``warmup_steps`` below 1
    is a fraction of the run. Fields left None are filled by ``resolve`` from
    the dataset (splits, step counts, resolution). ``model`` is a variant name
    or a checkpoint file (its own architecture, see ``keras_vit.training.model``).
    """

    name: str
    description: str
    model: str = "ViT-B/16"
    model_args: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    pre_logits: bool = False
    dataset: str = "imagenet2012"
    train_split: str | None = None
    eval_split: str | None = None
    image_size: int | None = 224
    batch_size: int = 512
    steps: int | None = None
    epochs: float | None = None
    optimizer: str = "sgd"
    learning_rate: float = 0.03
    momentum: float = 0.9
    beta_1: float = 0.9
    beta_2: float = 0.999
    weight_decay: float = 0.0
    decay: str = "cosine"
    warmup_steps: float = 500
    end_learning_rate: float = 0.0
    grad_clip: float | None = 1.0
    label_smoothing: float = 0.0
    augmentation: Augmentation = Augmentation()
    init_required: bool = False
    reset_head: bool = False
    hyperrule: bool = False


# Pre-training and from-scratch rows share Adam (0.9, 0.999), batch 4096, a 10k-step
# warm-up, clipping at global norm 1, and a Dense+tanh pre-logits layer.
_PRETRAIN = dict(
    pre_logits=True,
    batch_size=4096,
    optimizer="adam",
    warmup_steps=10_000,
    decay="linear",
    grad_clip=1.0,
)

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "digits",
            "the main job: a 2-layer ViT on the embedded digits (no download), under a minute on 2 CPUs",
            model="ViT-Mu/4",
            model_args={"num_heads": 4, "dropout_rate": 0.1},
            dataset="digits",
            image_size=16,
            batch_size=32,
            epochs=60,
            optimizer="adam",
            learning_rate=2e-3,
            weight_decay=0.05,
            warmup_steps=0.1,
            grad_clip=None,
            augmentation=NO_AUGMENTATION,  # digits are not flip- or crop-invariant
        ),
        Recipe(
            "pretrain",
            "pre-training as on JFT-300M (Table 3: ViT-B, 7 epochs, lr 8e-4, weight decay 0.1)",
            epochs=7,
            learning_rate=8e-4,
            weight_decay=0.1,
            **_PRETRAIN,
        ),
        Recipe(
            "pretrain-i21k",
            "pre-training as on ImageNet-21k (Table 3: 90 epochs, lr 1e-3, weight decay 0.03, "
            "dropout 0.1); pass the data with --dataset",
            model_args={"dropout_rate": 0.1},
            epochs=90,
            learning_rate=1e-3,
            weight_decay=0.03,
            **_PRETRAIN,
        ),
        Recipe(
            "imagenet-scratch",
            "training from scratch on ImageNet-1k (Table 3: 300 epochs, lr 3e-3, cosine, "
            "weight decay 0.3, dropout 0.1)",
            model_args={"dropout_rate": 0.1},
            train_split="train[:99%]",
            eval_split="validation",
            epochs=300,
            learning_rate=3e-3,
            weight_decay=0.3,
            **{**_PRETRAIN, "decay": "cosine"},
        ),
        Recipe(
            "finetune",
            "fine-tuning a 224 checkpoint at 384 (SGD momentum 0.9, cosine, clip 1, batch 512, "
            "new zero head; steps per dataset); needs --init",
            image_size=384,
            init_required=True,
            reset_head=True,
        ),
        Recipe(
            "bit-hyperrule",
            "BiT-HyperRule fine-tuning for the ResNets (SGD 0.003 x batch/512, x0.1 at "
            "30/60/90%, steps, resolution and mixup by dataset size)",
            model="BiT-R50x1",
            image_size=None,
            learning_rate=0.003,
            decay="steps",
            grad_clip=None,
            reset_head=True,
            hyperrule=True,
        ),
    )
}

# vision_transformer's fine-tuning presets: steps and splits per dataset (paper:
# ImageNet 20k, CIFAR 10k, Pets and Flowers 500; VTAB and anything else 2,500).
FINETUNE_PRESETS: dict[str, tuple[int, str, str]] = {
    "imagenet2012": (20_000, "train[:99%]", "validation"),
    "cifar10": (10_000, "train[:98%]", "test"),
    "cifar100": (10_000, "train[:98%]", "test"),
    "oxford_iiit_pet": (500, "train", "test"),
    "oxford_flowers102": (500, "train", "test"),
}
FINETUNE_DEFAULT_STEPS = 2_500


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``.

    Args:
        name: a key of ``RECIPES``.

    Returns:
        The recipe (a frozen dataclass: change fields with ``dataclasses.replace``).

    Raises:
        ValueError: for an unknown name (the message lists the known ones).
    """
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known recipes: {', '.join(RECIPES)}")
    return RECIPES[name]


def _default_eval_split(source: Source) -> str:
    for name in ("test", "validation", "val"):
        if name in source.splits:
            return name
    raise ValueError(f"dataset {source.name!r} has no test or validation split; pass --eval-split")


def resolve(recipe: Recipe, source: Source) -> Recipe:
    """Fills the dataset-dependent fields: splits, steps, and (HyperRule) resolution and mixup.

    Args:
        recipe: the recipe; fields already set are kept.
        source: the dataset it trains on.

    Returns:
        The recipe with splits, ``steps`` and an integer ``warmup_steps`` filled in.

    Raises:
        ValueError: when no evaluation split is set and the dataset has no test or
            validation split.
    """
    fields: dict[str, Any] = {}
    steps_preset, train_preset, eval_preset = FINETUNE_PRESETS.get(
        source.name, (FINETUNE_DEFAULT_STEPS, "train", None)
    )
    fields["train_split"] = recipe.train_split or (
        train_preset if recipe.name == "finetune" else "train"
    )
    fields["eval_split"] = recipe.eval_split or eval_preset or _default_eval_split(source)
    num_train = source.split(fields["train_split"]).num_examples
    steps = recipe.steps
    if recipe.hyperrule:
        # BiT-HyperRule: schedule length and mixup by dataset size, resolution by image size.
        steps = steps or (500 if num_train < 20_000 else 10_000 if num_train < 500_000 else 20_000)
        small = source.image_size is not None and source.image_size < 96
        size = recipe.image_size or (128 if small else 384)
        fields["image_size"] = size
        fields["augmentation"] = Augmentation(
            crop="resize_crop",
            resize_size=size * 5 // 4 if small else size * 7 // 6,  # 160 -> 128, 448 -> 384
            mixup=recipe.augmentation.mixup or (0.1 if num_train >= 20_000 else 0.0),
        )
        fields["learning_rate"] = recipe.learning_rate * recipe.batch_size / 512
    elif steps is None and recipe.epochs is None:
        steps = steps_preset
    if steps is None:
        steps = math.ceil(recipe.epochs * num_train / recipe.batch_size)
    fields["steps"] = steps
    warmup = recipe.warmup_steps
    fields["warmup_steps"] = min(int(warmup * steps) if warmup < 1 else int(warmup), steps)
    return dataclasses.replace(recipe, **fields)
