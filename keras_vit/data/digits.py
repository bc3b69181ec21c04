"""The embedded dataset: scikit-learn's handwritten digits, no download needed.

Example:
    >>> from keras_vit.data import load_digits
    >>> (x_train, y_train), (x_test, y_test) = load_digits()
    >>> x_train.shape, x_test.shape, float(x_train.min()), float(x_train.max())
    ((1437, 16, 16, 3), (360, 16, 16, 3), -1.0, 1.0)
"""

from __future__ import annotations

import numpy as np

DIGITS_CLASSES = tuple(str(i) for i in range(10))


def load_digits(
    upsample: int = 2, test_fraction: float = 0.2, seed: int = 0, pixels: bool = False
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The 1,797 8x8 digits as RGB images, split stratified.

    Args:
        upsample: integer pixel replication (2 gives 16x16 images).
        test_fraction: share of the held-out split.
        seed: split seed.
        pixels: return float32 pixel values in [0, 255] instead of [-1, 1].

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: float32 ``[n, 8u, 8u, 3]`` images
        and int64 labels.
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    digits = sklearn_digits()
    images = digits.images.astype(np.float32) / 16.0  # pixel values 0..16
    images = images * 255.0 if pixels else images * 2.0 - 1.0
    images = np.repeat(images[..., None], 3, axis=-1)
    images = np.kron(images, np.ones((1, upsample, upsample, 1), np.float32))
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    return (x_train, y_train), (x_test, y_test)
