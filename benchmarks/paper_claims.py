"""The paper's data-size claim at the scale of one CPU (run by hand; ``--quick`` is tested).

    python benchmarks/paper_claims.py [--out runs/paper_claims] [--quick]

Three models of one size class are trained from scratch on nested, stratified
subsets (5-100%) of the embedded digits' 1,437 training images, three seeds each,
and compared as in the paper's Figures 3-5: held-out top-1 accuracy (360 images)
and the 5-shot linear accuracy of the frozen features (big_vision's ``fewshot_lsr``,
shots drawn from the run's own subset) against training-set size. The ViT trained
on the whole split (first seed) gives Figure 7's mean attention distance against
depth and position-embedding similarity.

Models (parameters with the 10-class head):
    ViT-Mu/4         hidden 64, 2 layers, 4 heads, MLP 128, 4x4 patches        72,010
    R5x0.5+ViT-Mu/4  the same transformer on a ResNet-v2 stem (root and one
                     bottleneck unit, width 0.5, stride 4), 1x1 patches        100,970
    BiT-R14x0.5      ResNet-v2, one stage of 4 units, width 0.5                 78,250

One recipe, the digits main job's, set once and frozen: AdamW (2e-3, weight decay
0.05 on kernels), 10% warm-up then cosine to 0, batch 32, no augmentation (digits are
neither flip- nor crop-invariant), 1,000 steps per run at every size (equal compute:
22 epochs of the whole split, 457 of the 5% subset), the final weights (no early
stopping); the transformers keep the main job's dropout 0.1, the ResNet has none (as
BiT). A seed fixes its nested subsets, the initialisation and the batch order.

Outputs in ``--out``: ``table.md``, ``results.json`` (every run), ``data_scaling.png``,
``mean_attention_distance.png``, ``position_embedding_similarity.png``; a full run
also copies the figures and the table to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from collections.abc import Callable

import keras
import numpy as np
from paper_claims_report import plot_distance, plot_scaling, write_table

from keras_vit import analysis
from keras_vit.analysis import plots
from keras_vit.data import load_digits
from keras_vit.models import ResNetV2, ViT
from keras_vit.training.fewshot import fewshot

FRACTIONS = (0.05, 0.1, 0.25, 0.5, 1.0)
SEEDS = (0, 1, 2)
STEPS = 1000
SHOTS = 5
EVAL_BATCH = 256
STEPS_PER_EXECUTION = 50  # optimizer steps per call into TensorFlow
RECIPE = dict(batch_size=32, learning_rate=2e-3, weight_decay=0.05, warmup=0.1)
QUICK = dict(fractions=(0.1, 1.0), seeds=(0,), steps=12)
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
FIGURES = ("data_scaling.png", "mean_attention_distance.png", "position_embedding_similarity.png")

_TRANSFORMER = dict(hidden_size=64, num_layers=2, num_heads=4, mlp_dim=128, dropout_rate=0.1)
MODELS: dict[str, Callable[[], keras.Model]] = {
    "ViT-Mu/4": lambda: ViT(image_size=16, patch_size=4, num_classes=10, **_TRANSFORMER),
    "R5x0.5+ViT-Mu/4": lambda: ViT(
        16, 1, num_classes=10, resnet_layers=(1,), resnet_width=0.5, **_TRANSFORMER
    ),
    "BiT-R14x0.5": lambda: ResNetV2(layers=(4,), width=0.5, image_size=16, num_classes=10),
}


def nested_subsets(labels: np.ndarray, fractions, seed: int) -> dict[float, np.ndarray]:
    """Stratified, nested subsets of a split: each the first part of one shuffle per class.

    Args:
        labels: integer labels of the whole split.
        fractions: shares of the split, each in (0, 1].
        seed: the shuffle's seed.

    Returns:
        ``{fraction: sorted indices}``; a smaller fraction's indices lie inside a larger one's.
    """
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    return {
        f: np.sort(np.concatenate([o[: max(1, round(f * len(o)))] for o in orders]))
        for f in fractions
    }


def compile_model(model: keras.Model, steps: int) -> None:
    """The shared recipe: AdamW with decay on kernels only, warm-up then cosine.

    Not ``jit_compile``: XLA took minutes to compile the ViT's training step on
    this CPU, longer than the run it would speed up.
    """
    warmup = int(RECIPE["warmup"] * steps)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps - warmup, warmup_target=RECIPE["learning_rate"], warmup_steps=warmup
    )
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=RECIPE["weight_decay"])
    optimizer.exclude_from_weight_decay(
        var_list=[v for v in model.trainable_variables if not v.path.endswith("kernel")]
    )
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer, loss, steps_per_execution=min(STEPS_PER_EXECUTION, steps))


def initial_states(name: str, seeds) -> dict[int, list[np.ndarray]]:
    """The variables (weights, dropout seeds) of ``MODELS[name]()`` built under each seed.

    Made before any training: seeding TensorFlow retraces every ``tf.function``.
    """
    states = {}
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        states[seed] = [np.array(v) for v in MODELS[name]().variables]
    return states


class Contender:
    """One architecture, compiled and traced once (10-30 s here, as long as a run).

    Each run restarts the one model: its variables from ``initial_states``, the
    optimizer's (step count, moments) zeroed.

    Args:
        name: a key of ``MODELS``.
        steps: optimizer steps per run.
        starts: ``initial_states(name, seeds)``.
    """

    def __init__(self, name: str, steps: int, starts: dict[int, list[np.ndarray]]):
        self.name, self.steps, self.starts = name, steps, starts
        self.model = MODELS[name]()
        compile_model(self.model, steps)
        head = self.model.get_layer("head")
        self.outputs = keras.Model(self.model.inputs, [head.input, self.model.output])
        start = time.perf_counter()  # trace training and prediction once, on zeros
        warm, size = min(steps, STEPS_PER_EXECUTION), RECIPE["batch_size"]
        zeros = np.zeros((size, 16, 16, 3), np.float32)
        stream = batches(zeros, np.zeros(size, np.int64), warm, 0)
        self.model.fit(stream, steps_per_epoch=warm, shuffle=False, verbose=0)
        self.predict(zeros)
        self.trace_seconds = time.perf_counter() - start

    def restart(self, seed: int) -> None:
        """Makes the model what ``MODELS[name]()`` builds under ``seed``, the optimizer new."""
        for variable, value in zip(self.model.variables, self.starts[seed], strict=True):
            variable.assign(value)
        for variable in self.model.optimizer.variables:
            variable.assign(keras.ops.zeros_like(variable))

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frozen features (the head's input) and logits; padded batches of one shape, one trace."""
        count = len(images)
        padded = np.pad(images, [(0, -count % EVAL_BATCH)] + [(0, 0)] * (images.ndim - 1))
        features, logits = self.outputs.predict(padded, batch_size=EVAL_BATCH, verbose=0)
        return np.asarray(features)[:count], np.asarray(logits)[:count]

    def run(self, data: tuple, subset: np.ndarray, seed: int) -> dict:
        """Trains on one subset from a fresh start and measures the result.

        Args:
            data: ``((x_train, y_train), (x_test, y_test))``.
            subset: indices into the training split.
            seed: initialisation and batch-order seed.

        Returns:
            The run's record: accuracy, few-shot accuracy, training seconds, params.
        """
        (x_train, y_train), (x_test, y_test) = data
        x, y = x_train[subset], y_train[subset]
        start = time.perf_counter()
        self.restart(seed)
        stream = batches(x, y, self.steps, seed)
        self.model.fit(stream, steps_per_epoch=self.steps, shuffle=False, verbose=0)
        seconds = time.perf_counter() - start
        features, logits = self.predict(np.concatenate([x, x_test]))
        train_f, test_f, logits = features[: len(y)], features[len(y) :], logits[len(y) :]
        shots = fewshot(train_f, y, test_f, y_test, num_classes=10, shots=(SHOTS,), seeds=3)
        accuracy = float(np.mean(np.argmax(logits, -1) == y_test))
        fewshot_accuracy, params = float(np.mean(shots[SHOTS])), self.model.count_params()
        return dict(
            model=self.name,
            train_images=len(subset),
            seed=seed,
            accuracy=accuracy,
            fewshot_accuracy=fewshot_accuracy,
            seconds=round(seconds, 2),
            params=params,
        )


