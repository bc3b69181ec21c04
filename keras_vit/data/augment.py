"""Per-image preprocessing: decode, crop, flip, resize, scale to [-1, 1].

Random choices are stateless and keyed by ``(seed, example index)``, so an
example gets the same crop and flip whatever the strategy, the number of
workers, or whether the run was resumed from a checkpoint.

Example:
    >>> import tensorflow as tf
    >>> from keras_vit.data.augment import Augmentation, preprocess
    >>> image = tf.fill([40, 60, 3], 255.0)
    >>> out = preprocess(image, "pixels", 32, Augmentation(), tf.constant([0, 7], tf.int64))
    >>> out.shape, float(tf.reduce_max(out))
    (TensorShape([32, 32, 3]), 1.0)
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from keras_vit.imagenet import preprocess_input
from keras_vit.images import decode_image, resize

CROPS = ("inception", "resize_crop", "none")


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Training augmentation; evaluation always resizes the whole image.

    Attributes:
        crop: ``"inception"`` (official ViT: a random box of 5-100% of the area,
            aspect ratio 3/4-4/3, resized), ``"resize_crop"`` (BiT: resize to
            ``resize_size``, then a random square crop) or ``"none"`` (resize).
        flip: random horizontal flips.
        area_range: the inception crop's area range.
        resize_size: the side resized to before ``"resize_crop"``.
        randaugment: ``(num_ops, factor)`` of ``keras.layers.RandAugment``, or None.
        mixup: mixup alpha (``keras.layers.MixUp``); 0 for none.
    """

    crop: str = "inception"
    flip: bool = True
    area_range: tuple[float, float] = (0.05, 1.0)
    resize_size: int | None = None
    randaugment: tuple[int, float] | None = None
    mixup: float = 0.0

    def __post_init__(self):
        if self.crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}; got {self.crop!r}")
        if self.crop == "resize_crop" and not self.resize_size:
            raise ValueError('crop="resize_crop" needs resize_size')


NO_AUGMENTATION = Augmentation(crop="none", flip=False)


def decode(image: tf.Tensor, kind: str) -> tf.Tensor:
    """A record's image as pixels.

    Args:
        image: the record's image: a file path, an encoded file or pixels.
        kind: which of those (``keras_vit.data.sources.KINDS``).

    Returns:
        float32 ``[h, w, 3]`` pixels in [0, 255].
    """
    if kind == "path":
        image = tf.io.read_file(image)
    if kind in ("path", "encoded"):
        image = decode_image(image)
    return tf.cast(image, tf.float32)


def inception_crop(
    image: tf.Tensor,
    size: int,
    seed: tf.Tensor,
    area_range: tuple[float, float] = (0.05, 1.0),
) -> tf.Tensor:
    """A random box of the image, resized: the official ViT's training crop.

    Args:
        image: ``[h, w, 3]`` pixels.
        size: output side.
        seed: stateless seed ``[2]``.
        area_range: the box's share of the image area.

    Returns:
        float32 ``[size, size, 3]``.
    """
    begin, box, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        tf.zeros([0, 0, 4], tf.float32),
        seed=seed,
        area_range=area_range,
        min_object_covered=0.0,
        use_image_if_no_bounding_boxes=True,
    )
    return resize(tf.slice(image, begin, box), (size, size))


def preprocess(
    image: tf.Tensor,
    kind: str,
    size: int,
    augmentation: Augmentation | None,
    seed: tf.Tensor | None,
) -> tf.Tensor:
    """Decodes one record's image and makes it a ``[size, size, 3]`` float image in [-1, 1].

    Args:
        image: the record's image (see ``keras_vit.data.sources.KINDS``).
        kind: the record kind.
        size: output side.
        augmentation: training augmentation, or None for evaluation (plain resize).
        seed: a stateless seed ``[2]`` (training only).

    Returns:
        float32 ``[size, size, 3]`` in [-1, 1] (``preprocess_input``).
    """
    image = decode(image, kind)
    if augmentation is None or augmentation.crop == "none":
        image = resize(image, (size, size))
    elif augmentation.crop == "inception":
        image = inception_crop(image, size, seed, augmentation.area_range)
    else:
        side = augmentation.resize_size
        image = resize(image, (side, side))
        image = tf.image.stateless_random_crop(image, [size, size, 3], seed)
    if augmentation is not None and augmentation.flip:
        flip_seed = tf.random.experimental.stateless_fold_in(seed, 1)
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    return preprocess_input(image)
