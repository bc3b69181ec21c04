"""Training and evaluation with ``tf.distribute``: recipes, the loop, few-shot evaluation.

Example:
    >>> from keras_vit.training import RECIPES
    >>> sorted(RECIPES)
    ['bit-hyperrule', 'digits', 'finetune', 'imagenet-scratch', 'pretrain', 'pretrain-i21k']
"""

from keras_vit.training.evaluate import evaluate_split
from keras_vit.training.model import build_model
from keras_vit.training.options import PRECISIONS, RunOptions
from keras_vit.training.recipes import RECIPES, Recipe, get_recipe, resolve
from keras_vit.training.run import TrainResult
from keras_vit.training.trainer import fit

__all__ = [
    "PRECISIONS",
    "RECIPES",
    "Recipe",
    "RunOptions",
    "TrainResult",
    "build_model",
    "evaluate_split",
    "fit",
    "get_recipe",
    "resolve",
]
