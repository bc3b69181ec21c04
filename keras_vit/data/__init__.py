"""Training and evaluation data: the embedded digits, TFDS datasets by name, image folders.

Example:
    >>> from keras_vit.data import eval_dataset, load_source
    >>> source = load_source("digits")
    >>> images, labels, weights = next(iter(eval_dataset(source, "test", 32, batch_size=400)))
    >>> images.shape, float(weights.numpy().sum())
    (TensorShape([400, 32, 32, 3]), 360.0)
"""

from keras_vit.data.augment import NO_AUGMENTATION, Augmentation
from keras_vit.data.digits import DIGITS_CLASSES, load_digits
from keras_vit.data.pipeline import eval_dataset, eval_steps, train_dataset
from keras_vit.data.sources import DataError, Source, Split, load_source

__all__ = [
    "DIGITS_CLASSES",
    "NO_AUGMENTATION",
    "Augmentation",
    "DataError",
    "Source",
    "Split",
    "eval_dataset",
    "eval_steps",
    "load_digits",
    "load_source",
    "train_dataset",
]
