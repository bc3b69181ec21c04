"""The ``keras-vit`` command line.

``keras-vit demo`` is the main job: train on the embedded digits, export,
serve through Triton, classify; ``keras-vit train`` trains or fine-tunes with
a named recipe on any strategy, ``keras-vit evaluate`` measures top-1/top-5
accuracy, ``keras-vit fewshot`` the paper's few-shot linear accuracy,
``keras-vit models`` lists the variants and their named checkpoints,
``keras-vit classify`` runs a model on image files, ``keras-vit analyze``
draws what the model attends to, ``keras-vit export``/``serve``/``predict``
put a model into Triton and ask it.

Each command group is a module naming its commands, each with a help line and
a function that adds its arguments: ``demo``; ``train`` (train, evaluate,
fewshot); ``inspect`` (models, classify, analyze); ``serve`` (export, serve,
predict). Only the chosen command's arguments are built, and the modules
import TensorFlow inside those functions, so that ``main`` can silence
TensorFlow's start-up lines before it loads (``--verbose`` keeps them).
"""

from __future__ import annotations

import argparse
import sys

from keras_vit.cli import demo, inspect, serve, train
from keras_vit.cli.backend import apply_backend, requested_backend
from keras_vit.cli.quiet import quiet_frameworks

COMMANDS = {**demo.COMMANDS, **train.COMMANDS, **inspect.COMMANDS, **serve.COMMANDS}
VERBOSE_FLAGS = ("-v", "--verbose")


def _verbose_flag(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: a subcommand's default would overwrite a -v given before the command.
    parser.add_argument(
        *VERBOSE_FLAGS,
        action="store_true",
        default=argparse.SUPPRESS,
        help="show TensorFlow's own log lines (start-up, devices, retracing)",
    )


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``keras-vit`` parser: every command, with the arguments of one.

    Args:
        command: the command whose arguments to add (importing what they need);
            None adds none, enough for ``keras-vit --help``.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog="keras-vit", description="Vision Transformers for Keras 3."
    )
    _verbose_flag(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (text, add_arguments) in COMMANDS.items():
        subparser = commands.add_parser(name, help=text)
        _verbose_flag(subparser)
        if name == command:
            add_arguments(subparser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs a ``keras-vit`` command.

    Args:
        argv: the arguments after ``keras-vit``; None reads the command line.

    Returns:
        The exit status: 0, or 2 for an error the command explains.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    try:
        apply_backend(requested_backend(argv))  # before anything imports Keras
    except ValueError as error:
        print(f"keras-vit {command}: error: {error}", file=sys.stderr)
        return 2
    if command in COMMANDS and not any(arg in VERBOSE_FLAGS for arg in argv):
        quiet_frameworks()
    args = build_parser(command).parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:
        print(f"keras-vit {args.command}: error: {error}", file=sys.stderr)
        if getattr(args, "verbose", False) and hasattr(error, "details"):
            print(error.details(), file=sys.stderr)  # every key of a checkpoint mismatch
        return 2