def batches(x: np.ndarray, y: np.ndarray, steps: int, seed: int):
    """``steps`` batches: reshuffled epochs of ``(x, y)`` end to end, in an order from ``seed``.

    The order comes from NumPy, not from ``tf.data``'s shuffle, whose order would
    also depend on TensorFlow's global seed (the last seed of ``initial_states``).
    """
    import tensorflow as tf

    size, rng = RECIPE["batch_size"], np.random.default_rng(seed)
    epochs = -(-steps * size // len(y))
    order = np.concatenate([rng.permutation(len(y)) for _ in range(epochs)])[: steps * size]
    x, y = tf.constant(x), tf.constant(y)
    indices = tf.data.Dataset.from_tensor_slices(order.reshape(steps, size))
    return indices.map(lambda i: (tf.gather(x, i), tf.gather(y, i)))


def write_analysis(model: keras.Model, images: np.ndarray, out: str) -> dict:
    """Figure 7 right and centre for a trained ViT, and the numbers behind them.

    Returns:
        ``mean_attention_distance_px`` per layer and head, and the mean cosine similarity
        of position embeddings that are grid neighbours and of those that are not.
    """
    attentions = analysis.attention_weights(model, images)
    distances = np.stack([analysis.mean_attention_distance(a, patch_size=4) for a in attentions])
    uniform = float(analysis.patch_distances((4, 4), 4).mean())
    title = "ViT-Mu/4 on all digits, seed 0: pixels of the 16x16 input"
    plot_distance(distances, uniform, title, os.path.join(out, "mean_attention_distance.png"))
    similarity = analysis.position_embedding_similarity(model)
    plots.plot_position_similarity(
        similarity, os.path.join(out, "position_embedding_similarity.png")
    )
    steps_apart = analysis.patch_distances(similarity.shape[:2], 1).ravel()
    flat = similarity.reshape(steps_apart.shape)
    return dict(
        mean_attention_distance_px=distances.round(3).tolist(),
        uniform_attention_distance_px=round(uniform, 3),
        posemb_similarity_neighbours=round(float(flat[steps_apart == 1].mean()), 3),
        posemb_similarity_others=round(float(flat[steps_apart > 1.5].mean()), 3),
    )


def train_all(out: str, fractions, seeds, steps: int) -> tuple[list[dict], dict]:
    """Every run (seed, subset, model), printed as it ends; Figure 7 from the first full ViT.

    Returns:
        The run records, and the trace times and the ViT's mean attention distance per layer.
    """
    (x_train, y_train), test = load_digits()
    starts = {name: initial_states(name, seeds) for name in MODELS}
    contenders = [Contender(name, steps, starts[name]) for name in MODELS]
    extras = dict(trace_seconds={c.name: round(c.trace_seconds, 1) for c in contenders})
    print(f"traced (once per model, not in the run times): {extras['trace_seconds']} s")
    records = []
    for seed in seeds:
        subsets = nested_subsets(y_train, fractions, seed)
        for fraction in fractions:
            for contender in contenders:
                record = contender.run(((x_train, y_train), test), subsets[fraction], seed)
                records.append(dict(record, fraction=fraction))
                print(
                    f"{contender.name:>16} {record['train_images']:5d} images seed {seed}: "
                    f"accuracy {record['accuracy']:.3f}, {SHOTS}-shot "
                    f"{record['fewshot_accuracy']:.3f}, {record['seconds']:.1f} s",
                    flush=True,
                )
                first_full = fraction == max(fractions) and seed == seeds[0]
                if contender.name == "ViT-Mu/4" and first_full:
                    extras.update(write_analysis(contender.model, test[0], out))
    return records, extras


def reproduce(out: str, fractions, seeds, steps: int) -> dict:
    """Every run, then ``table.md``, ``data_scaling.png`` and ``results.json`` in ``out``.

    Args:
        out: output folder.
        fractions: training-subset shares.
        seeds: run seeds.
        steps: optimizer steps per run.

    Returns:
        What ``results.json`` holds: recipe, settings, extras and every run.
    """
    os.makedirs(out, exist_ok=True)
    start = time.perf_counter()
    records, extras = train_all(out, fractions, seeds, steps)
    total = round(time.perf_counter() - start, 1)
    settings = dict(seeds=seeds, fractions=fractions, steps=steps, shots=SHOTS, total_seconds=total)
    recipe_text = (
        f"One recipe for all models: AdamW {RECIPE['learning_rate']:g} (weight decay "
        f"{RECIPE['weight_decay']:g}), {RECIPE['warmup']:.0%} warm-up + cosine, batch "
        f"{RECIPE['batch_size']}, {steps} steps per run at every size, no augmentation."
    )
    write_table(records, settings, recipe_text, os.path.join(out, "table.md"))
    plot_scaling(records, fractions, SHOTS, os.path.join(out, "data_scaling.png"))
    recipe = dict(RECIPE, steps=steps, shots=SHOTS, augmentation="none")
    result = dict(recipe=recipe, settings=settings, **extras, runs=records)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result


def parse_args(argv=None) -> argparse.Namespace:
    """The command line; ``--quick`` sets tiny defaults and copies nothing unless told."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", default="runs/paper_claims", help="output folder")
    parser.add_argument("--quick", action="store_true", help="2 subsets, 1 seed, 12 steps")
    parser.add_argument("--steps", type=int, help=f"steps per run (default {STEPS})")
    parser.add_argument("--seeds", type=int, nargs="+", help=f"default {SEEDS}")
    parser.add_argument("--fractions", type=float, nargs="+", help=f"default {FRACTIONS}")
    parser.add_argument(
        "--results-dir",
        help=f"copies of figures and table ('': none; "
        f"full run default {RESULTS_DIR}, --quick default none)",
    )
    args = parser.parse_args(argv)
    defaults = dict(QUICK) if args.quick else dict(fractions=FRACTIONS, seeds=SEEDS, steps=STEPS)
    defaults["results_dir"] = "" if args.quick else RESULTS_DIR
    for key, value in defaults.items():
        setattr(args, key, value if getattr(args, key) is None else getattr(args, key))
    if not all(0 < f <= 1 for f in args.fractions) or args.steps < 1:
        parser.error("fractions must lie in (0, 1] and steps be positive")
    return args


def main(argv=None) -> int:
    """Runs the reproduction and prints its table.

    Args:
        argv: command-line arguments (None: ``sys.argv``).

    Returns:
        The exit status: 0, or 1 when an accuracy is not finite.
    """
    args = parse_args(argv)
    result = reproduce(args.out, sorted(args.fractions), list(args.seeds), args.steps)
    with open(os.path.join(args.out, "table.md")) as f:
        print(f.read())
    print(f"total {result['settings']['total_seconds']:.0f} s; outputs in {args.out}")
    if args.results_dir:
        os.makedirs(args.results_dir, exist_ok=True)
        for name in FIGURES + ("table.md",):
            shutil.copyfile(os.path.join(args.out, name), os.path.join(args.results_dir, name))
        print(f"figures and table copied to {args.results_dir}")
    return 0 if all(math.isfinite(r["accuracy"]) for r in result["runs"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
