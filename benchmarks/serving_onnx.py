"""SavedModel (TensorFlow) against ONNX (onnxruntime) in Triton's Python backend (run by hand).

    python benchmarks/serving_onnx.py [--model ViT-B/16] [--perf-analyzer PATH]
        [--interval-ms 6000] [--requests 32]

Exports the model (random weights, uint8 input, max_batch_size 16) in both
formats, then, the two paths interleaved so that both see the same machine:

- cold start: ``keras-vit serve`` started as a process, seconds until the model
  answers READY (SavedModel first, then ONNX; one server at a time starting);
- resident memory of the model instance (its Python-backend stub): after load,
  and the peak (VmHWM) after the load runs;
- served throughput and p50/p99 latency at concurrency 1, 4, 16, with Triton's
  ``perf_analyzer`` over gRPC (one image per request) where one is given, and
  with ``benchmarks/serving.py``'s own gRPC clients (``--requests`` per level);
- in process: onnxruntime on ``model.onnx`` (with ``triton_repo/model.py``'s
  session options) against the SavedModel's signature in TensorFlow (the fused
  XLA kernels), batch 1 and 16; when onnxruntime is the slower at 16, the op
  types that take its time (its profiler).

``perf_analyzer`` wheels (``perf-analyzer``) need glibc 2.38; the binary inside
the ``tritonclient==2.51.0`` wheel (the release of the pytriton server) needs
2.34 and two libraries that the ``nvidia-pytriton`` wheel ships, linked here::

    pip download tritonclient==2.51.0 --no-deps -d /tmp/pa
    unzip -j /tmp/pa/tritonclient-2.51.0-*.whl '*/bin/perf_analyzer' -d /tmp/pa
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from serving import percentiles, served  # noqa: E402

if TYPE_CHECKING:
    import onnxruntime

LEVELS = (1, 4, 16)
PATHS = ("savedmodel", "onnx")


def tree(pid: int) -> list[int]:
    """The live processes under ``pid``."""
    found, todo = [], [pid]
    while todo:
        try:
            children = Path(f"/proc/{todo.pop()}/task").glob("*/children")
            kids = [int(c) for path in children for c in path.read_text().split()]
        except OSError:
            continue
        found += kids
        todo += kids
    return found


def stub_memory(serve: subprocess.Popen) -> dict[str, float]:
    """VmRSS and VmHWM (MiB) of the model instance's Python-backend stub."""
    for pid in tree(serve.pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if "backend_stub" in command and "/bench/" in command:
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}
    return {"VmRSS": float("nan"), "VmHWM": float("nan")}


def start_serve(repo: str, ports: list[int]) -> tuple[subprocess.Popen, float]:
    """Starts ``keras-vit serve`` on ``repo``.

    Returns:
        The process and the seconds from its start until the model answered READY.
    """
    command = [sys.executable, "-m", "keras_vit.cli", "serve", "--repo", repo]
    for flag, port in zip(("--http-port", "--grpc-port", "--metrics-port"), ports):
        command += [flag, str(port)]
    command += ["--check-every", "3600"]  # no health-check inference inside the runs
    command += ["--start-timeout", "1200"]  # a loaded machine compiles XLA slowly
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{ports[0]}/v2/models/bench/ready"
    while process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return process, time.perf_counter() - start
            time.sleep(0.1)
        except OSError:
            time.sleep(0.1)
        except BaseException:
            process.send_signal(signal.SIGINT)
            raise
    raise RuntimeError(f"keras-vit serve exited ({process.returncode}) on {repo}")


def perf_analyzer_env(binary: str) -> dict[str, str]:
    """The environment for ``binary``: libb64 and libcudart from nvidia-pytriton's wheel."""
    import pytriton

    libs = Path(pytriton.__file__).parents[1] / "nvidia_pytriton.libs"
    folder = Path(tempfile.mkdtemp(prefix="perf-analyzer-libs-"))
    for wanted, pattern in (("libb64.so.0d", "libb64-*"), ("libcudart.so.12", "libcudart-*")):
        for found in libs.glob(pattern):
            (folder / wanted).symlink_to(found)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = ":".join(p for p in (str(folder), env.get("LD_LIBRARY_PATH")) if p)
    return env


