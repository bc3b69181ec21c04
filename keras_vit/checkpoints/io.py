"""Reading checkpoint files safely: no pickle, headers checked before any data is read.

A file's arrays are declared before they are read: the ``.npy`` header of each
member of an ``.npz`` (``numpy.lib.format``), the JSON header of a
``.safetensors`` file. Names, shapes and dtypes are checked first (no object
arrays, sizes consistent with the file, in total at most ``max_bytes``), so a
215-byte file declaring a 4 TiB array, or a 2 MB one that inflates to 2 GiB,
is refused with one line before memory is spent. Then every array is read
eagerly, once, and refused if it holds NaN or infinity.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile

import numpy as np

# The most array bytes a checkpoint may declare when no model bounds it (the
# largest official file, BiT-M R152x4, holds 3.7 GB of float32).
MAX_CHECKPOINT_BYTES = 8 * 2**30
# What a model-bounded read allows beyond the model's own float32 parameters (a
# checkpoint may carry a larger head or finer position embeddings than the model).
_SLACK_BYTES = 256 * 2**20
_SAFETENSORS_DTYPES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8, "I8": 1, "U8": 1, "I16": 2}
_SAFETENSORS_DTYPES |= {"U16": 2, "I32": 4, "U32": 4, "I64": 8, "U64": 8, "BOOL": 1}
_MAX_SAFETENSORS_HEADER = 100 * 2**20


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the model, with the reason."""


def byte_budget(num_params: int) -> int:
    """The most bytes a checkpoint for a model of ``num_params`` parameters may declare.

    Args:
        num_params: the model's parameter count.

    Returns:
        Four times the model's float32 bytes plus 256 MiB, at most ``MAX_CHECKPOINT_BYTES``.
    """
    return min(MAX_CHECKPOINT_BYTES, 16 * num_params + _SLACK_BYTES)


def _check_budget(path: str, declared: dict[str, tuple[tuple[int, ...], int]], limit: int) -> None:
    """Refuses a file whose declared arrays (key -> (shape, bytes)) exceed ``limit`` bytes."""
    total = 0
    for key, (shape, nbytes) in declared.items():
        total += nbytes
        if total > limit:
            raise CheckpointError(
                f"checkpoint {path!r}: key {key!r} declares shape {shape} ({nbytes:,} bytes), "
                f"bringing the file to {total:,} bytes, over the limit of {limit:,} bytes; "
                "nothing was read"
            )


def _npy_header(member) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    return tuple(int(n) for n in shape), dtype


def npz_headers(archive: zipfile.ZipFile, path: str) -> dict[str, tuple[tuple[int, ...], int]]:
    """The shape and byte size each member of an open ``.npz`` declares; no data is read.

    Args:
        archive: the open zip file.
        path: its name, for messages.

    Returns:
        ``{key: (shape, bytes)}``.

    Raises:
        CheckpointError: for a non-``.npy`` member, an object (pickled) array, or a
            member too short for what its header declares.
    """
    declared = {}
    for info in archive.infolist():
        key = info.filename[: -len(".npy")] if info.filename.endswith(".npy") else None
        if key is None:
            raise CheckpointError(f"checkpoint {path!r}: member {info.filename!r} is not an array")
        with archive.open(info) as member:
            shape, dtype = _npy_header(member)
            header_bytes = member.tell()
        if dtype.hasobject:
            raise CheckpointError(
                f"checkpoint {path!r}: key {key!r} is a pickled object array "
                "(never unpickled: allow_pickle=False)"
            )
        nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if header_bytes + nbytes > info.file_size:
            raise CheckpointError(
                f"checkpoint {path!r}: key {key!r} declares shape {shape} {dtype} "
                f"({nbytes:,} bytes) but holds {info.file_size - header_bytes:,}; "
                "truncated or forged, nothing was read"
            )
        declared[key] = (shape, nbytes)
    return declared


def read_npz(
    path: str | os.PathLike, max_bytes: int = MAX_CHECKPOINT_BYTES
) -> dict[str, np.ndarray]:
    """Reads every array of an ``.npz`` file eagerly, after checking every header.

    Args:
        path: the ``.npz`` file.
        max_bytes: the most array bytes the file may declare in all.

    Returns:
        The arrays by key.

    Raises:
        CheckpointError: for a truncated, corrupt, pickled or oversized file.
    """
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as archive:
            _check_budget(path, npz_headers(archive, path), max_bytes)
            arrays = {}
            for info in archive.infolist():
                with archive.open(info) as member:
                    array = np.lib.format.read_array(member, allow_pickle=False)
                arrays[info.filename[: -len(".npy")]] = array
            return arrays
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
        raise CheckpointError(
            f"cannot read checkpoint {path!r}: {error} "
            "(truncated, corrupt, or not a numeric .npz file)"
        ) from error


