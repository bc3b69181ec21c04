"""``--backend``: the Keras backend of one command, applied before Keras is imported.

Keras reads ``KERAS_BACKEND`` once, when it is first imported, so ``keras-vit
main`` applies the flag before anything else imports Keras (TensorFlow's
start-up silencing included). In a process that already imported Keras with
another backend (a notebook, ``cli.main`` called from a program) it refuses
clearly instead of silently training on the other one.

Example:
    >>> from keras_vit.cli.backend import requested_backend
    >>> requested_backend(["train", "--backend", "jax", "--steps", "5"])
    'jax'
    >>> requested_backend(["train", "--backend=tensorflow"]), requested_backend(["train"])
    ('tensorflow', None)
"""

from __future__ import annotations

import importlib.util
import os
import sys

BACKENDS = ("tensorflow", "jax")


def requested_backend(argv: list[str]) -> str | None:
    """The value of ``--backend`` in ``argv`` (None when it is not given).

    Args:
        argv: the command line after ``keras-vit``.

    Returns:
        The backend named, unchecked (argparse checks it against ``BACKENDS``).
    """
    for i, arg in enumerate(argv):
        if arg == "--backend" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--backend="):
            return arg.split("=", 1)[1]
    return None


def apply_backend(name: str | None) -> None:
    """Sets ``KERAS_BACKEND`` to ``name``, or checks that the Keras already imported uses it.

    Args:
        name: a backend, or None to leave the environment as it is.

    Raises:
        ValueError: when Keras was already imported with another backend, or for
            JAX training without TensorFlow (its input pipeline is ``tf.data``).
    """
    if name is None or name not in BACKENDS:
        return
    keras = sys.modules.get("keras")
    if keras is not None and keras.backend.backend() != name:
        raise ValueError(
            f"--backend {name}: Keras is already imported in this process with the "
            f"{keras.backend.backend()} backend; set KERAS_BACKEND={name} before Keras is "
            "imported, or run keras-vit in a new process"
        )
    if name == "jax" and importlib.util.find_spec("tensorflow") is None:
        raise ValueError(
            "--backend jax: training on JAX reads its data with tf.data and writes TensorBoard "
            "events with tf.summary, so TensorFlow must be installed (pip install tensorflow-cpu)"
        )
    os.environ["KERAS_BACKEND"] = name
