"""The embedded dataset: scikit-learn's handwritten digits, no download needed.

Example:
    >>> from keras_vit.data import load_digits
    >>> (x_train, y_train), (x_test, y_test) = load_digits()
    >>> x_train.shape, x_test.shape, float(x_train.min()), float(x_train.max())
    ((1437, 16, 16, 3), (360, 16, 16, 3), -1.0, 1.0)
"""

from __future__ import annotations

import numpy as np

from keras_vit.imagenet import preprocess_input

DIGITS_CLASSES = tuple(str(i) for i in range(10))
# What load_digits returns: model inputs, pixel values, or pixels as a file holds them.
FORMS = ("model", "pixels", "uint8")


def load_digits(
    upsample: int = 2, test_fraction: float = 0.2, seed: int = 0, form: str = "model"
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The 1,797 8x8 digits as RGB images, split stratified.

    Args:
        upsample: integer pixel replication (2 gives 16x16 images).
        test_fraction: share of the held-out split.
        seed: split seed.
        form: ``"model"``: float32 in [-1, 1] (``preprocess_input`` of the
            pixels); ``"pixels"``: float32 pixel values in [0, 255] (the 17 grey
            levels scaled, not whole numbers); ``"uint8"``: those rounded, as an
            image file holds them and a uint8 (served) model takes them.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: ``[n, 8u, 8u, 3]`` images in
        ``form`` and int64 labels.

    Raises:
        ValueError: for an unknown ``form``.
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}; got {form!r}")
    digits = sklearn_digits()
    images = digits.images.astype(np.float32) / 16.0 * 255.0  # grey levels 0..16
    images = np.repeat(images[..., None], 3, axis=-1)
    images = np.kron(images, np.ones((1, upsample, upsample, 1), np.float32))
    if form == "model":
        images = preprocess_input(images)
    elif form == "uint8":
        images = np.round(images).astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    return (x_train, y_train), (x_test, y_test)
