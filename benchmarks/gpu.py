"""GPU benchmark: ViT-B/16 at 224 px in bfloat16, keras_vit on JAX against its contenders.

Measures inference images/s at batch 1, 64 and 256 and a training step
(forward + backward + AdamW) at batch 128, with MFU against the GPU's bf16 dense
peak, peak GPU memory and compile time (the first call). Contenders, each in its
own process (a Keras backend is fixed per process), each skipped with the reason
printed when its library is missing:

- ``keras_vit-jax``: keras_vit on JAX, ``mixed_bfloat16`` (attention: cuDNN flash
  attention on a GPU, the tokens padded to a multiple of 8 and masked);
- ``keras_vit-jax-xla``: the same with ``KERAS_VIT_JAX_ATTENTION=xla`` (XLA's attention);
- ``keras_vit-torch``: keras_vit on the PyTorch backend, ``mixed_bfloat16``;
- ``keras_hub-jax``: keras-hub's ``ViTBackbone`` (+ a Dense head) on JAX;
- ``keras_hub-jax-fit`` / ``keras_vit-jax-fit``: the same through Keras's own
  ``predict_on_batch`` / ``train_on_batch`` (what ``model.fit`` runs);
- ``timm-eager`` / ``timm-compile``: timm's ``vit_base_patch16_224`` on PyTorch
  with bf16 autocast, eager and under ``torch.compile``.

Runs where JAX, PyTorch and timm are installed and TensorFlow is not, with no
internet (no pretrained weights are read). ``--smoke`` runs tiny sizes on the
CPU (a ViT-Mu-like model, batch 2, one timed step): the suite runs it so that
this file cannot rot.

Usage:
    python benchmarks/gpu.py            # the GPU run (--budget seconds, 300 by default)
    python benchmarks/gpu.py --smoke    # tiny, CPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTENDERS = (
    "keras_vit-jax",
    "timm-eager",
    "timm-compile",
    "keras_hub-jax",
    "keras_hub-jax-fit",
    "keras_vit-torch",
    "keras_vit-jax-xla",
    "keras_vit-jax-fit",
)
FORWARD_GFLOP = 35.1  # ViT-B/16 at 224 px, per image; a training step is 3x
# bf16 dense peak (TFLOP/s) by device name; a device not listed gets no MFU.
PEAK_TFLOPS = {"H100 80GB HBM3": 989.0, "H100 SXM": 989.0, "H200": 989.0}
FULL = dict(name="ViT-B/16", image=224, patch=16, width=768, depth=12, heads=12, mlp=3072)
SMOKE = dict(name="ViT-Mu/16", image=32, patch=16, width=64, depth=1, heads=2, mlp=128)
RESERVE_S = 30.0  # the least time kept for each contender still to run
COLUMNS = ("contender", "what", "batch", "images/s", "MFU %", "peak GiB", "compile s")


def sizes(smoke: bool) -> dict:
    """The model, batches and timing budget of a run."""
    if smoke:
        return dict(model=SMOKE, infer=(2,), train=2, seconds=0.0, classes=10)
    return dict(model=FULL, infer=(1, 64, 256), train=128, seconds=2.0, classes=1000)


def timed(step, batch: int, seconds: float) -> dict:
    """Compile time (first call) and images/s over ``seconds`` (at least one more call)."""
    start = time.perf_counter()
    step()
    compile_s = time.perf_counter() - start
    calls, start = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - start < seconds:
        step()
        calls += 1
    return dict(rate=batch * calls / (time.perf_counter() - start), compile_s=compile_s)


def _import_keras_vit():
    # Run from a source tree that was not pip-installed: kernels/ is installed as
    # keras_vit.kernels, so the tree's root is where that package is found.
    sys.path.insert(0, str(ROOT))
    import keras_vit

    keras_vit.__path__.append(str(ROOT))
    return keras_vit


def _keras_steps(model, s: dict, keras_fit: bool = False):
    """Inference and training closures over a Keras model (any backend).

    On JAX both are ``jax.jit`` functions over ``model.stateless_call`` and
    ``optimizer.stateless_apply`` (the state donated, the loss awaited each step),
    as a JAX program calls a model (``predict_on_batch`` cost about 8 ms more per
    call on an H200). Elsewhere, or with ``keras_fit``, they are
    ``predict_on_batch`` and ``train_on_batch``.
    """
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    size = s["model"]["image"]
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss=loss)

    def images(batch):
        # Inputs stay on the accelerator, as timm's do: no host copy is timed.
        return keras.ops.convert_to_tensor(rng.normal(size=(batch, size, size, 3)), "float32")

    x = images(s["train"])
    y = keras.ops.convert_to_tensor(rng.integers(0, s["classes"], size=s["train"]), "int32")
    if keras.backend.backend() == "jax" and not keras_fit:
        predict, train = _jax_steps(model, loss)
        return lambda batch: partial(predict, images(batch)), partial(train, x, y)
    return lambda batch: partial(model.predict_on_batch, images(batch)), partial(
        model.train_on_batch, x, y
    )


def _jax_steps(model, loss):
    """Jitted inference and AdamW training steps over a Keras model's state (JAX)."""
    import jax

    model.optimizer.build(model.trainable_variables)
    state = [
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in model.optimizer.variables],
    ]

    @jax.jit
    def forward(trainable, non_trainable, x):
        return model.stateless_call(trainable, non_trainable, x, training=False)[0]

    def loss_and_state(trainable, non_trainable, x, y):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        return loss(y, logits), non_trainable

    @partial(jax.jit, donate_argnums=(0, 1, 2))
    def step(trainable, non_trainable, optimizer, x, y):
        grad = jax.value_and_grad(loss_and_state, has_aux=True)
        (value, non_trainable), grads = grad(trainable, non_trainable, x, y)
        trainable, optimizer = model.optimizer.stateless_apply(optimizer, grads, trainable)
        return value, trainable, non_trainable, optimizer

    def predict(x):
        forward(state[0], state[1], x).block_until_ready()

    def train(x, y):
        value, *state[:] = step(*state, x, y)
        value.block_until_ready()

    return predict, train