def safetensors_headers(path: str) -> dict[str, tuple[tuple[int, ...], int]]:
    """The shape and byte size each tensor of a ``.safetensors`` file declares (its JSON header).

    Args:
        path: the file.

    Returns:
        ``{key: (shape, bytes)}``.

    Raises:
        CheckpointError: for a header that is malformed or inconsistent with the file.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        prefix = f.read(8)
        length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else -1
        if not 0 < length <= min(size - 8, _MAX_SAFETENSORS_HEADER):
            raise CheckpointError(f"cannot read checkpoint {path!r}: bad safetensors header")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CheckpointError(f"cannot read checkpoint {path!r}: {error}") from error
    data_size, declared = size - 8 - length, {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        try:
            shape = tuple(int(n) for n in entry["shape"])
            begin, end = (int(n) for n in entry["data_offsets"])
            nbytes = int(np.prod(shape, dtype=object)) * _SAFETENSORS_DTYPES[entry["dtype"]]
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"checkpoint {path!r}: bad header entry {key!r}") from error
        if min(shape, default=0) < 0 or end - begin != nbytes or not 0 <= begin <= end <= data_size:
            raise CheckpointError(
                f"checkpoint {path!r}: key {key!r} declares shape {shape} ({nbytes:,} bytes) "
                f"at bytes {begin}-{end} of {data_size:,}; truncated or forged, nothing was read"
            )
        declared[key] = (shape, nbytes)
    return declared


def read_safetensors(
    path: str | os.PathLike, max_bytes: int = MAX_CHECKPOINT_BYTES
) -> dict[str, np.ndarray]:
    """Reads a ``.safetensors`` file into numpy arrays, after checking its header.

    Args:
        path: the ``.safetensors`` file.
        max_bytes: the most tensor bytes the file may declare in all.

    Returns:
        The arrays by key.

    Raises:
        CheckpointError: for an unreadable, inconsistent or oversized file.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = os.fspath(path)
    try:
        _check_budget(path, safetensors_headers(path), max_bytes)
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(f"cannot read checkpoint {path!r}: {error}") from error


def check_finite(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Refuses arrays holding NaN or infinity, naming their keys.

    Args:
        path: the file, for the message.
        arrays: the arrays by key.

    Raises:
        CheckpointError: naming every key with a non-finite value.
    """
    bad = [
        key
        for key, value in arrays.items()
        if np.issubdtype(value.dtype, np.inexact) and not np.isfinite(value).all()
    ]
    if bad:
        shown = ", ".join(repr(key) for key in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise CheckpointError(
            f"checkpoint {path!r} holds NaN or infinity in {len(bad)} arrays: {shown} "
            "(pass allow_nonfinite=True to load it anyway)"
        )


def read_checkpoint(
    path: str | os.PathLike, max_bytes: int = MAX_CHECKPOINT_BYTES, allow_nonfinite: bool = False
) -> dict[str, np.ndarray]:
    """Reads a ``.safetensors`` file or (any other name) an ``.npz`` file.

    Args:
        path: the checkpoint file.
        max_bytes: the most array bytes the file may declare (checked before reading).
        allow_nonfinite: accept NaN and infinity in the arrays.

    Returns:
        The arrays by key, as stored.

    Raises:
        CheckpointError: for an unreadable, oversized or (unless allowed) non-finite file.
    """
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        arrays = read_safetensors(path, max_bytes)
    else:
        arrays = read_npz(path, max_bytes)
    if not allow_nonfinite:
        check_finite(path, arrays)
    return arrays


def checkpoint_keys(path: str | os.PathLike) -> list[str]:
    """The keys of an ``.npz`` or ``.safetensors`` file, from its headers (no array is read).

    Args:
        path: the file.

    Returns:
        Its keys.

    Raises:
        CheckpointError: for an unreadable file.
    """
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        return list(safetensors_headers(path))
    try:
        with zipfile.ZipFile(path) as archive:
            return [name.removesuffix(".npy") for name in archive.namelist()]
    except (zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(f"cannot read checkpoint {path!r}: {error}") from error
