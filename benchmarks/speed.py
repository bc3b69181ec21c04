"""Side-by-side speed of keras_vit, keras-hub and timm on this machine (run by hand).

    python benchmarks/speed.py --timm-python .venv-timm/bin/python [--rounds 5] [--out results.json]

Every contender runs in its own worker process (so each has its own peak RSS
and no framework's threads compete with another's); the driver interleaves the
contenders round by round and reports the median and the spread (min-max) of
images/s, with ratios against timm and keras-hub (XLA). Measured:

- ViT-B/16 inference at 224 px, batch 1 and 16;
- a training step (forward + backward + AdamW) of ViT-S/16 and ViT-B/16, batch 16;
- peak RSS of each worker;
- the fp32 matmul peak (2048³) of numpy, TensorFlow and PyTorch, and the model
  FLOPs utilisation (achieved FLOP/s over the best of those peaks).

Contenders: keras_vit with its fused XLA kernels and with the reference path;
keras-hub's ViTBackbone (TensorFlow backend) with and without XLA; timm's
VisionTransformer on PyTorch (run by ``--timm-python``, an interpreter with
torch and timm; ``make bench-setup`` makes one in ``.venv-timm``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

SIZES = {"S/16": (384, 12, 6, 1536), "B/16": (768, 12, 12, 3072)}  # hidden, layers, heads, mlp
CONTENDERS = ("keras_vit-fused", "keras_vit-reference", "keras_hub-xla", "keras_hub", "timm")
PHASES = (  # (variant, task, batches, workers alive at once: 24 GiB hold two B/16 trainers)
    ("B/16", "infer", (1, 16), 5),
    ("B/16", "train", (16,), 2),
    ("S/16", "train", (16,), 3),
)
ITERATIONS = {("infer", 1): 8, ("infer", 16): 2, ("train", 16): 2}


def vit_macs(variant: str, image: int = 224, patch: int = 16, classes: int = 1000) -> float:
    """Multiply-accumulates of one forward pass (matmuls only, as the paper counts)."""
    hidden, layers, _, mlp = SIZES[variant]
    patches = (image // patch) ** 2
    tokens = patches + 1
    per_block = (
        4 * tokens * hidden * hidden + 2 * tokens * tokens * hidden + 2 * tokens * hidden * mlp
    )
    return patches * patch * patch * 3 * hidden + layers * per_block + hidden * classes


# ----------------------------------------------------------------------------- worker


def _build_tf(contender: str, variant: str, task: str, batch: int):
    import keras
    import tensorflow as tf

    hidden, layers, heads, mlp = SIZES[variant]
    if contender.startswith("keras_vit"):
        from keras_vit.models import create_model

        impl = "fused" if contender.endswith("fused") else "reference"
        model = create_model(f"ViT-{variant}", attention_impl=impl)
        jit = False  # the fused kernels are XLA-compiled themselves
    else:
        import keras_hub

        backbone = keras_hub.models.ViTBackbone(
            image_shape=(224, 224, 3), patch_size=16, num_layers=layers, num_heads=heads,
            hidden_dim=hidden, mlp_dim=mlp,
        )  # fmt: skip
        images = keras.Input((224, 224, 3))
        model = keras.Model(images, keras.layers.Dense(1000)(backbone(images)[:, 0]))
        jit = contender.endswith("xla")
    x = tf.random.uniform((batch, 224, 224, 3), -1, 1)
    if task == "infer":
        step = tf.function(lambda: model(x, training=False), jit_compile=jit)
    else:
        labels = tf.random.uniform((batch,), 0, 1000, tf.int32)
        optimizer = keras.optimizers.AdamW(1e-4)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        def train_step():
            with tf.GradientTape() as tape:
                loss = loss_fn(labels, model(x, training=True))
            optimizer.apply(
                tape.gradient(loss, model.trainable_variables), model.trainable_variables
            )
            return loss

        step = tf.function(train_step, jit_compile=jit)
    return lambda: step().numpy()


def _build_timm(variant: str, task: str, batch: int):
    import timm
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    name = {"S/16": "vit_small_patch16_224", "B/16": "vit_base_patch16_224"}[variant]
    model = timm.create_model(name, pretrained=False)
    x = torch.rand(batch, 3, 224, 224) * 2 - 1
    if task == "infer":
        model.eval()

        def run():
            with torch.inference_mode():
                return model(x)

        return run
    labels = torch.randint(0, 1000, (batch,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()
        return loss.item()

    return train_step


def _matmul_peak(framework: str) -> float:
    n = 2048
    a, b = (np.random.default_rng(i).random((n, n), np.float32) for i in range(2))
    if framework == "tensorflow":
        import tensorflow as tf

        ta, tb = tf.constant(a), tf.constant(b)
        matmul = tf.function(tf.matmul)
        run = lambda: matmul(ta, tb).numpy()  # noqa: E731
    elif framework == "torch":
        import torch

        torch.set_num_threads(len(os.sched_getaffinity(0)))
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        run = lambda: ta @ tb  # noqa: E731
    else:
        run = lambda: a @ b  # noqa: E731
    run()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def worker(contender: str, variant: str) -> None:
    """Answers one JSON request per stdin line with one JSON line on stdout."""
    steps = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request["task"] == "peak":
            framework = "torch" if contender == "timm" else "tensorflow"
            reply = {"gflops": _matmul_peak(framework)}
        else:
            key = (request["task"], request["batch"])
            if key not in steps:
                start = time.perf_counter()
                if contender == "timm":
                    steps[key] = _build_timm(variant, *key)
                else:
                    steps[key] = _build_tf(contender, variant, *key)
                for _ in range(2):  # warm-up: tracing and XLA compilation
                    steps[key]()
                warmup = time.perf_counter() - start
            else:
                warmup = 0.0
            times = []
            for _ in range(request["iters"]):
                start = time.perf_counter()
                steps[key]()
                times.append(time.perf_counter() - start)
            reply = {"times": times, "warmup": warmup}
        reply["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(reply), flush=True)


# ----------------------------------------------------------------------------- driver


class Worker:
    def __init__(self, contender: str, variant: str, timm_python: str, log):
        python = timm_python if contender == "timm" else sys.executable
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
        self.process = subprocess.Popen(
            [python, __file__, "--worker", contender, "--variant", variant],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env,
        )  # fmt: skip

    def ask(self, **request) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.process.args[3]} died; see the benchmark log")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores available"


def measure(workers: dict, variant: str, task: str, batch: int, rounds: int) -> list[dict]:
    """Interleaved rounds over the workers; one summary per contender."""
    names = list(workers)
    samples = {c: [] for c in names}
    rss = {}
    for round_index in range(rounds):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for contender in order:
            reply = workers[contender].ask(task=task, batch=batch, iters=ITERATIONS[(task, batch)])
            samples[contender] += [batch / t for t in reply["times"]]
            rss[contender] = reply["rss_mb"]
            print(f"{variant} {task} b{batch} round {round_index + 1} {contender}: "
                  f"{statistics.median(samples[contender]):.2f} img/s", flush=True)  # fmt: skip
    return [
        dict(
            variant=variant,
            task=task,
            batch=batch,
            contender=c,
            median=statistics.median(v),
            min=min(v),
            max=max(v),
            samples=len(v),
            peak_rss_mb=rss[c],
        )  # fmt: skip
        for c, v in samples.items()
    ]


def drive(args: argparse.Namespace) -> dict:
    results = {"machine": machine(), "rounds": args.rounds, "peaks_gflops": {}, "runs": []}
    results["peaks_gflops"]["numpy"] = _matmul_peak("numpy")
    log = open(args.log, "w")
    contenders = [c for c in CONTENDERS if c in args.contenders]
    for variant, task, batches, alive in PHASES:
        # Contenders are interleaved within groups of `alive` workers (memory).
        for group in (contenders[i : i + alive] for i in range(0, len(contenders), alive)):
            workers = {c: Worker(c, variant, args.timm_python, log) for c in group}
            if task == "infer" and "keras_vit-fused" in workers:
                results["peaks_gflops"]["tensorflow"] = workers["keras_vit-fused"].ask(task="peak")[
                    "gflops"
                ]
            if task == "infer" and "timm" in workers:
                results["peaks_gflops"]["torch"] = workers["timm"].ask(task="peak")["gflops"]
            for batch in batches:
                results["runs"] += measure(workers, variant, task, batch, args.rounds)
            for w in workers.values():
                w.close()
    results["peaks_gflops"]["numpy_end"] = _matmul_peak("numpy")
    return results


def report(results: dict) -> str:
    # Utilisation against the best fp32 matmul measured in the run (numpy at the
    # start and end, TensorFlow, PyTorch): the conservative choice.
    peak = max(results["peaks_gflops"].values())
    lines = [
        f"Machine: {results['machine']}. fp32 matmul peak (2048³): "
        + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in results["peaks_gflops"].items()),
        "",
        "| model | task | batch | contender | images/s median (min-max) | vs timm | vs keras-hub XLA | MFU | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    runs = results["runs"]
    for run in runs:
        same = {
            r["contender"]: r["median"]
            for r in runs
            if (r["variant"], r["task"], r["batch"]) == (run["variant"], run["task"], run["batch"])
        }
        flops = 2 * vit_macs(run["variant"]) * (3 if run["task"] == "train" else 1)
        mfu = run["median"] * flops / 1e9 / peak
        vs_timm, vs_hub = (
            f"{run['median'] / same[o]:.2f}x" if o in same else "-"
            for o in ("timm", "keras_hub-xla")
        )
        lines.append(
            f"| ViT-{run['variant']} | {run['task']} | {run['batch']} | {run['contender']} | "
            f"{run['median']:.2f} ({run['min']:.2f}-{run['max']:.2f}) | {vs_timm} | "
            f"{vs_hub} | {mfu:.0%} | {run['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="B/16", help=argparse.SUPPRESS)
    parser.add_argument("--timm-python", default=".venv-timm/bin/python",
                        help="a Python with torch and timm (default .venv-timm/bin/python)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    parser.add_argument("--out", default="benchmarks/results.json", help="where the numbers go")
    parser.add_argument("--log", default="benchmarks/speed.log", help="the workers' stderr")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.variant)
        return
    results = drive(args)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(report(results))


if __name__ == "__main__":
    main()
