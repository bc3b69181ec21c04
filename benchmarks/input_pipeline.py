"""Throughput of the training input pipeline (decode, Inception crop, flip, batch) on JPEG files.

Writes a folder of random JPEGs (ImageNet-like 500x375), then times
``keras_vit.data.train_dataset`` at 224 px, so the figure can be set against a
training step's images per second (README, "Kernels and speed").

    python benchmarks/input_pipeline.py --images 512 --batches 40
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from keras_vit.data import Augmentation, load_source, train_dataset


def write_folder(root: str, count: int, seed: int = 0) -> None:
    """Writes ``count`` random 500x375 JPEGs into ``root/train/class{0..9}/``.

    Args:
        root: the image folder.
        count: how many images.
        seed: the pixels' seed.
    """
    rng = np.random.default_rng(seed)
    for i in range(count):
        folder = os.path.join(root, "train", f"class{i % 10}")
        os.makedirs(folder, exist_ok=True)
        pixels = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)
        with open(os.path.join(folder, f"{i}.jpg"), "wb") as f:
            f.write(tf.io.encode_jpeg(pixels, quality=90).numpy())


def main() -> None:
    """Times the pipeline and prints images per second."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="pipeline-")
    write_folder(root, args.images)
    source = load_source(root)
    data = train_dataset(
        source, "train", args.image_size, args.batch_size, seed=0, augmentation=Augmentation()
    )
    iterator = iter(data)
    next(iterator)  # warm-up: the first batch fills the shuffle buffer
    start = time.perf_counter()
    for _ in range(args.batches):
        next(iterator)
    seconds = time.perf_counter() - start
    rate = args.batches * args.batch_size / seconds
    print(
        f"{rate:.0f} images/s at {args.image_size} px (JPEG 500x375, Inception crop + flip, "
        f"{os.cpu_count()} CPU cores)"
    )


if __name__ == "__main__":
    main()
