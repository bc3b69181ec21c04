"""Evaluation of a classifier on a whole split: top-1, top-5 and mean loss.

Example:
    >>> from keras_vit.data import load_source
    >>> from keras_vit.models import create_model
    >>> from keras_vit.training import evaluate_split
    >>> model = create_model("ViT-Mu/4", image_size=16, num_classes=10)
    >>> metrics = evaluate_split(model, load_source("digits"), "test")
    >>> metrics["examples"], round(float(metrics["loss"]), 4)  # the zero head: ln 10
    (360.0, 2.3026)
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_vit.data import Source, eval_dataset, eval_steps
from keras_vit.training.step import StepFunction, make_eval_function


def evaluate_split(
    model: keras.Model,
    source: Source,
    split: str,
    batch_size: int = 256,
    strategy: tf.distribute.Strategy | None = None,
    evaluate: StepFunction | None = None,
) -> dict[str, float]:
    """Top-1 and top-5 accuracy and mean loss of ``model`` on a whole split.

    Args:
        model: a classifier (built in ``strategy``'s scope).
        source: the dataset.
        split: the split, evaluated once, in order (plain resize to the model's input).
        batch_size: global batch size.
        strategy: where to run (the current strategy when None).
        evaluate: a function from ``make_eval_function`` to reuse (avoids retracing).

    Returns:
        ``{"loss", "accuracy", "top5", "examples"}``.
    """
    strategy = strategy or tf.distribute.get_strategy()
    evaluate = evaluate or make_eval_function(model, strategy, batch_size)
    image_size = int(model.input_shape[1])
    data = strategy.distribute_datasets_from_function(
        lambda ctx: eval_dataset(source, split, image_size, batch_size, ctx)
    )
    steps = eval_steps(source, split, batch_size)
    loss, top1, top5, count = evaluate(iter(data), tf.constant(steps)).numpy()
    count = max(float(count), 1.0)
    return {"loss": loss / count, "accuracy": top1 / count, "top5": top5 / count, "examples": count}
