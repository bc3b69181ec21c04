"""The ``keras-vit`` command line.

``keras-vit train`` trains on the embedded digits data (the main job),
``keras-vit models`` lists the variants and their named checkpoints,
``keras-vit classify`` runs a model on image files, ``keras-vit analyze``
draws what the model attends to.
"""

from __future__ import annotations

import argparse
import sys

from keras_vit import train


def _models(args: argparse.Namespace) -> int:
    from keras_vit.models.registry import VARIANT_CONSTRUCTORS
    from keras_vit.models.weights import NAMED_WEIGHTS
    from keras_vit.variants import parse_model_name

    for function in VARIANT_CONSTRUCTORS.values():
        display = function.__doc__.split(":", 1)[0]
        variant = parse_model_name(display)[1]
        names = ", ".join(sorted(NAMED_WEIGHTS.get(variant, {}))) or "-"
        print(f"{display:16s} {function.__name__:14s} {names}")
    return 0


def _classify(args: argparse.Namespace) -> int:
    import numpy as np

    from keras_vit import decode_predictions
    from keras_vit.images import load_image
    from keras_vit.models import create_model

    model = create_model(args.model, weights=args.weights)
    size = tuple(model.input_shape[1:3])
    images = np.stack([load_image(path, size) for path in args.images])
    logits = model.predict(images, verbose=0)
    if logits.shape[1] == 1000:
        for path, top in zip(args.images, decode_predictions(logits, top=args.top)):
            print(path + ": " + ", ".join(f"{label} ({score:.2f})" for _, label, score in top))
    else:
        for path, row in zip(args.images, logits):
            best = np.argsort(-row)[: args.top]
            print(path + ": " + ", ".join(f"class {i} ({row[i]:.2f})" for i in best))
    return 0


def _load_model(args: argparse.Namespace):
    """A saved ``.keras`` model, or a variant built by name (with ``--weights``)."""
    import keras

    from keras_vit.models import create_model

    if args.model.endswith(".keras"):
        return keras.saving.load_model(args.model)
    kwargs = {"image_size": args.image_size} if getattr(args, "image_size", None) else {}
    return create_model(args.model, weights=args.weights, **kwargs)


def _analyze(args: argparse.Namespace) -> int:
    import os

    import numpy as np

    from keras_vit.analysis import analyze
    from keras_vit.images import load_image

    model = _load_model(args)
    size = tuple(model.input_shape[1:3])
    images = np.stack([load_image(path, size) for path in args.images])
    names = [os.path.basename(path) for path in args.images]
    analyze(model, images, args.out, names)
    print(f"wrote the analyses of {len(images)} images to {args.out}/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-vit", description="Vision Transformers for Keras 3."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser(
        "train", help="train a ViT on the embedded digits data (no download) and print its accuracy"
    )
    train.add_arguments(train_parser)
    train_parser.set_defaults(run=train.run)
    commands.add_parser("models", help="list model variants and named checkpoints").set_defaults(
        run=_models
    )
    classify = commands.add_parser("classify", help="classify image files with a model")
    classify.add_argument("images", nargs="+", help="JPEG/PNG files")
    classify.add_argument(
        "--model", default="ViT-B/16", help="variant name, e.g. ViT-B/16 or BiT-R50x1"
    )
    classify.add_argument(
        "--weights",
        default="augreg_in21k_ft_in1k",
        help="checkpoint file or named checkpoint (downloaded once)",
    )
    classify.add_argument("--top", type=int, default=5, help="classes to print per image")
    classify.set_defaults(run=_classify)
    analyze = commands.add_parser(
        "analyze",
        help="attention rollout, mean attention distance, position-embedding similarity and "
        "embedding filters as PNG figures and JSON/CSV numbers",
    )
    analyze.add_argument(
        "--model", required=True, help="variant name (ViT-B/16) or a saved .keras model"
    )
    analyze.add_argument("--weights", default=None, help="checkpoint file or named checkpoint")
    analyze.add_argument(
        "--image-size", type=int, default=None, help="input size for a variant name"
    )
    analyze.add_argument("--images", nargs="+", required=True, help="JPEG/PNG files")
    analyze.add_argument("--out", required=True, help="output folder")
    analyze.set_defaults(run=_analyze)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:
        print(f"keras-vit {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
