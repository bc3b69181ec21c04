"""``keras-vit export``, ``serve`` and ``predict``: a model in Triton, and asking it."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import TYPE_CHECKING

from keras_vit.cli.model_args import add_model_arguments, load_model

if TYPE_CHECKING:
    from keras_vit.serving.server import TritonServer


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
        format=args.format,
        accelerator=args.accelerator,
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
    parser.add_argument(
        "--format",
        choices=("savedmodel", "onnx"),
        default="savedmodel",
        help="savedmodel (Python backend, TensorFlow) or onnx (ONNX Runtime backend in a "
        "Triton container; onnxruntime in the Python backend with keras-vit serve)",
    )
    parser.add_argument(
        "--accelerator",
        choices=("none", "tensorrt", "cuda"),
        default="none",
        help="onnx on KIND_GPU: the GPU execution provider of the ONNX Runtime backend",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version")
    parser.set_defaults(run=_export)


class SignalStop(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM and SIGHUP, as SIGINT raises KeyboardInterrupt."""


def _raise_stop(signum: int, _frame: object) -> None:
    raise SignalStop(signal.Signals(signum).name)


RESTARTS = 5  # tritonserver restarts in a row before serve gives up
BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0)  # seconds before each of them
RELOAD = 120.0  # seconds an unload, and then a load, may take before a restart
HEALTHY = 120.0  # seconds served after which a death counts as the first in a row


def _watch(server: TritonServer, models: list[str], check_every: float) -> str:
    """Checks the models every ``check_every`` seconds, reloading one that does not answer.

    Returns:
        Why the server must be restarted: it exited, or a model stayed dead after a
        reload (Triton can leave a model whose stub died UNLOADING for good).
    """
    from keras_vit.serving.client import heal

    while server.alive():
        time.sleep(check_every)
        for name in models:
            if server.alive() and not heal(server.http_url, name, timeout=RELOAD, repo=server.repo):
                if server.alive():
                    return f"model {name} does not answer after a reload"
    return f"tritonserver exited ({server.process.returncode})"


def _serve_once(server: TritonServer, models: list[str], check_every: float) -> str:
    """Starts the server and serves until it must be restarted; it is stopped then.

    Returns:
        Why it must be restarted: it did not start, it exited, or a model stayed dead.
    """
    try:
        with server:
            print(
                f"serving {', '.join(models) or 'no models'} from {server.repo}: "
                f"HTTP {server.http_url}, gRPC {server.grpc_url} (Ctrl-C stops)",
                flush=True,
            )
            return _watch(server, models, check_every)
    except RuntimeError as error:  # did not start: exited, or not ready in time
        return str(error).splitlines()[0].rstrip(":")


def _serve(args: argparse.Namespace) -> int:
    """``keras-vit serve``: runs tritonserver, reloading a model that stops answering.

    SIGINT, SIGTERM and SIGHUP stop it at any moment, server included; a server
    that dies is restarted after a back-off, ``RESTARTS`` times in a row at most.
    """
    from keras_vit.serving.server import TritonServer

    if not args.start_timeout > 0:
        raise ValueError(f"--start-timeout must be positive; got {args.start_timeout}")
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_stop)
    server = TritonServer(
        args.repo,
        args.http_port,
        args.grpc_port,
        args.metrics_port,
        host=args.host,
        start_timeout=args.start_timeout,
    )
    models = sorted(p.name for p in server.repo.iterdir() if (p / "config.pbtxt").exists())
    failures = 0
    try:
        while True:
            started = time.monotonic()
            reason = _serve_once(server, models, args.check_every)
            if time.monotonic() - started > HEALTHY:
                failures = 0
            if failures >= RESTARTS:
                raise RuntimeError(f"{reason}, {RESTARTS} times in a row")
            delay, failures = BACKOFF[failures], failures + 1
            print(
                f"{reason}; restarting tritonserver in {delay:.0f} s "
                f"(restart {failures} of {RESTARTS}); log: {server.log_path}",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(delay)
    except KeyboardInterrupt as stop:
        print(f"stopping tritonserver ({stop or 'SIGINT'})", flush=True)
    except RuntimeError as error:  # the server died too often
        print(f"keras-vit serve: error: {error}; log: {server.log_path}", file=sys.stderr)
        return 1
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
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=120.0,
        help="seconds the server may take to load every model before it is restarted",
    )
    parser.set_defaults(run=_serve)


def _predict(args: argparse.Namespace) -> int:
    """``keras-vit predict``: prints the top classes of image files, from a Triton server."""
    from tritonclient.utils import InferenceServerException

    from keras_vit.serving.client import classify

    try:
        tops = classify(args.images, args.url, args.name, args.protocol, args.top)
    except (OSError, InferenceServerException) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"no answer from a Triton server at {args.url} ({args.protocol}): {reason}; "
            "start one with `keras-vit serve --repo REPO` or pass --url"
        ) from None
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
        "export a model (SavedModel or ONNX) into a Triton model repository",
        _export_arguments,
    ),
    "serve": ("run tritonserver on a model repository until Ctrl-C", _serve_arguments),
    "predict": ("classify image files through a running Triton server", _predict_arguments),
}
