"""The model a recipe trains: a variant built by name, or the architecture of a checkpoint.

A recipe's ``model`` is a variant name (``"ViT-B/16"``, ``"BiT-R50x1"``) or a
checkpoint (an ``.npz`` / ``.safetensors`` file, or a Hugging Face folder).
``keras-vit train --init FILE`` without ``--model`` sets it to the checkpoint,
so fine-tuning starts from the checkpoint's own architecture
(``keras_vit.models.from_checkpoint``), whatever the recipe's default model.

Example:
    >>> import dataclasses, os, tempfile
    >>> from keras_vit.checkpoints import save_npz
    >>> from keras_vit.models import ViT
    >>> from keras_vit.training import get_recipe
    >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
    >>> save_npz(ViT(image_size=16, patch_size=4, hidden_size=64, num_layers=1,
    ...              num_heads=4, mlp_dim=128, num_classes=10), path)
    >>> recipe = dataclasses.replace(get_recipe("finetune"), model=path)
    >>> model = build_model(recipe, num_classes=3, image_size=32, init=path)
    >>> model.get_layer("Transformer").get_config()["num_heads"], model.output_shape
    (4, (None, 3))
"""

from __future__ import annotations

import keras

from keras_vit.checkpoints import load_weights_file
from keras_vit.checkpoints.families import detect_family
from keras_vit.checkpoints.hf import is_hf_folder
from keras_vit.checkpoints.io import checkpoint_keys
from keras_vit.models import from_checkpoint
from keras_vit.models.registry import create_recipe_model
from keras_vit.training.options import check_init
from keras_vit.training.recipes import Recipe
from keras_vit.variants import is_checkpoint


def _checkpoint_family(path: str) -> str:
    """``"vit"``, ``"hybrid"`` or ``"bit"``, from the checkpoint's keys (no array is read)."""
    return "vit" if is_hf_folder(path) else detect_family(checkpoint_keys(path)).model


def _checkpoint_model(path: str, num_classes: int, image_size: int, recipe: Recipe) -> keras.Model:
    """``from_checkpoint`` with the run's classes, size, settings and pre-logits rule.

    As ``models.registry.create_recipe_model``, a recipe without ``pre_logits``
    drops the checkpoint's Dense+tanh layer (an i21k file's); one with it keeps
    the checkpoint's.
    """
    family, args = _checkpoint_family(path), dict(recipe.model_args)
    if family == "bit" and args:
        raise ValueError(f"{path}: BiT checkpoints take no model arguments ({', '.join(args)})")
    if family != "bit" and not recipe.pre_logits:
        args.setdefault("representation_size", None)
    return from_checkpoint(path, image_size=image_size, num_classes=num_classes, **args)


def build_model(recipe: Recipe, num_classes: int, image_size: int, init: str | None) -> keras.Model:
    """The recipe's model; from ``init`` with a fresh zero head when the recipe says so.

    Args:
        recipe: the recipe (its model, model arguments, pre-logits and head reset).
            A checkpoint as ``model`` gives the checkpoint's architecture and weights.
        num_classes: classes of the head.
        image_size: input resolution.
        init: checkpoint to start from (file or named checkpoint), or None.

    Returns:
        The model, built in the current strategy's scope and dtype policy.

    Raises:
        ValueError: for a fine-tuning recipe without ``init``, an unknown model,
            model arguments for a BiT checkpoint, or a checkpoint that does not
            fit (a short summary of the keys).
    """
    check_init(recipe, init)
    if not is_checkpoint(recipe.model):
        return create_recipe_model(
            recipe.model,
            num_classes,
            image_size,
            model_args=recipe.model_args,
            pre_logits=recipe.pre_logits,
            init=init,
            reset_head=recipe.reset_head,
        )
    model = _checkpoint_model(recipe.model, num_classes, image_size, recipe)
    if init and init != recipe.model:
        load_weights_file(model, init)
    heads = [layer for layer in model.layers if layer.name in ("head", "head_dist")]
    for variable in [v for layer in heads for v in layer.weights] if recipe.reset_head else []:
        variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
    return model
