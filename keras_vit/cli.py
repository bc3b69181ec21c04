"""The ``keras-vit`` command line.

``keras-vit demo`` is the main job: train on the embedded digits, export,
serve through Triton, classify; ``keras-vit train`` trains or fine-tunes with
a named recipe on any strategy, ``keras-vit evaluate`` measures top-1/top-5
accuracy, ``keras-vit fewshot`` the paper's few-shot linear accuracy,
``keras-vit models`` lists the variants and their named checkpoints,
``keras-vit classify`` runs a model on image files, ``keras-vit analyze``
draws what the model attends to.
"""

from __future__ import annotations

import argparse
import sys

from keras_vit import demo, train
from keras_vit.training.fewshot import L2_REG, SHOTS
from keras_vit.training.strategy import STRATEGIES


def _models(args: argparse.Namespace) -> int:
    from keras_vit.models.registry import constructor_name
    from keras_vit.models.weights import NAMED_WEIGHTS
    from keras_vit.variants import ALL_VARIANTS, display_name

    for variant in ALL_VARIANTS:
        names = ", ".join(sorted(NAMED_WEIGHTS.get(variant, {}))) or "-"
        print(f"{display_name(variant):16s} {constructor_name(variant):14s} {names}")
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


def _evaluate(args: argparse.Namespace) -> int:
    from keras_vit.data import load_source
    from keras_vit.training import evaluate_split
    from keras_vit.training.strategy import make_strategy

    strategy = make_strategy(args.strategy, args.tpu)
    source = load_source(args.dataset, args.data_dir, download=not args.no_download)
    with strategy.scope():
        model = _load_model(args)
    metrics = evaluate_split(model, source, args.split, args.batch_size, strategy)
    print(
        f"{source.name} {args.split}: {int(metrics['examples'])} images, "
        f"top-1 accuracy {metrics['accuracy']:.4f}, top-5 accuracy {metrics['top5']:.4f}, "
        f"loss {metrics['loss']:.4f}"
    )
    return 0


