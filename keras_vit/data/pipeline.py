"""tf.data input pipelines for training and evaluation, ready for ``tf.distribute``.

Training data is one endless stream fixed by the seed: shuffled records,
epoch after epoch, each example numbered. A run that resumes at example ``n``
skips ``n`` cheap records and sees exactly what an uninterrupted run would
have seen; workers take every k-th example of the same stream. Elements are
``(images, one-hot labels, weights)`` batched per replica.

Example:
    >>> from keras_vit.data import load_source, train_dataset
    >>> source = load_source("digits")
    >>> data = train_dataset(source, "train", image_size=16, batch_size=8, seed=0)
    >>> images, labels, weights = next(iter(data))
    >>> images.shape, labels.shape, weights.shape
    (TensorShape([8, 16, 16, 3]), TensorShape([8, 10]), TensorShape([8]))
"""

from __future__ import annotations

import math

import tensorflow as tf

from keras_vit.data.augment import Augmentation, preprocess
from keras_vit.data.sources import Source

AUTOTUNE = tf.data.AUTOTUNE
SHUFFLE_BUFFER = 50_000  # records, not decoded images (the official fine-tuning value)


def _pipelines(input_context: tf.distribute.InputContext | None) -> tuple[int, int, int]:
    """(number of input pipelines, this one's index, replicas it feeds)."""
    if input_context is None:
        return 1, 0, 1
    replicas = input_context.num_replicas_in_sync // input_context.num_input_pipelines
    return input_context.num_input_pipelines, input_context.input_pipeline_id, replicas


def _per_replica(batch_size: int, input_context: tf.distribute.InputContext | None) -> int:
    if input_context is None:
        return batch_size
    return input_context.get_per_replica_batch_size(batch_size)


def train_dataset(
    source: Source,
    split: str,
    image_size: int,
    batch_size: int,
    seed: int,
    augmentation: Augmentation | None = None,
    start_example: int = 0,
    input_context: tf.distribute.InputContext | None = None,
    shuffle_buffer: int = SHUFFLE_BUFFER,
) -> tf.data.Dataset:
    """The endless, shuffled, augmented training stream.

    Args:
        source: the dataset.
        split: its training split.
        image_size: the model's input side.
        batch_size: the global batch size.
        seed: fixes the order and every random crop and flip.
        augmentation: training augmentation (the default: inception crop + flip).
        start_example: examples of the stream already consumed (resuming).
        input_context: from ``strategy.distribute_datasets_from_function``;
            batches are then per replica and this pipeline takes its share.
        shuffle_buffer: records held for shuffling.

    Returns:
        Batches ``(images [b, size, size, 3] in [-1, 1], one-hot labels [b,
        classes], weights [b] of ones)``, ``b`` the per-replica batch size.
    """
    augmentation = Augmentation() if augmentation is None else augmentation
    info = source.split(split)
    num_pipelines, pipeline_id, _ = _pipelines(input_context)
    data = info.records().shuffle(
        min(info.num_examples, shuffle_buffer), seed=seed, reshuffle_each_iteration=True
    )
    data = data.repeat().enumerate()
    if start_example:
        data = data.skip(start_example)
    if num_pipelines > 1:
        data = data.shard(num_pipelines, pipeline_id)
    num_classes = source.num_classes

    def example(index, record):
        image, label = record
        key = tf.stack([tf.constant(seed, tf.int64), index])
        image = preprocess(image, source.kind, image_size, augmentation, key)
        return image, tf.one_hot(label, num_classes), tf.ones([])

    data = data.map(example, num_parallel_calls=AUTOTUNE, deterministic=True)
    if source.kind != "pixels":
        data = data.ignore_errors(log_warning=True)  # undecodable files are dropped, and logged
    if augmentation.randaugment:
        import keras

        num_ops, factor = augmentation.randaugment
        randaugment = keras.layers.RandAugment(
            value_range=(-1, 1), num_ops=num_ops, factor=factor, seed=seed
        )
        data = data.map(lambda x, y, w: (randaugment(x), y, w), num_parallel_calls=AUTOTUNE)
    data = data.batch(_per_replica(batch_size, input_context), drop_remainder=True)
    if augmentation.mixup:
        import keras

        mixup = keras.layers.MixUp(alpha=augmentation.mixup, seed=seed)

        def mix(images, labels, weights):
            mixed = mixup({"images": images, "labels": labels})
            return mixed["images"], mixed["labels"], weights

        data = data.map(mix, num_parallel_calls=AUTOTUNE)
    return data.prefetch(AUTOTUNE)


def eval_steps(source: Source, split: str, batch_size: int) -> int:
    """Global batches that cover the split once (the last one padded).

    Args:
        source: the dataset.
        split: the split.
        batch_size: the global batch size.

    Returns:
        The number of batches.
    """
    return math.ceil(source.split(split).num_examples / batch_size)


def eval_dataset(
    source: Source,
    split: str,
    image_size: int,
    batch_size: int,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """The split once, resized, in order, padded with weight-0 examples to whole batches.

    Every input pipeline yields ``eval_steps`` batches per replica, so workers
    never wait on one another; padded (and undecodable) examples weigh 0.

    Args:
        source: the dataset.
        split: the evaluation split.
        image_size: the model's input side.
        batch_size: the global batch size.
        input_context: as for ``train_dataset``.

    Returns:
        Batches ``(images, one-hot labels, weights)`` as ``train_dataset``'s,
        with weight 0 for padding.
    """
    info = source.split(split)
    num_pipelines, pipeline_id, replicas = _pipelines(input_context)
    per_replica = _per_replica(batch_size, input_context)
    steps = eval_steps(source, split, batch_size)
    data = info.records()
    if num_pipelines > 1:
        data = data.shard(num_pipelines, pipeline_id)
    num_classes = source.num_classes

    def example(image, label):
        image = preprocess(image, source.kind, image_size, None, None)
        return image, tf.one_hot(label, num_classes), tf.ones([])

    data = data.map(example, num_parallel_calls=AUTOTUNE, deterministic=True)
    if source.kind != "pixels":
        data = data.ignore_errors(log_warning=True)
    padding = tf.data.Dataset.from_tensors(
        (tf.zeros([image_size, image_size, 3]), tf.zeros([num_classes]), tf.zeros([]))
    ).repeat()
    data = data.concatenate(padding).take(steps * per_replica * replicas)
    return data.batch(per_replica, drop_remainder=True).prefetch(AUTOTUNE)
