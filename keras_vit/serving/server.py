"""Starting and stopping a real ``tritonserver`` on a model repository.

Where no ``tritonserver`` is on PATH, the one shipped in the ``nvidia-pytriton``
wheel is used (Triton 2.51, Python backend only, runs on CPU): its Python
backend stub for the running Python is copied next to ``libtriton_python.so`` in
a private backend directory, the virtualenv's ``bin`` goes first on PATH, and
LD_LIBRARY_PATH gets the base Python's LIBDIR and the wheel's libraries. That
server has no ONNX Runtime backend, so it starts with
``--model-config-name=python``: an ONNX export is served through its
``configs/python.pbtxt`` (Python backend, onnxruntime in ``model.py``); models
without that file use their ``config.pbtxt``.

The server runs under ``guard.py`` (a process of its own, dying with its parent
through Linux's parent-death signal): whatever happens to the Python process
that started it (an exception, any signal, SIGKILL), the guard stops
``tritonserver`` and its backend stubs, removes the private backend folder and
unlinks the ``/dev/shm`` regions they leave behind. Linux sends the
parent-death signal when the *thread* that started the server ends: start it
from a thread that outlives it (the main thread, as ``serve`` and ``demo`` do).

Example (not run here: it starts a server)::

    with TritonServer("triton_repo") as server:
        print(server.http_url)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from keras_vit.serving.config import PYTHON_CONFIG
from keras_vit.serving.guard import STOP_SIGNALS, die_with_parent

GUARD = Path(__file__).with_name("guard.py")


def free_port() -> int:
    """Asks the system for a free port.

    Returns:
        A TCP port on 127.0.0.1 that was unused a moment ago.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pytriton_layout() -> tuple[Path, Path, Path]:
    """(tritonserver binary, python backend dir, stub) from the nvidia-pytriton wheel."""
    try:
        import pytriton
    except ImportError:
        raise RuntimeError(
            "no tritonserver on PATH and the nvidia-pytriton wheel is not installed "
            "(pip install 'keras-vit[serve]')"
        ) from None
    root = Path(pytriton.__file__).parent / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise RuntimeError(f"nvidia-pytriton ships no Python backend stub for Python {version}")
    return root / "bin" / "tritonserver", root / "backends" / "python", stub


class TritonServer:
    """A ``tritonserver`` process on loopback ports, stopped on exit.

    Args:
        repo: the model repository.
        http_port: HTTP port (a free one when None); gRPC and metrics likewise.
        grpc_port: gRPC port.
        metrics_port: metrics port.
        host: address to bind (127.0.0.1 unless told otherwise).
        explicit: start with ``--model-control-mode=explicit --load-model=*``
            so that models can be reloaded.
        log: where the server's output goes (a file path), or None for a temp file.
        start_timeout: seconds ``with TritonServer(...)`` waits for readiness (every
            model loaded; a SavedModel compiles its batch buckets while loading).
    """

    def __init__(
        self,
        repo: str | os.PathLike,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        host: str = "127.0.0.1",
        explicit: bool = True,
        log: str | os.PathLike | None = None,
        start_timeout: float = 120.0,
    ):
        self.repo = Path(repo).resolve()
        if not self.repo.is_dir():
            raise ValueError(f"model repository {self.repo} does not exist")
        self.host = host
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.explicit = explicit
        self.start_timeout = start_timeout
        self.log_path = Path(log) if log else Path(tempfile.mkstemp(suffix=".tritonserver.log")[1])
        self.process: subprocess.Popen | None = None  # the guard, parent of tritonserver
        self._workdir = ""

    @property
    def http_url(self) -> str:
        """``host:port`` of the HTTP endpoint."""
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC endpoint."""
        return f"{self.host}:{self.grpc_port}"

    def _command_and_env(self) -> tuple[list[str], dict]:
        env = dict(os.environ)
        binary = shutil.which("tritonserver")
        backend_args: list[str] = []
        if binary is None:
            binary, backend, stub = _pytriton_layout()
            self._workdir = tempfile.mkdtemp(prefix="keras-vit-triton-")
            python_dir = Path(self._workdir) / "python"
            python_dir.mkdir()
            for item in (*backend.glob("*.so"), *backend.glob("*.py"), stub):
                shutil.copy2(item, python_dir / item.name)
            backend_args = [
                f"--backend-directory={self._workdir}",
                f"--model-config-name={PYTHON_CONFIG}",
            ]
            libs = Path(binary).parents[3] / "nvidia_pytriton.libs"  # in site-packages
            paths = [sysconfig.get_config_var("LIBDIR"), str(libs), env.get("LD_LIBRARY_PATH", "")]
            env["LD_LIBRARY_PATH"] = ":".join(p for p in paths if p)
            env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        command = [
            str(binary),
            f"--model-repository={self.repo}",
            *backend_args,
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--exit-on-error=false",
            "--log-verbose=0",
        ]
        if self.explicit:
            command += ["--model-control-mode=explicit", "--load-model=*"]
        return command, env

    def start(self, timeout: float = 120.0) -> TritonServer:
        """Starts the server and waits until it is ready.

        Args:
            timeout: seconds to wait for readiness.

        Returns:
            The server itself.

        Raises:
            RuntimeError: with the tail of the server's log, when it exits or is
                not ready in time (it is stopped then). Whatever interrupts the
                start (KeyboardInterrupt included) stops the server first.
        """
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> TritonServer:
        with _signals_blocked():  # a Ctrl-C now would leave a started guard untracked
            command, env = self._command_and_env()
            command = [sys.executable, str(GUARD), self._workdir, "--", *command]
            with open(self.log_path, "w") as log:  # the child keeps its own descriptor
                self.process = subprocess.Popen(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"tritonserver exited ({self.process.returncode}):\n{self.log_tail()}"
                )
            if self.ready():
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"tritonserver not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def ready(self) -> bool:
        """Asks the server's HTTP readiness endpoint.

        Returns:
            Whether it answered 200.
        """
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's log.

        Args:
            lines: how many lines.

        Returns:
            The last ``lines`` lines, joined.
        """
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        """Stops the server (SIGTERM, then SIGKILL) and its backend processes.

        Args:
            timeout: seconds between SIGTERM and SIGKILL.
        """
        with _signals_blocked():  # a second Ctrl-C must not cut the clean-up short
            if self.process is not None and self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)  # the guard stops the server
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()  # tritonserver then gets its parent-death signal
                    self.process.wait()
            if self._workdir:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = ""

    def alive(self) -> bool:
        """Whether the server process (through its guard) is still running.

        Returns:
            False once ``tritonserver`` exited (the guard exits with it).
        """
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> TritonServer:
        return self.start(self.start_timeout)

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Holds SIGINT, SIGTERM and SIGHUP back (main thread only) until the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