def _fewshot(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from keras_vit.data import load_source
    from keras_vit.training.fewshot import extract_features, fewshot

    model = _load_model(args)
    source = load_source(args.dataset, args.data_dir, download=not args.no_download)
    train = extract_features(model, source, args.train_split, args.batch_size)
    test = extract_features(model, source, args.eval_split, args.batch_size)
    results = fewshot(*train, *test, source.num_classes, args.shots, args.seeds, args.l2_reg)
    for shots, accuracies in results.items():
        print(
            f"{source.name} {shots}-shot: {np.mean(accuracies):.4f} "
            f"(+- {np.std(accuracies):.4f} over {len(accuracies)} seeds)"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({str(k): v for k, v in results.items()}, f)
    return 0


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


def _export(args: argparse.Namespace) -> int:
    from keras_vit.serving import export_model

    model = _load_model(args)
    path = export_model(
        model, args.repo, args.name, version=args.version, max_batch_size=args.max_batch_size,
        instances=args.instances, image_input=args.image_input, backend=args.backend,
        kind=args.kind, overwrite=args.overwrite,
    )  # fmt: skip
    print(f"exported {path}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import time

    from keras_vit.serving.client import heal
    from keras_vit.serving.server import TritonServer

    server = TritonServer(
        args.repo, args.http_port, args.grpc_port, args.metrics_port, host=args.host
    )
    models = sorted(p.name for p in server.repo.iterdir() if (p / "config.pbtxt").exists())
    with server:
        print(f"serving {', '.join(models) or 'no models'} from {server.repo}: "
              f"HTTP {server.http_url}, gRPC {server.grpc_url} (Ctrl-C stops)", flush=True)  # fmt: skip
        try:
            while True:
                time.sleep(args.check_every)
                for name in models:
                    if not heal(server.http_url, name):
                        print(
                            f"model {name} does not answer after a reload",
                            file=sys.stderr,
                            flush=True,
                        )
        except KeyboardInterrupt:
            print("stopping tritonserver", flush=True)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from keras_vit.serving.client import classify

    for path, top in zip(
        args.images, classify(args.images, args.url, args.name, args.protocol, args.top)
    ):
        print(path + ": " + ", ".join(f"{label} ({score:.2f})" for score, _, label in top))
    return 0


def _data_arguments(parser: argparse.ArgumentParser, required_model: bool) -> None:
    parser.add_argument("--model", required=required_model,
                        help="a saved .keras model, or a variant name (ViT-B/16) with --weights")  # fmt: skip
    parser.add_argument("--weights", default=None, help="checkpoint file or named checkpoint")
    parser.add_argument(
        "--image-size", type=int, default=None, help="input size for a variant name"
    )
    parser.add_argument("--dataset", default="digits",
                        help="'digits', a TFDS name or an image folder (default digits)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--data-dir", default=None, help="TensorFlow Datasets data folder")
    parser.add_argument("--no-download", action="store_true", help="never download a dataset")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-vit", description="Vision Transformers for Keras 3."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser(
        "demo",
        help="the main job: train on the embedded digits, export, serve through Triton and "
        "classify held-out digits (no download)",
    )
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(run=demo.run)
    train_parser = commands.add_parser(
        "train",
        help="train or fine-tune with a named recipe on one device, GPUs, hosts or a TPU "
        "(default: the digits main job, no download)",
        description=train.__doc__.split("Example:")[0].replace("``", ""),
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
    evaluate = commands.add_parser(
        "evaluate", help="top-1 and top-5 accuracy of a model on a dataset split"
    )
    _data_arguments(evaluate, required_model=True)
    evaluate.add_argument("--split", default="test", help="split to evaluate (default test)")
    evaluate.add_argument("--strategy", default="auto", choices=STRATEGIES)
    evaluate.add_argument("--tpu", default=None, help="TPU name or address")
    evaluate.set_defaults(run=_evaluate)
    fewshot = commands.add_parser(
        "fewshot",
        help="few-shot linear accuracy of frozen features (regularised least squares, "
        "as the paper and big_vision)",
    )
    _data_arguments(fewshot, required_model=True)
    fewshot.add_argument("--train-split", default="train", help="split the shots come from")
    fewshot.add_argument("--eval-split", default="test", help="split accuracy is measured on")
    fewshot.add_argument("--shots", type=int, nargs="+", default=list(SHOTS))
    fewshot.add_argument("--seeds", type=int, default=3, help="random draws of the shots")
    fewshot.add_argument("--l2-reg", type=float, default=L2_REG, help="L2 regularisation")
    fewshot.add_argument("--json", default=None, help="also write the accuracies here")
    fewshot.set_defaults(run=_fewshot)
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

    export = commands.add_parser(
        "export", help="export a model as a SavedModel into a Triton model repository"
    )
    export.add_argument(
        "--model", required=True, help="variant name (ViT-B/16) or a saved .keras model"
    )
    export.add_argument("--weights", default=None, help="checkpoint file or named checkpoint")
    export.add_argument(
        "--image-size", type=int, default=None, help="input size for a variant name"
    )
    export.add_argument(
        "--repo", default="triton_repo", help="model repository (default triton_repo)"
    )
    export.add_argument("--name", required=True, help="model name in the repository")
    export.add_argument(
        "--version", type=int, default=None, help="version number (default: next free)"
    )
    export.add_argument("--max-batch-size", type=int, default=32)
    export.add_argument("--instances", type=int, default=1)
    export.add_argument("--image-input", choices=("uint8", "jpeg"), default="uint8",
                        help="Triton input: uint8 pixels or encoded image files")  # fmt: skip
    export.add_argument("--backend", choices=("python", "tensorflow"), default="python",
                        help="Triton backend: python (any Triton) or tensorflow (containers up to 25.02)")  # fmt: skip
    export.add_argument("--kind", choices=("KIND_CPU", "KIND_GPU"), default="KIND_CPU")
    export.add_argument("--overwrite", action="store_true", help="replace an existing version")
    export.set_defaults(run=_export)

    serve = commands.add_parser("serve", help="run tritonserver on a model repository until Ctrl-C")
    serve.add_argument("--repo", default="triton_repo")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--http-port", type=int, default=8000)
    serve.add_argument("--grpc-port", type=int, default=8001)
    serve.add_argument("--metrics-port", type=int, default=8002)
    serve.add_argument("--check-every", type=float, default=10.0,
                       help="seconds between liveness checks (a real inference; reload on failure)")  # fmt: skip
    serve.set_defaults(run=_serve)

    predict = commands.add_parser(
        "predict", help="classify image files through a running Triton server"
    )
    predict.add_argument("images", nargs="+")
    predict.add_argument(
        "--url", default="127.0.0.1:8000", help="server address (HTTP 8000, gRPC 8001)"
    )
    predict.add_argument("--protocol", choices=("http", "grpc"), default="http")
    predict.add_argument("--name", default="vit", help="model name in the repository")
    predict.add_argument("--top", type=int, default=5)
    predict.set_defaults(run=_predict)
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
