"""``keras-vit train``, ``evaluate`` and ``fewshot``: training and measuring a model on a dataset."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from keras_vit.cli.model_args import add_model_arguments, load_model
from keras_vit.cli.recipe_args import recipe_from_args, what_arguments

if TYPE_CHECKING:
    from keras_vit.training import RunOptions

_DESCRIPTION = """\
keras-vit train (or python -m keras_vit.train): train or fine-tune with a named recipe.

With no arguments it runs the digits recipe, the package's main job on the
embedded data (no download): a small ViT learns scikit-learn's handwritten
digits in under a minute on 2 CPU cores, is saved as model.keras and
as an official-format model.npz, and its held-out accuracy is printed last.

The same command trains on one device, several GPUs (--strategy mirrored),
several hosts (--strategy multiworker with TF_CONFIG) or a TPU
(--strategy tpu --tpu ADDRESS); rerunning it with the same --out
resumes from the newest backup.
"""

_EXAMPLES = """
examples:
  keras-vit train                                   # the digits main job, no download
  keras-vit train --recipe finetune --model ViT-B/16 --init augreg_in21k --dataset cifar10
  keras-vit train --recipe finetune --init runs/digits/model.npz --image-size 32 \\
      --dataset path/to/folder --steps 200 --out runs/folder-32   # the file's own architecture
  keras-vit train --recipe bit-hyperrule --model BiT-R50x1 --init bit_m_in21k --dataset oxford_iiit_pet
  keras-vit train --dataset path/to/folder          # train/<class>/*.jpg, test/<class>/*.jpg
  TF_CONFIG=... keras-vit train --strategy multiworker --recipe imagenet-scratch
