"""``keras-vit demo``: the whole path on the embedded data, with no download.

Trains the digits ViT (the ``digits`` recipe of ``keras-vit train``), exports it
into a Triton model repository, serves it with a real ``tritonserver`` and
classifies held-out images through ``tritonclient`` over HTTP and gRPC.
"""

from __future__ import annotations

import argparse


def _held_out_files(count: int) -> tuple[list[str], list[int]]:
    """The first ``count`` held-out digits as PNG files, and their labels."""
    import os
    import tempfile

    import tensorflow as tf

    from keras_vit.data import load_digits

    _, (x_test, y_test) = load_digits(form="uint8")
    folder = tempfile.mkdtemp(prefix="digits-")
    files = [os.path.join(folder, f"digit{i}_label{y_test[i]}.png") for i in range(count)]
    for path, pixels in zip(files, x_test):
        tf.io.write_file(path, tf.io.encode_png(pixels))
    return files, y_test[:count].tolist()


def _demo(args: argparse.Namespace) -> int:
    """``keras-vit demo``: train, export, serve, and classify through Triton."""
    import dataclasses

    from keras_vit.data import DIGITS_CLASSES
    from keras_vit.serving import export_model
    from keras_vit.serving.client import classify
    from keras_vit.serving.server import TritonServer
    from keras_vit.training import RunOptions, fit, get_recipe

    recipe = dataclasses.replace(get_recipe("digits"), epochs=args.epochs)
    result = fit(recipe, RunOptions(out_dir=args.out))
    print(f"held-out accuracy: {result.accuracy:.3f}", flush=True)
    path = export_model(
        result.model, args.repo, "digits", labels=DIGITS_CLASSES, version=1, overwrite=True
    )
    print(f"exported {path}", flush=True)
    files, labels = _held_out_files(args.images)
    with TritonServer(args.repo) as server:
        print(f"tritonserver ready: HTTP {server.http_url}, gRPC {server.grpc_url}", flush=True)
        for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
            tops = classify(files, url, "digits", protocol, top=1)
            correct = sum(top[0][2] == str(label) for top, label in zip(tops, labels))
            shown = ", ".join(f"{label}->{top[0][2]}" for top, label in zip(tops, labels))
            print(
                f"{protocol}: {correct}/{len(files)} held-out digits right through Triton ({shown})"
            )
    return 0


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=60, help="training epochs (default 60)")
    parser.add_argument("--out", default="runs/digits", help="training outputs")
    parser.add_argument(
        "--repo", default="triton_repo", help="Triton model repository (default triton_repo)"
    )
    parser.add_argument(
        "--images", type=int, default=8, help="held-out images to classify through Triton"
    )
    parser.set_defaults(run=_demo)


# Command -> (help line, function adding its arguments and its ``run``).
COMMANDS = {
    "demo": (
        "the main job: train on the embedded digits, export, serve through Triton and "
        "classify held-out digits (no download)",
        _demo_arguments,
    ),
}
