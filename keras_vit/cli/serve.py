"""``keras-vit export``, ``serve`` and ``predict``: a model in Triton, and asking it."""

from __future__ import annotations

import argparse
import sys

from keras_vit.cli.model_args import add_model_arguments, load_model


def _export(args: argparse.Namespace) -> int:
    """``keras-vit export``: writes the model into a Triton model repository."""
    from keras_vit.serving import export_model

    path = export_model(
        load_model(args),
        args.repo,
        args.name,
        version=args.version,
        max_batch_size=args.max_batch_size,
        instances=args.instances,
        image_input=args.image_input,
        backend=args.backend,
        kind=args.kind,
        overwrite=args.overwrite,
    )
    print(f"exported {path}")
    return 0


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument(
        "--repo", default="triton_repo", help="model repository (default triton_repo)"
    )
    parser.add_argument("--name", required=True, help="model name in the repository")
    parser.add_argument(
        "--version", type=int, default=None, help="version number (default: next free)"
    )
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument(
        "--image-input",
        choices=("uint8", "jpeg"),
        default="uint8",
        help="Triton input: uint8 pixels or encoded image files",
    )
    parser.add_argument(
        "--backend",
        choices=("python", "tensorflow"),
        default="python",
        help="Triton backend: python (any Triton) or tensorflow (containers up to 25.02)",
    )
    parser.add_argument("--kind", choices=("KIND_CPU", "KIND_GPU"), default="KIND_CPU")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version")
    parser.set_defaults(run=_export)


def _serve(args: argparse.Namespace) -> int:
    """``keras-vit serve``: runs tritonserver, reloading a model that stops answering."""
    import time

    from keras_vit.serving.client import heal
    from keras_vit.serving.server import TritonServer

    server = TritonServer(
        args.repo, args.http_port, args.grpc_port, args.metrics_port, host=args.host
    )
    models = sorted(p.name for p in server.repo.iterdir() if (p / "config.pbtxt").exists())
    with server:
        print(
            f"serving {', '.join(models) or 'no models'} from {server.repo}: "
            f"HTTP {server.http_url}, gRPC {server.grpc_url} (Ctrl-C stops)",
            flush=True,
        )
        try:
            while True:
                time.sleep(args.check_every)
                for name in models:
                    if not heal(server.http_url, name):
                        message = f"model {name} does not answer after a reload"
                        print(message, file=sys.stderr, flush=True)
        except KeyboardInterrupt:
            print("stopping tritonserver", flush=True)
    return 0


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", default="triton_repo")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument(
        "--check-every",
        type=float,
        default=10.0,
        help="seconds between liveness checks (a real inference; reload on failure)",
    )
    parser.set_defaults(run=_serve)


def _predict(args: argparse.Namespace) -> int:
    """``keras-vit predict``: prints the top classes of image files, from a Triton server."""
    from keras_vit.serving.client import classify

    tops = classify(args.images, args.url, args.name, args.protocol, args.top)
    for path, top in zip(args.images, tops):
        print(path + ": " + ", ".join(f"{label} ({score:.2f})" for score, _, label in top))
    return 0


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+")
    parser.add_argument(
        "--url", default="127.0.0.1:8000", help="server address (HTTP 8000, gRPC 8001)"
    )
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http")
    parser.add_argument("--name", default="vit", help="model name in the repository")
    parser.add_argument("--top", type=int, default=5)
    parser.set_defaults(run=_predict)


# Command -> (help line, function adding its arguments and its ``run``).
COMMANDS = {
    "export": (
        "export a model as a SavedModel into a Triton model repository",
        _export_arguments,
    ),
    "serve": ("run tritonserver on a model repository until Ctrl-C", _serve_arguments),
    "predict": ("classify image files through a running Triton server", _predict_arguments),
}
