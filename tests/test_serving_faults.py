"""Faults around a real ``keras-vit serve``: killed stubs and servers, signals, bad requests.

Every test runs ``serve`` as its own process on loopback ports and hurts it with real
signals; afterwards no ``tritonserver``, stub, backend folder or ``/dev/shm`` region of
it may remain.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from keras_vit import cli
from keras_vit.serving import export_model
from keras_vit.serving.client import check_model
from keras_vit.serving.guard import regions_of
from keras_vit.serving.server import free_port

pytestmark = pytest.mark.slow
LABELS = ["ant", "bee", "cat", "dog", "eel"]
START = 300  # seconds a start (or a reload) may take on a crowded CPU machine


# The tests that reload the model (in a new stub, in a restarted tritonserver) run for
# both formats: the ONNX model's stub runs onnxruntime, and a restarted tritonserver
# must again read its Python-backend configuration (--model-config-name).
FORMATS = pytest.mark.parametrize("model_format", ["savedmodel", "onnx"], indirect=True)


@pytest.fixture(scope="module")
def model_format(request) -> str:
    return getattr(request, "param", "savedmodel")


@pytest.fixture(scope="module")
def repo(model_format, tmp_path_factory):
    from keras_vit.models import create_model

    model = create_model("ViT-Mu/16", image_size=32, num_classes=5)
    path = tmp_path_factory.mktemp(f"repo-{model_format}")
    export_model(model, path, "vit", labels=LABELS, max_batch_size=4, format=model_format)
    return path


class Serve:
    """A ``keras-vit serve`` process, its output collected by threads."""

    def __init__(self, repo: Path, check_every: float = 1.0):
        self.port = free_port()
        command = [sys.executable, "-m", "keras_vit.cli", "serve", "--repo", str(repo)]
        command += ["--http-port", str(self.port), "--grpc-port", str(free_port())]
        command += ["--metrics-port", str(free_port()), "--check-every", str(check_every)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.out, self.err = [], []
        for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err)):
            threading.Thread(target=lambda s=stream, a=lines: a.extend(s), daemon=True).start()
        self.url = f"127.0.0.1:{self.port}"
        self.seen: set[int] = set()  # every server-side process ever seen
        self.regions: set[str] = set()

    def tree(self) -> list[int]:
        """Live (non-zombie) descendants of serve: guard, tritonserver, stubs."""
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if alive(child):
                    found.append(child)
                    todo.append(child)
        self.seen |= set(found)
        for pid in found:
            self.regions |= regions_of(pid)
        return found

    def named(self, word: str) -> list[int]:
        return [p for p in self.tree() if word in cmdline(p)]

    def wait_for(self, condition, timeout: float = START, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.process.poll() is None or what == "exit", self.text()
            assert time.monotonic() < deadline, f"timed out waiting for {what}\n{self.text()}"
            time.sleep(0.2)

    def answers(self) -> bool:
        self.tree()
        return check_model(self.url, "vit")

    def text(self) -> str:
        return "".join(self.out) + "".join(self.err)

    def assert_nothing_left(self, timeout: float = 60) -> None:
        """No process, backend folder or shared-memory region of this server remains."""
        deadline = time.monotonic() + timeout
        while any(alive(p) for p in self.seen) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in self.seen if alive(p)], self.text()
        assert not [r for r in self.regions if Path("/dev/shm", r).exists()]
        assert not check_model(self.url, "vit")

    def kill(self) -> None:
        """After a failed test: SIGKILL serve (its guard cleans up), then whatever remains."""
        self.tree()
        if self.process.poll() is None:
            self.process.kill()
        deadline = time.monotonic() + 60
        while any(alive(p) for p in self.seen) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in self.seen:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] not in "ZX"
    except (OSError, IndexError):
        return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def workdirs(serve: Serve) -> set[str]:
    return {
        arg.split("=", 1)[1]
        for pid in serve.seen
        for arg in cmdline(pid).split()
        if arg.startswith("--backend-directory=")
    }


@pytest.fixture
def serve(repo):
    running = Serve(repo)
    yield running
    running.kill()


def post(url: str, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(f"http://{url}/v2/models/vit/infer", data=body)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def raw(shape, data) -> bytes:
    return json.dumps(
        {"inputs": [{"name": "images", "shape": shape, "datatype": "UINT8", "data": data}]}
    ).encode()


@FORMATS
def test_stub_killed_twice_is_healed_each_time_then_sigterm_cleans_up(serve, model_format):
    serve.wait_for(serve.answers, what="the model")
    # Malformed raw JSON never reaches model.py: Triton 2.51's HTTP frontend rejects it
    # with 500 and a message (400 would be right; a later Triton may fix it).
    for body in (b"{bad", raw([100000, 32, 32, 3], [1, 2, 3]), raw([-1, 32, 32, 3], [1])):
        status, text = post(serve.url, body)
        assert status in (400, 500) and json.loads(text)["error"]
    assert check_model(serve.url, "vit")
    for _ in range(2):
        stubs = serve.named("triton_python_backend_stub")
        assert len(stubs) == 1
        os.kill(stubs[0], signal.SIGKILL)
        started = time.monotonic()
        tensor = httpclient.InferInput("images", [1, 32, 32, 3], "UINT8")
        tensor.set_data_from_numpy(np.zeros((1, 32, 32, 3), np.uint8))
        with pytest.raises(Exception):  # noqa: B017,PT011  (any failure, but a fast one)
            httpclient.InferenceServerClient(serve.url).infer("vit", [tensor])
        assert time.monotonic() - started < 10
        serve.wait_for(lambda s=stubs: serve.named("triton_python_backend_stub") not in ([], s))
        serve.wait_for(serve.answers, what="the healed model")
        (stub,) = serve.named("triton_python_backend_stub")
        # The healed instance runs the same engine: TensorFlow only for the SavedModel.
        tensorflow = "tensorflow" in Path(f"/proc/{stub}/maps").read_text()
        assert tensorflow == (model_format == "savedmodel")
    folders = workdirs(serve)
    assert folders and all(Path(f).is_dir() for f in folders)
    serve.process.send_signal(signal.SIGTERM)
    assert serve.process.wait(timeout=90) == 0
    serve.assert_nothing_left()
    assert "stopping tritonserver (SIGTERM)" in serve.text() and "Traceback" not in serve.text()
    assert not any(Path(f).exists() for f in folders)


@FORMATS
def test_dead_tritonserver_is_restarted_and_sigkill_of_serve_leaves_nothing(serve):
    serve.wait_for(lambda: "serving vit" in serve.text(), what="the banner")
    (server,) = [p for p in serve.named("--model-repository") if "guard.py" not in cmdline(p)]
    os.kill(server, signal.SIGKILL)
    serve.wait_for(
        lambda: "restarting tritonserver in" in serve.text(), timeout=60, what="restart line"
    )
    serve.wait_for(serve.answers, what="the restarted model")
    assert "Traceback" not in serve.text()
    folders = workdirs(serve)
    serve.process.kill()
    serve.assert_nothing_left()
    assert not any(Path(f).exists() for f in folders)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP], ids=["SIGINT", "SIGHUP"])
def test_signal_during_start_up_leaves_no_server(serve, signum):
    # SIGINT once the model answers ready, before serve printed its banner; SIGHUP
    # while tritonserver is still loading the model.
    if signum == signal.SIGINT:
        ready = f"http://{serve.url}/v2/models/vit/ready"

        def model_ready():
            serve.tree()
            try:
                with urllib.request.urlopen(ready, timeout=1) as response:
                    return response.status == 200
            except OSError:
                return False

        serve.wait_for(model_ready, what="readiness")
    else:
        serve.wait_for(lambda: serve.named("triton_python_backend_stub"), what="the stub")
    serve.process.send_signal(signum)
    assert serve.process.wait(timeout=90) == 0, serve.text()
    serve.assert_nothing_left()
    assert "Traceback" not in serve.text() and "stopping tritonserver" in serve.text()


def test_predict_without_a_server_is_one_line(tmp_path, capsys):
    image = tmp_path / "i.png"
    image.write_bytes(b"not read before the server answers")
    url = f"127.0.0.1:{free_port()}"
    assert cli.main(["predict", str(image), "--url", url]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and url in err and "keras-vit serve" in err
