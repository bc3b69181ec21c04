"""Reading image files into model inputs: decode, resize, then ``preprocess_input``.

One decode and one resize serve every path from a file to a model: ``load_image``
(local prediction and analysis), ``load_pixels`` (the uint8 pixels the Triton
client sends), the exported ``serve_bytes`` signature and the training pipeline
(``keras_vit.data.augment``), so that a file gives the same pixels in each.

Example:
    >>> import tempfile
    >>> import numpy as np
    >>> import tensorflow as tf
    >>> path = tempfile.mktemp(suffix=".png")
    >>> tf.io.write_file(path, tf.io.encode_png(np.full((4, 6, 3), 255, np.uint8)))
    >>> load_pixels(path, (2, 3)).dtype, load_image(path, (2, 3)).max()
    (dtype('uint8'), 1.0)
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from keras_vit.imagenet import preprocess_input


def decode_image(data: tf.Tensor) -> tf.Tensor:
    """Decodes one JPEG/PNG/GIF/BMP file (a GIF's first frame) to RGB.

    Args:
        data: the encoded file, a scalar string tensor (may be symbolic).

    Returns:
        uint8 ``[height, width, 3]``.
    """
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def resize(image: tf.Tensor, size: tuple[int, int] | list[int]) -> tf.Tensor:
    """Bilinear resize (half-pixel centres, no antialiasing) computed in float32.

    Args:
        image: ``[height, width, channels]`` pixels, any real dtype.
        size: ``(height, width)`` of the result.

    Returns:
        float32 ``[size[0], size[1], channels]``, not rounded.
    """
    return tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear")


def load_pixels(path: str | os.PathLike, size: tuple[int, int]) -> np.ndarray:
    """Decodes an image file and resizes it to ``size``: the input of a uint8 model.

    Args:
        path: the image file (JPEG, PNG, GIF or BMP).
        size: ``(height, width)`` of the model input.

    Returns:
        uint8 ``[height, width, 3]``: the bilinear resize rounded half to even.

    Raises:
        ValueError: naming the file when it is missing, empty or not a decodable image.
    """
    path = os.fspath(path)
    try:
        image = decode_image(tf.io.read_file(path))
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
        raise ValueError(f"cannot read image {path!r}: {error.message}") from None
    return tf.saturate_cast(tf.round(resize(image, size)), tf.uint8).numpy()


def load_image(path: str | os.PathLike, size: tuple[int, int]) -> np.ndarray:
    """``load_pixels`` scaled by ``preprocess_input``: what a float model takes.

    Args:
        path: the image file (JPEG, PNG, GIF or BMP).
        size: ``(height, width)`` of the model input.

    Returns:
        float32 ``[height, width, 3]`` in [-1, 1], as the official checkpoints take.

    Raises:
        ValueError: naming the file when it is missing, empty or not a decodable image.
    """
    return preprocess_input(load_pixels(path, size))
