"""Where training data comes from: the embedded digits, TFDS datasets by name, image folders.

A ``Source`` lists a dataset's classes and splits; each split gives a
``tf.data.Dataset`` of ``(image, label)`` records in a fixed order, where the
image is a file path, an encoded file or pixels (``Source.kind``). Decoding and
augmentation happen later, in ``keras_vit.data.pipeline``, so that shuffling
and skipping touch only the cheap records.

Example:
    >>> from keras_vit.data import load_source
    >>> source = load_source("digits")
    >>> source.num_classes, source.split("train").num_examples, source.split("test").num_examples
    (10, 1437, 360)
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from keras_vit.data.digits import DIGITS_CLASSES, load_digits

logger = logging.getLogger("keras_vit")

KINDS = ("pixels", "encoded", "path")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
# The first bytes of the formats tf.io.decode_image reads.
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")
# Evaluation split names of a folder, in the order they are looked for.
FOLDER_EVAL_SPLITS = ("test", "val", "validation")


class DataError(ValueError):
    """A dataset that cannot be used: unknown name, empty or unreadable folder, missing split."""


@dataclasses.dataclass(frozen=True)
class Split:
    """One split: a function making its records and their count."""

    records: Callable[[], tf.data.Dataset]
    num_examples: int


@dataclasses.dataclass(frozen=True)
class Source:
    """A dataset's classes and splits.

    Attributes:
        name: ``"digits"``, the TFDS name or the folder.
        class_names: one name per class, in label order.
        splits: split name -> ``Split``.
        kind: what a record's image is: ``"pixels"`` (an ``[h, w, 3]`` array in
            [0, 255]), ``"encoded"`` (JPEG/PNG/GIF/BMP bytes) or ``"path"``.
        image_size: the images' side when they all share one (digits), else None.
        sliced: for TFDS, makes splits such as ``"train[:98%]"`` or ``"train+validation"``.
    """

    name: str
    class_names: tuple[str, ...]
    splits: dict[str, Split]
    kind: str
    image_size: int | None = None
    sliced: Callable[[str], Split] | None = None

    @property
    def num_classes(self) -> int:
        """How many classes there are."""
        return len(self.class_names)

    def split(self, name: str) -> Split:
        """A split by name.

        Args:
            name: a split (``"train"``), or for TFDS a slice or union of splits
                (``"train[:98%]"``, ``"train+validation"``).

        Returns:
            The split.

        Raises:
            DataError: naming the splits there are.
        """
        if name in self.splits:
            return self.splits[name]
        parts = [part.split("[", 1)[0] for part in name.split("+")]
        if self.sliced is not None and all(part in self.splits for part in parts):
            return self.sliced(name)
        raise DataError(
            f"dataset {self.name!r} has no split {name!r}; it has: {', '.join(self.splits)}"
        )


def digits_source() -> Source:
    """scikit-learn's handwritten digits (shipped with scikit-learn), 16x16, fixed split.

    Returns:
        The ``"pixels"`` source with ``"train"`` and ``"test"`` splits.
    """
    (x_train, y_train), (x_test, y_test) = load_digits(form="pixels")

    def split(images: np.ndarray, labels: np.ndarray) -> Split:
        return Split(
            lambda: tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int64))),
            len(labels),
        )

    return Source(
        "digits",
        DIGITS_CLASSES,
        {"train": split(x_train, y_train), "test": split(x_test, y_test)},
        "pixels",
        image_size=16,
    )


def _is_image(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(8)
    return any(head.startswith(magic) for magic in _MAGIC)


def _folder_split(folder: str, class_names: tuple[str, ...]) -> tuple[Split, np.ndarray]:
    """A folder's images as a split, and how many images each class has."""
    paths, labels, skipped = [], [], []
    for label, name in enumerate(class_names):
        directory = os.path.join(folder, name)
        if not os.path.isdir(directory):
            continue
        for entry in sorted(os.listdir(directory)):
            path = os.path.join(directory, entry)
            if not entry.lower().endswith(IMAGE_EXTENSIONS) or not os.path.isfile(path):
                continue
            if _is_image(path):
                paths.append(path)
                labels.append(label)
            else:
                skipped.append(path)
    if skipped:
        shown = ", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        logger.warning(
            "%s: skipped %d of %d files that are not JPEG/PNG/GIF/BMP images: %s",
            folder,
            len(skipped),
            len(skipped) + len(paths),
            shown,
        )
    if not paths:
        raise DataError(f"no readable images in {folder!r} (expected <class>/*.jpg or *.png)")
    paths_array, labels_array = np.array(paths), np.array(labels, np.int64)
    split = Split(
        lambda: tf.data.Dataset.from_tensor_slices((paths_array, labels_array)), len(paths)
    )
    return split, np.bincount(labels_array, minlength=len(class_names))


def _check_classes(root: str, class_names: tuple[str, ...], counts: dict[str, np.ndarray]) -> None:
    """Refuses fewer than two trained classes, or evaluation images of an untrained class."""
    trained = counts["train"] > 0
    if trained.sum() < 2:
        names = ", ".join(c for c, t in zip(class_names, trained, strict=True) if t)
        raise DataError(
            f"image folder {root!r} has training images of one class only ({names}); "
            "a classifier needs at least two (train/<class>/*)"
        )
    for name, count in counts.items():
        untrained = [c for c, n, t in zip(class_names, count, trained, strict=True) if n and not t]
        if untrained:
            raise DataError(
                f"{os.path.join(root, name)!r} has images of classes with no training images "
                f"in train/: {', '.join(untrained)}"
            )
    empty = [c for c, t in zip(class_names, trained, strict=True) if not t]
    if empty:
        logger.warning("%s: train/ classes with no images (never learned): %s", root, empty)


