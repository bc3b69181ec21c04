"""Write-then-rename: a file is either absent, its old version, or complete.

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


def write_atomic(path: str | os.PathLike, write: Callable[[str], None], suffix: str = "") -> None:
    """Calls ``write(temporary path)`` beside ``path``, then renames the result into place.

    Args:
        path: the final file.
        write: writes the whole file at the path it is given.
        suffix: the temporary file's suffix (writers such as ``model.save`` check it).

    The temporary file is removed if ``write`` fails; ``path`` is then untouched.
    """
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` to ``path`` atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    write_atomic(path, write)
