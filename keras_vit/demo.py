"""``keras-vit demo``: the whole path on the embedded data, with no download.

Trains the digits ViT (the ``digits`` recipe of ``keras-vit train``), exports it into a Triton model
repository, serves it with a real ``tritonserver`` and classifies held-out
images through ``tritonclient`` over HTTP and gRPC.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile

import numpy as np

from keras_vit.data import DIGITS_CLASSES, load_digits
from keras_vit.serving import export_model
from keras_vit.serving.client import classify
from keras_vit.serving.server import TritonServer
from keras_vit.training import RunOptions, fit, get_recipe


def run(args: argparse.Namespace) -> int:
    recipe = dataclasses.replace(get_recipe("digits"), epochs=args.epochs)
    result = fit(recipe, RunOptions(out_dir=args.out))
    print(f"held-out accuracy: {result.accuracy:.3f}", flush=True)
    path = export_model(
        result.model, args.repo, "digits", labels=DIGITS_CLASSES, version=1, overwrite=True
    )
    print(f"exported {path}", flush=True)
    _, (x_test, y_test) = load_digits()
    import tensorflow as tf

    files = []
    folder = tempfile.mkdtemp(prefix="digits-")
    for i in range(args.images):
        pixels = np.round((x_test[i] + 1.0) * 127.5).astype(np.uint8)
        files.append(os.path.join(folder, f"digit{i}_label{y_test[i]}.png"))
        with open(files[-1], "wb") as f:
            f.write(tf.io.encode_png(pixels).numpy())
    with TritonServer(args.repo) as server:
        print(f"tritonserver ready: HTTP {server.http_url}, gRPC {server.grpc_url}", flush=True)
        for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
            tops = classify(files, url, "digits", protocol, top=1)
            correct = sum(top[0][2] == str(label) for top, label in zip(tops, y_test))
            shown = ", ".join(f"{label}->{top[0][2]}" for top, label in zip(tops, y_test))
            print(
                f"{protocol}: {correct}/{len(files)} held-out digits right through Triton ({shown})"
            )
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=60, help="training epochs (default 60)")
    parser.add_argument("--out", default="runs/digits", help="training outputs")
    parser.add_argument(
        "--repo", default="triton_repo", help="Triton model repository (default triton_repo)"
    )
    parser.add_argument(
        "--images", type=int, default=8, help="held-out images to classify through Triton"
    )
