"""ImageNet helpers: input scaling of the official checkpoints and label decoding.

Example:
    >>> import numpy as np
    >>> from keras_vit import preprocess_input
    >>> preprocess_input(np.array([0, 255], "uint8")).tolist()
    [-1.0, 1.0]
"""

from __future__ import annotations

import functools
import importlib.resources
import sys
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from keras import ops

if TYPE_CHECKING:
    import tensorflow as tf


def preprocess_input(images: np.ndarray | tf.Tensor) -> np.ndarray | tf.Tensor:
    """Maps uint8 pixels [0, 255] to the [-1, 1] range the official checkpoints take.

    The one pixel scaling of the package: image files, the training pipeline
    (inside ``tf.data``) and the exported SavedModel signatures all call it.

    Args:
        images: an array or tensor of pixel values in [0, 255] (any dtype); a
            TensorFlow tensor may be symbolic (``tf.function``, ``tf.data``).

    Returns:
        float32 values in [-1, 1]: a numpy array for a numpy array, else a tensor.
    """
    if isinstance(images, np.ndarray):  # stay in numpy for numpy input
        return images.astype(np.float32) / 127.5 - 1.0
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(images, tf.Tensor):  # tf.data under any Keras backend
        return tf.cast(images, tf.float32) / 127.5 - 1.0
    return ops.cast(images, "float32") / 127.5 - 1.0


@functools.cache
def imagenet_labels() -> tuple[str, ...]:
    """The ImageNet-1k class names.

    Returns:
        The 1000 names, in class-index order.
    """
    text = importlib.resources.files("keras_vit").joinpath("data/imagenet1k_labels.txt").read_text()
    return tuple(text.splitlines())


def decode_predictions(
    predictions: npt.ArrayLike, top: int = 5
) -> list[list[tuple[int, str, float]]]:
    """Top classes of ImageNet-1k predictions.

    Args:
        predictions: ``[batch, 1000]`` logits or probabilities.
        top: how many classes per image.

    Returns:
        For each image, ``top`` tuples ``(class_index, label, score)``, best first.

    Raises:
        ValueError: for predictions that are not ``[batch, 1000]``.
    """
    predictions = np.asarray(predictions)
    labels = imagenet_labels()
    if predictions.ndim != 2 or predictions.shape[1] != len(labels):
        raise ValueError(
            f"decode_predictions expects [batch, {len(labels)}] predictions; got {predictions.shape}."
        )
    order = np.argsort(-predictions, axis=1)[:, :top]
    return [
        [(int(i), labels[i], float(row[i])) for i in idx] for row, idx in zip(predictions, order)
    ]