def perf_analyzer(binary: str, url: str, concurrency: int, interval_ms: int) -> dict[str, float]:
    """One ``perf_analyzer`` run at a fixed concurrency over gRPC.

    Returns:
        Images per second and p50/p99 latency (ms) from its CSV report.
    """
    report = tempfile.mktemp(suffix=".csv")
    command = [binary, "-m", "bench", "-u", url, "-i", "grpc", "-b", "1"]
    command += [f"--concurrency-range={concurrency}:{concurrency}"]
    # A loaded machine is never "stable" in perf_analyzer's sense: accept any spread.
    # A window must outlast the requests in flight: 16 at once take 16 times one's latency.
    interval_ms = interval_ms * max(1, concurrency // 4)
    command += [f"--measurement-interval={interval_ms}", "--stability-percentage=1000"]
    command += ["--max-trials=3", "-f", report]
    print(" ".join(command), flush=True)
    done = subprocess.run(command, env=perf_analyzer_env(binary), capture_output=True, text=True)
    if not os.path.exists(report):
        print(f"perf_analyzer failed ({done.returncode}): {done.stdout[-800:]}", flush=True)
        return {"rate": float("nan"), "p50": float("nan"), "p99": float("nan")}
    with open(report) as file:
        row = next(csv.DictReader(file))
    return {
        "rate": float(row["Inferences/Second"]),
        "p50": float(row["p50 latency"]) / 1000,
        "p99": float(row["p99 latency"]) / 1000,
    }


def own_client(url: str, image: np.ndarray, concurrency: int, requests: int) -> dict[str, float]:
    """``benchmarks/serving.py``'s gRPC clients at one concurrency."""
    rate, latencies = served(url, "bench", image, concurrency, max(requests, concurrency * 2))
    p50, p99 = np.percentile(np.array(latencies) * 1000, [50, 99])
    return {"rate": rate, "p50": float(p50), "p99": float(p99)}


def in_process(paths: dict[str, Path], image: np.ndarray, profile: bool) -> list[tuple]:
    """onnxruntime against the SavedModel in TensorFlow, interleaved, batch 1 and 16."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(paths["savedmodel"] / "model.savedmodel"))
    signature = signature.signatures["serving_default"]
    session = ort_session(paths["onnx"])
    run = {
        "savedmodel": lambda x: signature(tf.constant(x))["logits"].numpy(),
        "onnx": lambda x: session.run(["logits"], {"images": x})[0],
    }
    rows = []
    for batch in (1, 16):
        data = np.repeat(image[None], batch, axis=0)
        times: dict[str, list[float]] = {path: [] for path in PATHS}
        for path in PATHS:
            run[path](data)  # compile (XLA) / allocate (onnxruntime)
        for _ in range(3 if batch > 1 else 6):
            for path in PATHS:
                start = time.perf_counter()
                run[path](data)
                times[path].append(time.perf_counter() - start)
        for path in PATHS:
            rows.append((path, batch, batch / statistics.median(times[path]), times[path]))
            print(rows[-1][:3], percentiles(times[path]), flush=True)
    if profile and rows[-1][2] < rows[-2][2]:
        print("onnxruntime profile at batch 16:", ort_profile(paths["onnx"], data))
    return rows


def ort_session(folder: Path, profile: bool = False) -> onnxruntime.InferenceSession:
    """An onnxruntime session on ``folder/model.onnx`` with ``triton_repo/model.py``'s options."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.enable_profiling = profile
    if profile:  # the profile goes to a temporary file, not the working folder
        options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "onnxruntime_profile")
    return onnxruntime.InferenceSession(
        str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )


def ort_profile(folder: Path, data: np.ndarray) -> list[tuple[str, float]]:
    """The op types taking onnxruntime's time on one batch (ms), largest first."""
    session = ort_session(folder, profile=True)
    session.run(["logits"], {"images": data})
    profile = Path(session.end_profiling())
    events = json.loads(profile.read_text())
    profile.unlink()
    totals: dict[str, float] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"].get("op_name", "?")
            totals[op] = totals.get(op, 0.0) + event["dur"] / 1000
    return sorted(((k, round(v, 1)) for k, v in totals.items()), key=lambda kv: -kv[1])[:8]


