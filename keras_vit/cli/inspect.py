"""``keras-vit models``, ``classify`` and ``analyze``: the variants, and a model on image files."""

from __future__ import annotations

import argparse

from keras_vit.cli.model_args import add_model_arguments, load_model


def _models(args: argparse.Namespace) -> int:
    """``keras-vit models``: prints each variant, its constructor and its named checkpoints."""
    from keras_vit.models.registry import constructor_name
    from keras_vit.models.weights import NAMED_WEIGHTS
    from keras_vit.variants import ALL_VARIANTS, display_name

    for variant in ALL_VARIANTS:
        names = ", ".join(sorted(NAMED_WEIGHTS.get(variant, {}))) or "-"
        print(f"{display_name(variant):16s} {constructor_name(variant):14s} {names}")
    return 0


def _models_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(run=_models)


def _classify(args: argparse.Namespace) -> int:
    """``keras-vit classify``: prints the top classes of each image file."""
    import numpy as np

    from keras_vit.imagenet import decode_predictions
    from keras_vit.images import load_image

    model = load_model(args)
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


def _classify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", help="JPEG/PNG files")
    add_model_arguments(parser, default="ViT-B/16", default_weights="augreg_in21k_ft_in1k")
    parser.add_argument("--top", type=int, default=5, help="classes to print per image")
    parser.set_defaults(run=_classify)


def _analyze(args: argparse.Namespace) -> int:
    """``keras-vit analyze``: writes the attention and embedding analyses of image files."""
    import os

    import numpy as np

    from keras_vit.analysis import analyze
    from keras_vit.images import load_image

    model = load_model(args)
    size = tuple(model.input_shape[1:3])
    images = np.stack([load_image(path, size) for path in args.images])
    names = [os.path.basename(path) for path in args.images]
    analyze(model, images, args.out, names)
    print(f"wrote the analyses of {len(images)} images to {args.out}/")
    return 0


def _analyze_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--images", nargs="+", required=True, help="JPEG/PNG files")
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(run=_analyze)


# Command -> (help line, function adding its arguments and its ``run``).
COMMANDS = {
    "models": ("list model variants and named checkpoints", _models_arguments),
    "classify": ("classify image files with a model", _classify_arguments),
    "analyze": (
        "attention rollout, mean attention distance, position-embedding similarity and "
        "embedding filters as PNG figures and JSON/CSV numbers",
        _analyze_arguments,
    ),
}
