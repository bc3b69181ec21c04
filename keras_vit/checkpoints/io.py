"""Reading checkpoint files safely: no pickle, every array read eagerly, once."""

from __future__ import annotations

import os
import zipfile

import numpy as np


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the model, with the reason."""


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads every array of an ``.npz`` file eagerly (``allow_pickle=False``).

    Args:
        path: the ``.npz`` file.

    Returns:
        The arrays by key.

    Raises:
        CheckpointError: for a truncated, corrupt or pickled file.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: np.asarray(data[key]) for key in data.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
        raise CheckpointError(
            f"cannot read checkpoint {os.fspath(path)!r}: {error} "
            "(truncated, corrupt, or not a numeric .npz file)"
        ) from error


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a ``.safetensors`` file into numpy arrays.

    Args:
        path: the ``.safetensors`` file.

    Returns:
        The arrays by key.

    Raises:
        CheckpointError: for an unreadable file.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(os.fspath(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"cannot read checkpoint {os.fspath(path)!r}: {error}") from error


def read_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a ``.safetensors`` file or (any other name) an ``.npz`` file.

    Args:
        path: the checkpoint file.

    Returns:
        The arrays by key, as stored.
    """
    if os.fspath(path).endswith(".safetensors"):
        return read_safetensors(path)
    return read_npz(path)
