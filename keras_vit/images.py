"""Reading image files into model inputs (decode, resize, scale to [-1, 1])."""

from __future__ import annotations

import os

import numpy as np


def load_image(path: str | os.PathLike, size: tuple[int, int]) -> np.ndarray:
    """Decodes a JPEG/PNG/GIF/BMP file and resizes it (bilinear) to ``size``.

    Args:
        path: the image file.
        size: ``(height, width)`` of the model input.

    Returns:
        float32 ``[height, width, 3]`` in [-1, 1], as the official checkpoints take.

    Raises:
        ValueError: naming the file when it is missing, empty or not a decodable image.
    """
    import tensorflow as tf

    path = os.fspath(path)
    try:
        data = tf.io.read_file(path)
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
        raise ValueError(f"cannot read image {path!r}: {error.message}") from None
    image = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear")
    return (image.numpy() / 127.5 - 1.0).astype(np.float32)
