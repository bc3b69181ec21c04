"""A small process between ``serve`` and ``tritonserver`` that cleans up after both.

``python path/to/guard.py WORKDIR -- tritonserver ARGS...`` (run by its file
path, so that it imports neither keras_vit nor TensorFlow) runs
``tritonserver`` in its own process group and, when that exits or the guard is
told to stop (SIGTERM, SIGINT, SIGHUP, or the death of the guard's parent, via
Linux's parent-death signal), stops the whole group (SIGTERM, then SIGKILL after
a grace period), removes the private backend folder ``WORKDIR`` and unlinks the
Python backend's ``/dev/shm`` regions that this server used and left behind (a
killed stub or server never unlinks its own). It exits with the server's status.
The Python backend stubs are ``tritonserver``'s children, in its group; a stub
also exits on its own when ``tritonserver`` dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1
SHM = Path("/dev/shm")
REGION = re.compile(r"triton_python_backend_shm_region_[0-9a-f-]+")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Asks Linux to send ``signum`` to this process when its parent dies.

    Meant for ``subprocess.Popen(preexec_fn=...)``; a no-op off Linux.

    Args:
        signum: the signal to receive.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)


def regions_of(pid: int) -> set[str]:
    """Python backend shared-memory regions a process and its children use.

    Args:
        pid: the ``tritonserver`` process.

    Returns:
        Region names (files in ``/dev/shm``), from the maps of ``pid`` and the
        command lines of its children (each stub is passed its region's name).
    """
    found: set[str] = set()
    with contextlib.suppress(OSError):
        found |= set(REGION.findall(Path(f"/proc/{pid}/maps").read_text()))
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            with contextlib.suppress(OSError):
                found |= set(REGION.findall(Path(f"/proc/{child}/cmdline").read_text()))
    return found


def _stop_group(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the server's process group, SIGKILL to what remains after ``grace``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):  # the stubs, and the server if still there
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run(workdir: str, command: list[str], grace: float = 20.0) -> int:
    """Runs ``command`` until it exits or the guard is told to stop, then cleans up.

    Args:
        workdir: the folder to remove afterwards ("" for none).
        command: the server's command line.
        grace: seconds between SIGTERM and SIGKILL.

    Returns:
        The server's exit status (negative: killed by that signal).
    """
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # serve blocks them to start us
    stop = []
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda s, _: stop.append(s))
    die_with_parent(signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before the parent-death signal was armed
        stop.append(signal.SIGTERM)
    process = subprocess.Popen(command, start_new_session=True)
    used: set[str] = set()
    while not stop and process.poll() is None:
        used |= regions_of(process.pid)
        time.sleep(0.5)
    used |= regions_of(process.pid)
    for signum in STOP_SIGNALS:  # finish the clean-up whatever arrives now
        signal.signal(signum, signal.SIG_IGN)
    _stop_group(process, grace)
    for name in used:
        with contextlib.suppress(OSError):
            (SHM / name).unlink()
    if workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return process.returncode


if __name__ == "__main__":
    separator = sys.argv.index("--")
    code = run(sys.argv[1], sys.argv[separator + 1 :])
    sys.exit(code if code >= 0 else 128 - code)
