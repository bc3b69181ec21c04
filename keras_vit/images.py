"""Reading image files into model inputs: decode, resize, then ``preprocess_input``.

One decode and one resize serve every path from a file to a model: ``load_image``
(local prediction and analysis), ``load_pixels`` (the uint8 pixels the Triton
client sends), the exported ``serve_bytes`` signature and the training pipeline
(``keras_vit.data.augment``), so that a file gives the same pixels in each.

Decoding is TensorFlow's (``tf.image``) on every Keras backend, so that training,
serving and local prediction decode alike: this module needs TensorFlow, and
says so when it is missing (nothing at ``import keras_vit`` imports it).

Every decode first reads the image's size from its header (JPEG's frame, PNG's
``IHDR``, GIF's screen, BMP's info header) and refuses an image of more than
``MAX_IMAGE_PIXELS`` pixels before any pixel is decoded: a 1 MB PNG can declare
20000 x 20000 pixels, and decoding it would take gigabytes.

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
import re

import numpy as np

from keras_vit.imagenet import preprocess_input

try:  # tf.image decodes: the same decode in tf.data, the SavedModel and here
    import tensorflow as tf
except ImportError as error:
    raise ImportError(
        "keras_vit.images (decoding image files) needs TensorFlow: pip install tensorflow"
    ) from error

# Pillow's decompression-bomb limit (1 GiB / 4 bytes / 3 channels), so that a file
# one library refuses the other refuses too. At the limit, the uint8 image takes
# 256 MiB and its float32 copy for resizing 1 GiB.
MAX_IMAGE_PIXELS = 89_478_485
_HEADER_BYTES = 32
_PNG = b"\x89PNG\r\n\x1a\n"


def _number(header: tf.Tensor, start: int, size: int, big_endian: bool) -> tf.Tensor:
    """An unsigned integer of ``size`` bytes at ``start`` of the header bytes (int64)."""
    order = range(size) if big_endian else reversed(range(size))
    value = tf.constant(0, tf.int64)
    for i in order:
        value = value * 256 + header[start + i]
    return value


def _starts_with(header: tf.Tensor, magic: bytes) -> tf.Tensor:
    return tf.reduce_all(tf.equal(header[: len(magic)], tf.constant(list(magic), tf.int64)))


def _bmp_size(header: tf.Tensor) -> tf.Tensor:
    """BMP: 16-bit sizes in the old 12-byte core header, signed 32-bit ones otherwise."""
    core = tf.stack([_number(header, 20, 2, False), _number(header, 18, 2, False)])
    signed = tf.stack([_number(header, 22, 4, False), _number(header, 18, 4, False)])
    signed = tf.abs(tf.where(signed >= 2**31, signed - 2**32, signed))  # top-down: height < 0
    return tf.where(tf.equal(_number(header, 14, 4, False), 12), core, signed)


def _webp_size(header: tf.Tensor) -> tf.Tensor:
    """WebP: the lossy (``VP8 ``), lossless (``VP8L``) or extended (``VP8X``) header's size."""
    lossless = _number(header, 21, 4, False)
    return tf.case(
        [
            (
                _starts_with(header[12:], b"VP8 "),
                lambda: (
                    tf.stack([_number(header, 28, 2, False), _number(header, 26, 2, False)]) % 16384
                ),
            ),
            (
                _starts_with(header[12:], b"VP8L"),
                lambda: tf.stack([lossless // 16384 % 16384, lossless % 16384]) + 1,
            ),
        ],
        default=lambda: (
            tf.stack([_number(header, 27, 3, False), _number(header, 24, 3, False)]) + 1
        ),
    )


def image_size(data: tf.Tensor) -> tf.Tensor:
    """The ``[height, width]`` an encoded image declares, read from its header only.

    Reads JPEG, PNG, GIF, BMP and WebP headers.

    Works eagerly and in graphs (``tf.data``, a SavedModel); nothing is decoded.

    Args:
        data: the encoded file, a scalar string tensor.

    Returns:
        int64 ``[2]``; ``[0, 0]`` for a file of no known format (decoding then fails).
    """
    head = tf.strings.substr(data, 0, _HEADER_BYTES)  # a shorter file gives a shorter string
    head = tf.strings.substr(tf.strings.join([head, "\0" * _HEADER_BYTES]), 0, _HEADER_BYTES)
    header = tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int64)
    header = tf.reshape(header, [_HEADER_BYTES])
    png = tf.stack([_number(header, 20, 4, True), _number(header, 16, 4, True)])
    gif = tf.stack([_number(header, 8, 2, False), _number(header, 6, 2, False)])
    return tf.case(
        [
            (
                _starts_with(header, b"\xff\xd8"),
                lambda: tf.cast(tf.io.extract_jpeg_shape(data)[:2], tf.int64),
            ),
            (_starts_with(header, _PNG), lambda: png),
            (_starts_with(header, b"GIF8"), lambda: gif),
            (_starts_with(header, b"BM"), lambda: _bmp_size(header)),
            (_starts_with(header[8:], b"WEBP"), lambda: _webp_size(header)),
        ],
        default=lambda: tf.zeros([2], tf.int64),
    )


def _too_large(size: tf.Tensor | np.ndarray, max_pixels: int) -> str:
    height, width = (int(x) for x in size)
    return (
        f"the image declares {height} x {width} = {height * width:,} pixels, more than the "
        f"limit of {max_pixels:,} (keras_vit.images.MAX_IMAGE_PIXELS); not decoded"
    )


def _op_message(error: tf.errors.OpError) -> str:
    """An op error's own sentence, without TensorFlow's node and op names."""
    text = re.sub(r"^\{\{[^}]*\}\}\s*", "", error.message.splitlines()[0])
    return re.sub(r"\s*\[Op:.*$", "", text)


def decode_image(data: tf.Tensor, max_pixels: int = MAX_IMAGE_PIXELS) -> tf.Tensor:
    """Decodes one JPEG/PNG/GIF/BMP file (a GIF's first frame) to RGB.

    Args:
        data: the encoded file, a scalar string tensor (may be symbolic).
        max_pixels: the most pixels (height x width) an image may declare.

    Returns:
        uint8 ``[height, width, 3]``.

    Raises:
        tf.errors.InvalidArgumentError: for an image over ``max_pixels`` (raised
            when the graph runs), checked from the header before decoding.
    """
    size = image_size(data)
    message = (
        f"image larger than the limit of {max_pixels} pixels "
        "(keras_vit.images.MAX_IMAGE_PIXELS), not decoded; its [height, width]:"
    )
    # Each side first: the product of two 32-bit sides can overflow int64.
    fits = tf.logical_and(tf.reduce_all(size <= max_pixels), size[0] * size[1] <= max_pixels)
    check = tf.debugging.Assert(fits, [message, size])
    with tf.control_dependencies([check]):
        data = tf.identity(data)
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
        ValueError: naming the file when it is missing, a folder, empty, not a
            decodable image, or over ``MAX_IMAGE_PIXELS``.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"cannot read image {path!r}: it is a folder, not an image file")
    try:
        data = tf.io.read_file(path)
        declared = image_size(data).numpy()
        if int(declared[0]) * int(declared[1]) > MAX_IMAGE_PIXELS:
            reason = _too_large(declared, MAX_IMAGE_PIXELS)
            raise ValueError(f"cannot read image {path!r}: {reason}")
        image = decode_image(data)
    except tf.errors.NotFoundError:
        raise ValueError(f"cannot read image {path!r}: no such file") from None
    except tf.errors.OpError as error:
        raise ValueError(f"cannot read image {path!r}: {_op_message(error)}") from None
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
