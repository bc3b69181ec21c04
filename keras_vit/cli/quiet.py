"""A quiet command line: TensorFlow's own log lines off unless ``--verbose``.

TensorFlow writes to file descriptor 2 from C++ as it loads, in two ways. Its
own logging (the CPU-feature notice, XLA's service lines, the cuInit error on a
machine without a GPU) honours ``TF_CPP_MIN_LOG_LEVEL`` when the variable is
set before the first of those lines. Abseil's logging before anyone called
``absl::InitializeLog()`` (that very warning, and cudart_stub's "Could not find
cuda drivers", once per library that links it) honours no setting: those lines
are captured while TensorFlow and Keras are imported, and shown only if the
import fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator


def _restore_stderr(saved: int) -> None:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)


@contextlib.contextmanager
def _stderr_captured() -> Iterator[None]:
    """Sends file descriptor 2 to a temporary file; writes that out if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            _restore_stderr(saved)
            captured.seek(0)
            os.write(2, captured.read())
            raise
        _restore_stderr(saved)


def quiet_frameworks() -> None:
    """Silences TensorFlow's log lines for the rest of the process.

    Variables the user has set keep their values. To silence TensorFlow's
    start-up lines it must run before TensorFlow is imported; later, it still
    silences TensorFlow's Python logger (retracing warnings, for one).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if "tensorflow" in sys.modules:
        return
    with _stderr_captured():
        import keras  # noqa: F401 -- loads a second library that links cudart_stub
        import tensorflow  # noqa: F401
