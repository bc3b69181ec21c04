"""One training per output folder: an OS lock that dies with its process.

``folder_lock`` takes ``fcntl.flock`` on ``<out>/train.lock`` and writes the
holder's PID and host into it. The kernel drops the lock when the process ends
in any way (SIGKILL included), so the file a killed run leaves behind blocks
nothing; a second training into a running one's folder is refused with the
PID and host that hold it. On systems without ``fcntl`` nothing is locked.

Example:
    >>> import tempfile
    >>> from keras_vit.training.lock import folder_lock
    >>> out = tempfile.mkdtemp()
    >>> with folder_lock(out):
    ...     with folder_lock(out):  # doctest: +ELLIPSIS
    ...         pass
    Traceback (most recent call last):
    ...
    ValueError: ... is in use by another training (PID ... on ...); ...
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

try:
    import fcntl
except ImportError:  # Windows: no lock
    fcntl = None

LOCK_NAME = "train.lock"


def make_out_dir(out_dir: str) -> None:
    """Creates the output folder, with a one-line error when it cannot be one.

    Args:
        out_dir: the run's folder (``--out``).

    Raises:
        ValueError: when ``out_dir`` is a file or cannot be created.
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"--out {out_dir!r} is a file, not a folder; choose a folder")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cannot create the --out folder {out_dir!r}: {error.strerror}") from None


def _holder(path: str) -> str:
    """Who holds the lock, as its file says (``PID n on host``)."""
    try:
        with open(path) as f:
            pid, _, host = f.read().strip().partition(" ")
    except OSError:
        pid, host = "", ""
    return f"PID {pid or '?'} on {host or '?'}"


def _acquire(path: str, out_dir: str) -> int:
    """Opens and locks ``path``; retries when the holder removed the file meanwhile."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            raise ValueError(f"cannot write in the --out folder {out_dir!r}: {error}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ValueError(
                f"{out_dir!r} is in use by another training ({_holder(path)}); wait for it "
                "to finish, stop it, or choose another --out"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # locked a file its holder had just removed: take the new one


@contextlib.contextmanager
def folder_lock(out_dir: str) -> Iterator[None]:
    """Holds ``out_dir``'s training lock (creating the folder) for the ``with`` block.

    Args:
        out_dir: the run's folder.

    Yields:
        Nothing; the lock is held until the block ends.

    Raises:
        ValueError: when another process holds the lock (naming its PID and
            host), or the folder cannot be created.
    """
    make_out_dir(out_dir)
    if fcntl is None:
        yield
        return
    path = os.path.join(out_dir, LOCK_NAME)
    fd = _acquire(path, out_dir)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still locked, so no one locks the old file after us
        os.close(fd)
