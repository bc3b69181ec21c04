"""Write-then-rename: a file is either absent, its old version, or complete.

The one helper for every file this package writes whole (``model.npz``,
``model.keras``, ``metrics.json``, a Triton ``config.pbtxt``): the data is
written to a temporary file beside the target, flushed to disk, renamed over
the target, and the rename itself is flushed by syncing the folder. The file
gets the mode a plain ``open`` would give it (``0o666`` less the umask), not the
owner-only mode of a temporary file, so that a server running as another user
(Triton) can read what ``export`` and ``train`` write.

Example:
    >>> import os, tempfile
    >>> from keras_vit.atomic import write_text_atomic
    >>> path = os.path.join(tempfile.mkdtemp(), "metrics.json")
    >>> write_text_atomic(path, '{"accuracy": 0.97}')
    >>> open(path).read(), os.listdir(os.path.dirname(path))
    ('{"accuracy": 0.97}', ['metrics.json'])
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable


def _fsync_path(path: str, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows.

    Returns:
        The umask bits, e.g. ``0o022``.
    """
    try:  # Linux 4.7+: read-only, so another thread never sees a changed umask.
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def plain_mode(folder: bool = False) -> int:
    """The mode ``open`` (``0o666``) or ``mkdir`` (``0o777``) would give, under the umask.

    Args:
        folder: for a folder rather than a file.

    Returns:
        The permission bits.
    """
    return (0o777 if folder else 0o666) & ~current_umask()


def _fsync_folder(directory: str) -> None:
    # Makes the rename durable. Some platforms and file systems (Windows, some
    # network mounts) cannot open or sync a folder; the rename stays atomic there.
    try:
        _fsync_path(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        pass


def write_atomic(path: str | os.PathLike, write: Callable[[str], None], suffix: str = "") -> None:
    """Calls ``write(temporary path)`` beside ``path``, then renames the result into place.

    The temporary file is synced to disk before the rename and the folder after
    it. If ``write`` fails, the temporary file is removed and ``path`` is untouched.

    Args:
        path: the final file.
        write: writes the whole file at the path it is given.
        suffix: the temporary file's suffix (writers such as ``model.save`` check it).
    """
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, plain_mode())  # mkstemp's 0600 would hide the file from other users
        _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_folder(directory)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` to ``path`` atomically.

    Args:
        path: the final file.
        text: its whole content.
    """

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    write_atomic(path, write)