def main() -> None:
    """Exports, serves both formats interleaved, measures and prints the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="ViT-B/16")
    parser.add_argument("--perf-analyzer", default=None, help="perf_analyzer binary")
    parser.add_argument("--interval-ms", type=int, default=6000)
    parser.add_argument("--requests", type=int, default=32, help="own-client requests per level")
    parser.add_argument("--work", default=None, help="folder kept for the exports (reused)")
    args = parser.parse_args()

    from keras_vit.models import create_model
    from keras_vit.serving import export_model
    from keras_vit.serving.server import free_port

    model = create_model(args.model)
    image = np.random.default_rng(0).integers(0, 256, model.input_shape[1:], dtype=np.uint8)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-serving-onnx-"))
    repos = {path: str(work / path) for path in PATHS}
    versions = {path: work / path / "bench" / "1" for path in PATHS}
    for path in PATHS:
        if versions[path].is_dir():
            continue
        start = time.perf_counter()
        export_model(model, repos[path], "bench", max_batch_size=16, format=path)
        print(f"export {path}: {time.perf_counter() - start:.0f} s", flush=True)
    del model
    servers, urls, cold, memory, rows = {}, {}, {}, {}, []
    try:
        for path in PATHS:
            ports = [free_port() for _ in range(3)]
            servers[path], cold[path] = start_serve(repos[path], ports)
            memory[path] = stub_memory(servers[path])
            urls[path] = f"127.0.0.1:{ports[1]}"
            print(f"cold start {path}: {cold[path]:.1f} s, {memory[path]}", flush=True)
        for concurrency in LEVELS:
            for path in PATHS:
                url = urls[path]
                if args.perf_analyzer:
                    result = perf_analyzer(args.perf_analyzer, url, concurrency, args.interval_ms)
                    rows.append(("perf_analyzer", path, concurrency, result))
                    print(rows[-1], flush=True)
                result = own_client(url, image, concurrency, args.requests)
                rows.append(("serving.py", path, concurrency, result))
                print(rows[-1], flush=True)
        peak = {path: stub_memory(servers[path])["VmHWM"] for path in PATHS}
    finally:
        for process in servers.values():
            process.send_signal(signal.SIGINT)
            process.wait(timeout=120)
    local = in_process(versions, image, profile=True)
    report(args.model, cold, memory, peak, rows, local)


def report(model, cold, memory, peak, rows, local) -> None:
    """Prints the markdown tables."""
    print(f"\n{model}, Triton Python backend, one image per request (gRPC)\n")
    print("| | SavedModel (TensorFlow) | ONNX (onnxruntime) | ONNX / SavedModel |")
    print("|---|---|---|---|")
    s, o = cold["savedmodel"], cold["onnx"]
    print(f"| cold start, serve to READY | {s:.1f} s | {o:.1f} s | {o / s:.2f} |")
    s, o = memory["savedmodel"]["VmRSS"], memory["onnx"]["VmRSS"]
    print(f"| instance RSS after load | {s:.0f} MiB | {o:.0f} MiB | {o / s:.2f} |")
    s, o = peak["savedmodel"], peak["onnx"]
    print(f"| instance peak RSS (VmHWM) | {s:.0f} MiB | {o:.0f} MiB | {o / s:.2f} |")
    by = {(tool, path, level): r for tool, path, level, r in rows}
    for tool, path, level, _ in rows:
        if path != "onnx":
            continue
        s, o = by[(tool, "savedmodel", level)], by[(tool, "onnx", level)]
        print(
            f"| {tool}, concurrency {level}: img/s; p50 / p99 ms | {s['rate']:.2f}; "
            f"{s['p50']:.0f} / {s['p99']:.0f} | {o['rate']:.2f}; {o['p50']:.0f} / {o['p99']:.0f} "
            f"| {o['rate'] / s['rate']:.2f} |"
        )
    rates = {(path, batch): rate for path, batch, rate, _ in local}
    for batch in (1, 16):
        s, o = rates[("savedmodel", batch)], rates[("onnx", batch)]
        print(
            f"| in process, batch {batch}: img/s (TF XLA vs onnxruntime) | {s:.2f} | {o:.2f} "
            f"| {o / s:.2f} |"
        )


if __name__ == "__main__":
    main()