def keras_vit_model(s: dict):
    """keras_vit's ViT (mixed_bfloat16)."""
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    keras_vit = _import_keras_vit()
    m = s["model"]
    return keras_vit.models.create_model(m["name"], image_size=m["image"], num_classes=s["classes"])


def keras_hub_model(s: dict):
    """keras-hub's ViTBackbone with a Dense head on the class token (mixed_bfloat16)."""
    import keras
    import keras_hub

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    m = s["model"]
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(m["image"], m["image"], 3),
        patch_size=m["patch"],
        num_layers=m["depth"],
        num_heads=m["heads"],
        hidden_dim=m["width"],
        mlp_dim=m["mlp"],
    )
    tokens = backbone(backbone.input)
    logits = keras.layers.Dense(s["classes"], dtype="float32")(tokens[:, 0])
    return keras.Model(backbone.input, logits)


def keras_worker(name: str, s: dict) -> Iterator[dict]:
    """keras_vit or keras-hub on this process's Keras backend: its rows as they finish."""
    model = keras_hub_model(s) if name.startswith("keras_hub") else keras_vit_model(s)
    infer, train = _keras_steps(model, s, keras_fit=name.endswith("-fit"))
    for b in s["infer"]:
        yield dict(what="inference", batch=b, **timed(infer(b), b, s["seconds"]))
    yield dict(what="train step", batch=s["train"], **timed(train, s["train"], s["seconds"]))


