"""Side-by-side speed of keras_vit, keras-hub and timm on this machine (run by hand).

    python benchmarks/speed.py --timm-python .venv-timm/bin/python [--rounds 5] [--out results.json]

Every contender runs in its own worker process (``speed_worker.py``, so each has
its own peak RSS and no framework's threads compete with another's); the driver interleaves the
contenders round by round and reports the median and the spread (min-max) of
images/s, with ratios against timm and keras-hub (XLA). Measured:

- ViT-B/16 inference at 224 px, batch 1 and 16;
- a training step (forward + backward + AdamW) of ViT-S/16 and ViT-B/16, batch 16;
- peak RSS of each worker;
- the fp32 matmul peak (2048³) of numpy, TensorFlow and PyTorch, and the model
  FLOPs utilisation (achieved FLOP/s over the best of those peaks).

Contenders: keras_vit's default (fused) model and its reference layers, each step
a plain ``tf.function``; the default model with the whole step XLA-compiled, as
Keras's ``fit`` compiles it (``keras_vit-xla``); ``keras-vit train``'s own step
(``keras_vit-train``, training only: forward and backward pass XLA-compiled, the
update outside); keras-hub's ViTBackbone (TensorFlow backend) with and without XLA; timm's
VisionTransformer on PyTorch (run by ``--timm-python``, an interpreter with
torch and timm; ``make bench-setup`` makes one in ``.venv-timm``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import IO

from speed_worker import matmul_peak, vit_size  # beside this script

CONTENDERS = (
    "keras_vit-fused",
    "keras_vit-reference",
    "keras_vit-xla",
    "keras_vit-train",
    "keras_hub-xla",
    "keras_hub",
    "timm",
)
PHASES = (  # (variant, task, batches, workers alive at once: 24 GiB hold three B/16 trainers)
    ("B/16", "infer", (1, 16), 6),
    ("B/16", "train", (16,), 3),
    ("S/16", "train", (16,), 3),
)
# Where not all contenders fit in memory at once, they run in groups in this order: timm
# first, with the two training steps users get (`fit`'s and `keras-vit train`'s).
GROUPING = (
    "timm",
    "keras_vit-xla",
    "keras_vit-train",
    "keras_vit-fused",
    "keras_vit-reference",
    "keras_hub-xla",
)
TRAINING_ONLY = ("keras_vit-train",)  # `keras-vit train`'s step: its inference is the fused one
ITERATIONS = {("infer", 1): 8, ("infer", 16): 2, ("train", 16): 2}


def vit_macs(variant: str, image: int = 224, classes: int = 1000) -> float:
    """Multiply-accumulates of one forward pass (matmuls only, as the paper counts).

    Args:
        variant: ``"S/16"`` or ``"B/16"``.
        image: the input side.
        classes: the head's classes.

    Returns:
        The count.
    """
    size = vit_size(variant)
    hidden, mlp, patch = size["hidden_size"], size["mlp_dim"], size["patch_size"]
    patches = (image // patch) ** 2
    tokens = patches + 1
    per_block = (
        4 * tokens * hidden * hidden + 2 * tokens * tokens * hidden + 2 * tokens * hidden * mlp
    )
    return patches * patch * patch * 3 * hidden + size["num_layers"] * per_block + hidden * classes


class Worker:
    """A contender's ``speed_worker.py`` process, asked over its stdin and stdout.

    Args:
        contender: one of ``CONTENDERS``.
        variant: ``"S/16"`` or ``"B/16"``.
        timm_python: the interpreter of the timm contender.
        log: where the worker's stderr goes.
    """

    def __init__(self, contender: str, variant: str, timm_python: str, log: IO[str]):
        python = timm_python if contender == "timm" else sys.executable
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
        script = str(Path(__file__).with_name("speed_worker.py"))
        self.contender = contender
        self.process = subprocess.Popen(
            [python, script, contender, variant],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )

    def ask(self, **request: object) -> dict:
        """Sends one request and waits for its answer.

        Args:
            **request: the JSON request (see ``speed_worker.py``).

        Returns:
            The worker's JSON answer.

        Raises:
            RuntimeError: when the worker died.
        """
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.contender} died; see the benchmark log")
        return json.loads(line)

    def close(self) -> None:
        """Ends the worker (end of its stdin) and waits for it."""
        self.process.stdin.close()
        self.process.wait(timeout=60)


def machine() -> str:
    """Describes this machine.

    Returns:
        The CPU's model name and the cores this process may use.
    """
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores available"


def measure(workers: dict, variant: str, task: str, batch: int, rounds: int) -> list[dict]:
    """Interleaved rounds over the workers; one summary per contender.

    Args:
        workers: contender -> its ``Worker``.
        variant: the model variant the workers run.
        task: ``"infer"`` or ``"train"``.
        batch: the batch size.
        rounds: rounds over all workers, each starting with the next contender.

    Returns:
        One summary per contender: images/s median, min and max, samples and
        peak RSS.
    """
    names = list(workers)
    samples = {c: [] for c in names}
    rss = {}
    for round_index in range(rounds):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for contender in order:
            reply = workers[contender].ask(task=task, batch=batch, iters=ITERATIONS[(task, batch)])
            samples[contender] += [batch / t for t in reply["times"]]
            rss[contender] = reply["rss_mb"]
            rate = statistics.median(samples[contender])
            print(
                f"{variant} {task} b{batch} round {round_index + 1} {contender}: {rate:.2f} img/s",
                flush=True,
            )
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
        )
        for c, v in samples.items()
    ]


def drive(args: argparse.Namespace) -> dict:
    """Runs every phase with its contenders.

    Args:
        args: the command line (``--rounds``, ``--contenders``, ``--timm-python``, ``--log``).

    Returns:
        The machine, matmul peaks and every measured run.
    """
    peaks = {"numpy": matmul_peak("numpy")}
    results = {"machine": machine(), "rounds": args.rounds, "peaks_gflops": peaks, "runs": []}
    order = (*GROUPING, *(c for c in CONTENDERS if c not in GROUPING))
    contenders = [c for c in order if c in args.contenders]
    with open(args.log, "w") as log:
        for variant, task, batches, alive in PHASES:
            names = [c for c in contenders if task == "train" or c not in TRAINING_ONLY]
            # Contenders are interleaved within groups of `alive` workers (memory).
            for group in (names[i : i + alive] for i in range(0, len(names), alive)):
                workers = {c: Worker(c, variant, args.timm_python, log) for c in group}
                for framework, contender in (("tensorflow", "keras_vit-fused"), ("torch", "timm")):
                    if task == "infer" and contender in workers:
                        peaks[framework] = workers[contender].ask(task="peak")["gflops"]
                for batch in batches:
                    results["runs"] += measure(workers, variant, task, batch, args.rounds)
                for w in workers.values():
                    w.close()
    peaks["numpy_end"] = matmul_peak("numpy")
    return results


def report(results: dict) -> str:
    """The results as a Markdown table with ratios and model FLOPs utilisation.

    Args:
        results: as ``drive`` returns them.

    Returns:
        The table, with the machine and matmul peaks above it.
    """
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
    cases = list(dict.fromkeys((r["variant"], r["task"], r["batch"]) for r in results["runs"]))
    runs = sorted(
        results["runs"],
        key=lambda r: (
            cases.index((r["variant"], r["task"], r["batch"])),
            CONTENDERS.index(r["contender"]),
        ),
    )
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
    """Measures, writes ``--out`` and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--timm-python",
        default=".venv-timm/bin/python",
        help="a Python with torch and timm (default .venv-timm/bin/python)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    parser.add_argument("--out", default="benchmarks/results.json", help="where the numbers go")
    parser.add_argument("--log", default="benchmarks/speed.log", help="the workers' stderr")
    args = parser.parse_args()
    results = drive(args)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(report(results))


if __name__ == "__main__":
    main()