"""


def _how_arguments(parser: argparse.ArgumentParser) -> None:
    from keras_vit.cli.backend import BACKENDS
    from keras_vit.training import PRECISIONS
    from keras_vit.training.strategy import STRATEGIES

    how = parser.add_argument_group("how to run")
    how.add_argument("--out", default="runs/digits", help="output folder (default runs/digits)")
    how.add_argument("--steps", type=int, default=None, help="optimizer steps (overrides epochs)")
    how.add_argument("--strategy", default="auto", choices=STRATEGIES)
    how.add_argument("--tpu", default=None, help="TPU name or address (or 'local' on a TPU VM)")
    how.add_argument(
        "--cpu-devices",
        type=int,
        default=None,
        help="split the CPU into this many logical devices (to try mirrored without GPUs)",
    )
    how.add_argument("--precision", default="fp32", choices=PRECISIONS)
    how.add_argument(
        "--backend",
        default=None,
        choices=BACKENDS,
        help="Keras backend, set before Keras is imported (default: KERAS_BACKEND, else "
        "tensorflow); on jax: keras.distribution over all devices, .npz backups",
    )
    how.add_argument(
        "--accum-steps", type=int, default=1, help="micro-batches per step (gradient accumulation)"
    )
    how.add_argument("--seed", type=int, default=0, help="seed of weights, data order, crops")
    how.add_argument("--deterministic", action="store_true", help="deterministic TensorFlow ops")
    how.add_argument(
        "--backup-every", type=int, default=500, help="steps between preemption backups"
    )
    how.add_argument(
        "--checkpoint-every", type=int, default=0, help="steps between kept checkpoints (0: off)"
    )
    how.add_argument("--keep", type=int, default=3, help="kept checkpoints (the newest)")
    how.add_argument(
        "--keep-every-hours",
        type=float,
        default=None,
        help="also keep one checkpoint per this many hours",
    )
    how.add_argument("--eval-every", type=int, default=0, help="steps between evaluations")
    how.add_argument("--log-every", type=int, default=None, help="steps between log lines")
    how.add_argument("--data-dir", default=None, help="TensorFlow Datasets data folder")
    how.add_argument("--manual-dir", default=None, help="manually downloaded TFDS files")
    how.add_argument(
        "--no-download", action="store_true", help="fail instead of downloading a TFDS dataset"
    )
    how.add_argument("--quiet", action="store_true", help="no progress bar")


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    from keras_vit.training import RECIPES

    parser.description = _DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    recipes = "\n".join(f"  {name:17s} {recipe.description}" for name, recipe in RECIPES.items())
    parser.epilog = "recipes:\n" + recipes + "\n" + _EXAMPLES
    what_arguments(parser)
    _how_arguments(parser)
    parser.set_defaults(run=_train)


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """How to run: output folder, strategy, precision, intervals, data location.

    Args:
        args: parsed ``keras-vit train`` arguments.

    Returns:
        The run options.
    """
    from keras_vit.training import RunOptions

    return RunOptions(
        out_dir=args.out,
        init=args.init,
        strategy=args.strategy,
        tpu=args.tpu,
        precision=args.precision,
        accum_steps=args.accum_steps,
        seed=args.seed,
        steps=args.steps,
        backup_every=args.backup_every,
        checkpoint_every=args.checkpoint_every,
        keep=args.keep,
        keep_every_hours=args.keep_every_hours,
        eval_every=args.eval_every,
        log_every=args.log_every,
        data_dir=args.data_dir,
        manual_dir=args.manual_dir,
        download=not args.no_download,
        deterministic=args.deterministic,
        verbose=0 if args.quiet else 1,
    )


def _train(args: argparse.Namespace) -> int:
    """``keras-vit train``: trains, saves, and prints the held-out accuracy."""
    if args.cpu_devices:
        from keras_vit.training.strategy import split_cpu

        split_cpu(args.cpu_devices)
    from keras_vit.training import fit

    result = fit(recipe_from_args(args), options_from_args(args))
    if result.paths:
        keras_path, npz_path = result.paths
        print(f"saved {keras_path} and {npz_path} (step {result.steps}, {result.seconds:.0f} s)")
    print(f"weights digest: {result.digest}; top-5 accuracy: {result.top5:.3f}", flush=True)
    print(f"held-out accuracy: {result.accuracy:.3f}", flush=True)
    return 0


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument(
        "--dataset",
        default="digits",
        help="'digits', a TFDS name or an image folder (default digits)",
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--data-dir", default=None, help="TensorFlow Datasets data folder")
    parser.add_argument("--no-download", action="store_true", help="never download a dataset")


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    from keras_vit.training.strategy import STRATEGIES

    _data_arguments(parser)
    parser.add_argument("--split", default="test", help="split to evaluate (default test)")
    parser.add_argument("--strategy", default="auto", choices=STRATEGIES)
    parser.add_argument("--tpu", default=None, help="TPU name or address")
    parser.set_defaults(run=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    """``keras-vit evaluate``: prints top-1 and top-5 accuracy and the loss on a split."""
    from keras_vit.data import load_source
    from keras_vit.training import evaluate_split
    from keras_vit.training.strategy import make_strategy

    strategy = make_strategy(args.strategy, args.tpu)
    source = load_source(args.dataset, args.data_dir, download=not args.no_download)
    with strategy.scope():
        model = load_model(args)
    metrics = evaluate_split(model, source, args.split, args.batch_size, strategy)
    print(
        f"{source.name} {args.split}: {int(metrics['examples'])} images, "
        f"top-1 accuracy {metrics['accuracy']:.4f}, top-5 accuracy {metrics['top5']:.4f}, "
        f"loss {metrics['loss']:.4f}"
    )
    return 0


def _fewshot_arguments(parser: argparse.ArgumentParser) -> None:
    from keras_vit.training.fewshot import L2_REG, SHOTS

    _data_arguments(parser)
    parser.add_argument("--train-split", default="train", help="split the shots come from")
    parser.add_argument("--eval-split", default="test", help="split accuracy is measured on")
    parser.add_argument("--shots", type=int, nargs="+", default=list(SHOTS))
    parser.add_argument("--seeds", type=int, default=3, help="random draws of the shots")
    parser.add_argument("--l2-reg", type=float, default=L2_REG, help="L2 regularisation")
    parser.add_argument("--json", default=None, help="also write the accuracies here")
    parser.set_defaults(run=_fewshot)


def _fewshot(args: argparse.Namespace) -> int:
    """``keras-vit fewshot``: prints few-shot linear accuracy of the model's frozen features."""
    import json

    import numpy as np

    from keras_vit.data import load_source
    from keras_vit.training.fewshot import extract_features, fewshot

    model = load_model(args)
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


# Command -> (help line, function adding its arguments and its ``run``).
COMMANDS = {
    "train": (
        "train or fine-tune with a named recipe on one device, GPUs, hosts or a TPU "
        "(default: the digits main job, no download)",
        _train_arguments,
    ),
    "evaluate": ("top-1 and top-5 accuracy of a model on a dataset split", _evaluate_arguments),
    "fewshot": (
        "few-shot linear accuracy of frozen features (regularised least squares, "
        "as the paper and big_vision)",
        _fewshot_arguments,
    ),
}
