"""One contender of ``benchmarks/speed.py`` in its own process (started by the driver).

    python benchmarks/speed_worker.py CONTENDER VARIANT

Reads one JSON request per line on stdin (``{"task": "infer"|"train", "batch",
"iters"}`` or ``{"task": "peak"}``) and answers each with one JSON line on
stdout: step times (or the matmul peak) and the process's peak RSS. The timm
contender runs under an interpreter with torch and timm and without keras_vit.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np


def vit_size(variant: str) -> dict[str, int]:
    """The sizes of a ViT variant, from keras_vit's one table.

    Args:
        variant: ``"S/16"`` or ``"B/16"``.

    Returns:
        ``hidden_size``, ``num_layers``, ``mlp_dim``, ``num_heads``, ``patch_size``.
    """
    # Imported here: the timm worker's interpreter has no keras_vit, and the
    # driver measures before it reports.
    from keras_vit.variants import parse_model_name

    return parse_model_name(f"ViT-{variant}")[2]


def _build_tf(contender: str, variant: str, task: str, batch: int) -> Callable[[], object]:
    import keras
    import tensorflow as tf

    if contender.startswith("keras_vit"):
        from keras_vit.models import create_model

        # fused: the kernels are XLA-compiled themselves; xla: the default (fused) model
        # with the whole step (AdamW included) compiled by XLA, the kernels inlined, as
        # Keras's `fit` compiles it; train: `keras-vit train`'s step, which compiles
        # the forward and backward pass alone (its update follows the all-reduce).
        impl = "reference" if contender.endswith("reference") else "fused"
        model = create_model(f"ViT-{variant}", attention_impl=impl)
        jit = contender.endswith("xla")
        if contender.endswith("train"):
            if task != "train":
                raise ValueError(f"{contender} measures training only")
            return _train_step_of_the_cli(model, batch)
    else:
        import keras_hub

        size = vit_size(variant)
        backbone = keras_hub.models.ViTBackbone(
            image_shape=(224, 224, 3),
            patch_size=size["patch_size"],
            num_layers=size["num_layers"],
            num_heads=size["num_heads"],
            hidden_dim=size["hidden_size"],
            mlp_dim=size["mlp_dim"],
        )
        images = keras.Input((224, 224, 3))
        model = keras.Model(images, keras.layers.Dense(1000)(backbone(images)[:, 0]))
        jit = contender.endswith("xla")
    x = tf.random.uniform((batch, 224, 224, 3), -1, 1)
    if task == "infer":
        step = tf.function(lambda: model(x, training=False), jit_compile=jit)
    else:
        labels = tf.random.uniform((batch,), 0, 1000, tf.int32)
        optimizer = keras.optimizers.AdamW(1e-4)
        # Built before the step is traced, as `fit` and `keras-vit train` build it:
        # built inside, the step is traced and compiled once more (ViT-S/16 batch 16:
        # about 150 MB more peak memory).
        optimizer.build(model.trainable_variables)
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


def _train_step_of_the_cli(model, batch: int) -> Callable[[], object]:
    import keras
    import tensorflow as tf

    from keras_vit.training.step import make_train_function

    optimizer = keras.optimizers.AdamW(1e-4)
    optimizer.build(model.trainable_variables)
    strategy = tf.distribute.get_strategy()
    train = make_train_function(model, optimizer, strategy, global_batch=batch)
    images = tf.random.uniform((batch, 224, 224, 3), -1, 1)
    labels = tf.one_hot(tf.random.uniform((batch,), 0, 1000, tf.int32), 1000)
    data = iter(tf.data.Dataset.from_tensors((images, labels, tf.ones([batch]))).repeat())
    return lambda: train(data, tf.constant(1)).numpy()


def _build_timm(variant: str, task: str, batch: int) -> Callable[[], object]:
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


def matmul_peak(framework: str) -> float:
    """The fp32 matmul speed (2048³, median of 5) of a framework.

    Args:
        framework: ``"numpy"``, ``"tensorflow"`` or ``"torch"``.

    Returns:
        GFLOP/s.
    """
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


def _timed(step: Callable[[], object], iterations: int) -> list[float]:
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def serve(contender: str, variant: str) -> None:
    """Answers one JSON request per stdin line with one JSON line on stdout.

    Args:
        contender: one of ``speed.CONTENDERS``.
        variant: ``"S/16"`` or ``"B/16"``.
    """
    if contender.startswith("keras_vit"):
        # Before TensorFlow loads: keras_vit's defaults (oneDNN on x86) apply as for a
        # user. keras-hub's workers run with TensorFlow's own (off on AVX2-only CPUs).
        import keras_vit  # noqa: F401
    steps = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request["task"] == "peak":
            reply = {"gflops": matmul_peak("torch" if contender == "timm" else "tensorflow")}
        else:
            key = (request["task"], request["batch"])
            warmup = 0.0
            if key not in steps:
                start = time.perf_counter()
                if contender == "timm":
                    steps[key] = _build_timm(variant, *key)
                else:
                    steps[key] = _build_tf(contender, variant, *key)
                _timed(steps[key], 2)  # warm-up: tracing and XLA compilation
                warmup = time.perf_counter() - start
            reply = {"times": _timed(steps[key], request["iters"]), "warmup": warmup}
        reply["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    serve(*sys.argv[1:3])