def timm_worker(name: str, s: dict) -> Iterator[dict]:
    """timm's ViT on PyTorch, bf16 autocast, eager or under torch.compile: rows as they finish."""
    import timm
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    m = s["model"]
    model = timm.create_model(
        "vit_base_patch16_224",
        pretrained=False,
        img_size=m["image"],
        patch_size=m["patch"],
        embed_dim=m["width"],
        depth=m["depth"],
        num_heads=m["heads"],
        mlp_ratio=m["mlp"] / m["width"],
        num_classes=s["classes"],
    ).to(device)
    run = torch.compile(model) if name == "timm-compile" else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = torch.autocast(device, dtype=torch.bfloat16)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def infer(batch):
        x = torch.randn(batch, 3, m["image"], m["image"], device=device)

        def step():
            with torch.inference_mode(), autocast:
                run(x)
            sync()

        return step

    x = torch.randn(s["train"], 3, m["image"], m["image"], device=device)
    y = torch.randint(0, s["classes"], (s["train"],), device=device)

    def train():
        with autocast:
            loss = torch.nn.functional.cross_entropy(run(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()

    run.train(False)
    for b in s["infer"]:
        yield dict(what="inference", batch=b, **timed(infer(b), b, s["seconds"]))
    run.train(True)
    yield dict(what="train step", batch=s["train"], **timed(train, s["train"], s["seconds"]))


def device_facts(name: str) -> dict:
    """The accelerator's name and peak memory (GiB) as the contender's library sees it."""
    if "-jax" in name:
        import jax

        device = jax.devices()[0]
        stats = device.memory_stats() if device.platform == "gpu" else None
        peak = stats["peak_bytes_in_use"] / 2**30 if stats else None
        return dict(device=device.device_kind, peak_gib=peak)
    import torch

    if not torch.cuda.is_available():
        return dict(device="cpu", peak_gib=None)
    return dict(
        device=torch.cuda.get_device_name(), peak_gib=torch.cuda.max_memory_allocated() / 2**30
    )


MISSING = {
    "keras_vit-jax": ("keras", "jax"),
    "keras_vit-torch": ("keras", "torch"),
    "keras_hub-jax": ("keras", "jax", "keras_hub"),
    "keras_hub-jax-fit": ("keras", "jax", "keras_hub"),
    "keras_vit-jax-xla": ("keras", "jax"),
    "keras_vit-jax-fit": ("keras", "jax"),
    "timm-eager": ("torch", "timm"),
    "timm-compile": ("torch", "timm"),
}


def worker(name: str, smoke: bool) -> None:
    """Runs one contender in this process, printing a JSON line per row as it finishes.

    Each line carries the device facts so far, so that a contender stopped at its
    time limit still reports the rows it finished.
    """
    import importlib.util

    missing = [m for m in MISSING[name] if importlib.util.find_spec(m) is None]
    if missing:
        print("RESULT " + json.dumps(dict(skipped=f"{', '.join(missing)} not installed")))
        return
    on_cpu = {
        "timm-compile": "torch.compile not timed on a CPU",
        "keras_vit-jax-xla": "XLA's CPU compiler refuses its bfloat16 attention",
    }
    if smoke and name in on_cpu:
        print("RESULT " + json.dumps(dict(skipped=f"--smoke: {on_cpu[name]}")))
        return
    s = sizes(smoke)
    rows = []
    for row in (timm_worker if name.startswith("timm") else keras_worker)(name, s):
        rows.append(row)
        print("RESULT " + json.dumps(dict(rows=rows, **device_facts(name))), flush=True)


def run_contender(name: str, smoke: bool, timeout: float) -> dict:
    """One contender in a subprocess (its Keras backend set); its result or why it has none."""
    backend = "jax" if "-jax" in name else "torch"
    env = {**os.environ, "KERAS_BACKEND": backend}
    if name.endswith("-xla"):
        env["KERAS_VIT_JAX_ATTENTION"] = "xla"
    if smoke:
        env.update(CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    command = [sys.executable, __file__, "--worker", name] + (["--smoke"] if smoke else [])
    note = None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
        stdout, stderr = done.stdout, done.stderr
        if done.returncode:
            note = "failed: " + (stderr.strip().splitlines() or ["no output"])[-1][:160]
    except subprocess.TimeoutExpired as stopped:
        stdout, stderr = _text(stopped.stdout), _text(stopped.stderr)
        note = f"stopped after {timeout:.0f} s"
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        return dict(skipped=note or "failed: no output")
    result = json.loads(lines[-1][len("RESULT ") :])
    return {**result, "note": note} if note else result


def _text(output: bytes | str | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def table(results: dict[str, dict], smoke: bool) -> list[list[str]]:
    """The printed rows: images/s, MFU (known devices, full size only), memory, compile."""
    rows = []
    for name, result in results.items():
        if "skipped" in result:
            rows.append([name, f"skipped: {result['skipped']}", "", "", "", "", ""])
            continue
        if "note" in result:
            rows.append([name, f"(later rows: {result['note']})", "", "", "", "", ""])
        peak = next((v for k, v in PEAK_TFLOPS.items() if k in result["device"]), None)
        for row in result["rows"]:
            flop = FORWARD_GFLOP * 1e9 * (3 if row["what"] == "train step" else 1)
            mfu = row["rate"] * flop / (peak * 1e12) * 100 if peak and not smoke else None
            memory = result["peak_gib"]
            rows.append(
                [
                    name,
                    row["what"],
                    str(row["batch"]),
                    f"{row['rate']:.1f}",
                    "-" if mfu is None else f"{mfu:.1f}",
                    "-" if memory is None else f"{memory:.2f}",
                    f"{row['compile_s']:.2f}",
                ]
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Parses the arguments; runs one worker, or every contender and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument("--only", default=",".join(CONTENDERS), help="contenders, comma-separated")
    parser.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--budget", type=float, default=300.0, help="seconds for the whole GPU run (default 300)"
    )
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.smoke)
        return
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - set(CONTENDERS))
    if unknown:
        parser.error(f"unknown contenders {unknown}; known: {', '.join(CONTENDERS)}")
    # The GPU run stays within --budget, the contenders in order of importance
    # (the smoke run, on a loaded CPU, gets 10 minutes per contender).
    deadline = time.monotonic() + args.budget
    results = {}
    for i, name in enumerate(names):
        # What is left, less RESERVE_S for each contender after this one.
        share = max(deadline - time.monotonic() - RESERVE_S * (len(names) - i - 1), 1.0)
        results[name] = run_contender(name, args.smoke, 600.0 if args.smoke else share)
    devices = {r["device"] for r in results.values() if "device" in r}
    print(f"ViT {sizes(args.smoke)['model']['name']}, bf16; device: {', '.join(devices) or '-'}")
    rows = [list(COLUMNS), *table(results, args.smoke)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
