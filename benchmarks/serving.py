"""Served (Triton) against in-process throughput and latency of a model (run by hand).

    python benchmarks/serving.py [--model ViT-B/16] [--requests 48]

Exports the model (random weights, uint8 input, Python backend, dynamic
batching) into a temporary repository, starts a real tritonserver, and drives it
with 1, 4 and 16 concurrent gRPC clients sending one image per request; then
runs the same SavedModel signature in this process at batch 1, 4 and 16.
Reports images/s and latency percentiles, and served/in-process ratios.
``benchmarks/serving_onnx.py`` compares this SavedModel path with the ONNX one,
using this file's gRPC clients beside Triton's ``perf_analyzer``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable

import numpy as np


def percentiles(latencies: list[float]) -> str:
    """Latency percentiles for the table.

    Args:
        latencies: seconds per request.

    Returns:
        ``"p50 … / p90 … / p99 … ms"``.
    """
    ms = np.percentile(np.array(latencies) * 1000, [50, 90, 99])
    return "p50 {:.0f} / p90 {:.0f} / p99 {:.0f} ms".format(*ms)


def served(
    url: str, name: str, image: np.ndarray, concurrency: int, requests: int
) -> tuple[float, list[float]]:
    """Drives a served model with concurrent gRPC clients, one image per request.

    Args:
        url: the server's gRPC ``host:port``.
        name: the model's name.
        image: one uint8 image.
        concurrency: clients at once.
        requests: requests in all.

    Returns:
        ``(images per second, latency of each request in seconds)``.
    """
    import tritonclient.grpc as grpcclient

    latencies: list[float] = []
    lock = threading.Lock()

    def client_loop(count: int) -> None:
        client = grpcclient.InferenceServerClient(url)
        tensor = grpcclient.InferInput("images", [1, *image.shape], "UINT8")
        tensor.set_data_from_numpy(image[None])
        for _ in range(count):
            start = time.perf_counter()
            client.infer(name, [tensor])
            with lock:
                latencies.append(time.perf_counter() - start)

    client_loop(2)  # warm-up
    latencies.clear()
    threads = [
        threading.Thread(target=client_loop, args=(requests // concurrency,))
        for _ in range(concurrency)
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(latencies) / (time.perf_counter() - start), latencies


def in_process(
    signature: Callable[..., dict], image: np.ndarray, batch: int, requests: int
) -> tuple[float, list[float]]:
    """Runs the SavedModel's signature in this process on whole batches.

    Args:
        signature: the loaded ``serving_default`` signature.
        image: one uint8 image, repeated to a batch.
        batch: the batch size.
        requests: images in all (at least two batches run).

    Returns:
        ``(images per second at the median batch time, seconds per batch)``.
    """
    import tensorflow as tf

    data = tf.constant(np.repeat(image[None], batch, axis=0))
    signature(data)
    latencies = []
    for _ in range(max(2, requests // batch)):
        start = time.perf_counter()
        signature(data)["logits"].numpy()
        latencies.append(time.perf_counter() - start)
    return batch / statistics.median(latencies), latencies


def main() -> None:
    """Exports, serves, measures both paths and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="ViT-B/16")
    parser.add_argument("--requests", type=int, default=48, help="requests per concurrency level")
    parser.add_argument("--attention-impl", default="fused", choices=("fused", "reference"))
    args = parser.parse_args()

    import tensorflow as tf

    from keras_vit.models import create_model
    from keras_vit.serving import export_model
    from keras_vit.serving.server import TritonServer

    model = create_model(args.model, attention_impl=args.attention_impl)
    repo = tempfile.mkdtemp(prefix="serving-bench-")
    path = export_model(model, repo, "bench", max_batch_size=32)
    image = np.random.default_rng(0).integers(0, 256, model.input_shape[1:], dtype=np.uint8)
    rows = []
    with TritonServer(repo) as server:
        for concurrency in (1, 4, 16):
            rate, latencies = served(server.grpc_url, "bench", image, concurrency, args.requests)
            rows.append(("served (gRPC)", concurrency, rate, percentiles(latencies)))
            print(rows[-1], flush=True)
    signature = tf.saved_model.load(str(path / "model.savedmodel")).signatures["serving_default"]
    for batch in (1, 4, 16):
        rate, latencies = in_process(signature, image, batch, args.requests)
        rows.append(("in-process", batch, rate, percentiles(latencies)))
        print(rows[-1], flush=True)
    print(f"\n{args.model}, one image per request; in-process runs whole batches.\n")
    print("| path | concurrency / batch | images/s | latency | served / in-process |")
    print("|---|---|---|---|---|")
    local = {row[1]: row[2] for row in rows if row[0] == "in-process"}
    for kind, level, rate, latency in rows:
        ratio = f"{rate / local[level]:.2f}" if kind.startswith("served") else "-"
        print(f"| {kind} | {level} | {rate:.2f} | {latency} | {ratio} |")


if __name__ == "__main__":
    main()