def folder_source(root: str) -> Source:
    """Images in ``root/train/<class>/*`` and ``root/test/<class>/*`` (or ``val/``).

    Classes are the sub-folders of ``train/`` in sorted order. Files that are
    not images (by their first bytes) are skipped with a warning that counts them.

    Args:
        root: the folder.

    Returns:
        A ``"path"`` source with a ``"train"`` split and each evaluation split
        (``FOLDER_EVAL_SPLITS``) that has a folder.

    Raises:
        DataError: for a missing ``train/``, no class folders, no readable
            images, fewer than two classes with training images, or an
            evaluation class that ``train/`` lacks or has no images of.
    """
    train = os.path.join(root, "train")
    if not os.path.isdir(train):
        raise DataError(f"image folder {root!r} has no train/ folder (expected train/<class>/*)")
    class_names = tuple(
        sorted(d for d in os.listdir(train) if os.path.isdir(os.path.join(train, d)))
    )
    if not class_names:
        raise DataError(f"{train!r} has no class folders (expected train/<class>/*.jpg)")
    splits, counts = {}, {}
    splits["train"], counts["train"] = _folder_split(train, class_names)
    for name in FOLDER_EVAL_SPLITS:
        folder = os.path.join(root, name)
        if os.path.isdir(folder):
            # A class the training data never shows cannot be learned.
            unknown = sorted(
                d
                for d in os.listdir(folder)
                if os.path.isdir(os.path.join(folder, d)) and d not in class_names
            )
            if unknown:
                raise DataError(f"{folder!r} has classes that train/ lacks: {', '.join(unknown)}")
            splits[name], counts[name] = _folder_split(folder, class_names)
    _check_classes(root, class_names, counts)
    return Source(os.path.basename(os.path.normpath(root)), class_names, splits, "path")


def tfds_source(
    name: str, data_dir: str | None = None, manual_dir: str | None = None, download: bool = True
) -> Source:
    """A TensorFlow Datasets dataset with ``image`` and ``label`` features.

    Args:
        name: the TFDS name, e.g. ``"cifar10"`` or ``"oxford_iiit_pet"``.
        data_dir: the TFDS data folder (TFDS's default when None).
        manual_dir: where manually downloaded files are (``imagenet2012``).
        download: prepare the dataset (download and convert) when it is absent.

    Returns:
        An ``"encoded"`` source with the dataset's splits (and slices of them).

    Raises:
        DataError: for an unknown name, a dataset without image and label, or an
            absent dataset with ``download=False``.
    """
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise DataError(
            f"unknown dataset {name!r}: not 'digits', not an image folder and not a TFDS "
            f"dataset ({str(error).splitlines()[0]})"
        ) from None
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise DataError(f"TFDS dataset {name!r} has no 'image' and 'label' features")
    if not builder.is_prepared():
        if not download:
            raise DataError(f"TFDS dataset {name!r} is not prepared in {builder.data_dir!r}")
        folder = os.path.dirname(builder.data_dir)
        existed = os.path.exists(folder)
        try:
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
            )
        except Exception as error:
            if not existed:  # leave no half-prepared dataset behind
                shutil.rmtree(folder, ignore_errors=True)
            raise DataError(f"cannot prepare TFDS dataset {name!r}: {error}") from error

    def split(split_name: str) -> Split:
        def records() -> tf.data.Dataset:
            data = builder.as_dataset(
                split=split_name,
                decoders={"image": tfds.decode.SkipDecoding()},
                shuffle_files=False,
                read_config=tfds.ReadConfig(add_tfds_id=False),
            )
            return data.map(lambda example: (example["image"], example["label"]))

        return Split(records, builder.info.splits[split_name].num_examples)

    splits = {s: split(s) for s in builder.info.splits}
    height, width = features["image"].shape[:2]
    size = min(height, width) if height and width else None  # known for CIFAR, MNIST, ...
    return Source(
        name, tuple(features["label"].names), splits, "encoded", image_size=size, sliced=split
    )


def load_source(
    spec: str = "digits",
    data_dir: str | None = None,
    manual_dir: str | None = None,
    download: bool = True,
) -> Source:
    """A dataset by name: ``"digits"``, an image folder's path, or a TFDS name.

    Args:
        spec: ``"digits"`` (embedded), a folder with ``train/<class>/`` inside,
            or a TFDS name (optionally ``"tfds:name"``).
        data_dir: TFDS data folder.
        manual_dir: TFDS manual-download folder.
        download: whether an absent TFDS dataset may be downloaded.

    Returns:
        The dataset's ``Source``.

    Raises:
        DataError: naming what is wrong.
    """
    if spec == "digits":
        return digits_source()
    if spec.startswith("tfds:"):
        return tfds_source(spec[5:], data_dir, manual_dir, download)
    if os.path.isdir(spec):
        return folder_source(spec)
    if os.sep in spec or spec.startswith("."):
        raise DataError(f"image folder {spec!r} does not exist")
    return tfds_source(spec, data_dir, manual_dir, download)
