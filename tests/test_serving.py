"""Export into a Triton model repository and a real tritonserver answering HTTP and gRPC."""

import subprocess
import threading
import time

import numpy as np
import pytest
import tensorflow as tf
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from keras_vit import cli, preprocess_input
from keras_vit.images import load_image, load_pixels
from keras_vit.models import create_model
from keras_vit.serving import export_model, python_backend_config, validate
from keras_vit.serving.client import check_model, classify, heal
from keras_vit.serving.server import TritonServer

LABELS = ["ant", "bee", "cat", "dog", "eel"]
TOLERANCE = 1e-5  # relative to the largest reference value


@pytest.fixture(scope="module")
def model():
    model = create_model("ViT-Mu/16", image_size=32, num_classes=5)
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(rng.normal(size=w.shape).astype("float32") * 0.1)
    return model


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    export_model(model, repo, "vit", labels=LABELS, max_batch_size=8)
    export_model(model, repo, "vit_jpeg", labels=LABELS, image_input="jpeg", max_batch_size=8)
    with TritonServer(repo) as running:
        yield running


def pixels(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def expected(model, images):
    return model.predict(preprocess_input(images), verbose=0)


def infer(module, url, name, data, dtype, outputs=None):
    client = module.InferenceServerClient(url)
    tensor = module.InferInput(name[1], list(data.shape), dtype)
    tensor.set_data_from_numpy(data)
    return client.infer(name[0], [tensor], outputs=outputs)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_served_logits_equal_in_process(server, model, protocol):
    module, url = (
        (httpclient, server.http_url) if protocol == "http" else (grpcclient, server.grpc_url)
    )
    images = pixels(3)
    result = infer(module, url, ("vit", "images"), images, "UINT8")
    reference = expected(model, images)
    logits = result.as_numpy("logits")
    assert np.abs(logits - reference).max() <= TOLERANCE * np.abs(reference).max()
    np.testing.assert_allclose(result.as_numpy("probabilities").sum(axis=1), 1.0, rtol=1e-5)


def test_jpeg_input_agrees_with_decoding_outside(server, model):
    images = pixels(2, seed=1)
    files = [tf.io.encode_jpeg(image, quality=90).numpy() for image in images]
    result = infer(
        httpclient,
        server.http_url,
        ("vit_jpeg", "image_bytes"),
        np.array([[f] for f in files], np.object_),
        "BYTES",
    )
    decoded = np.stack([tf.io.decode_jpeg(f, channels=3).numpy() for f in files])
    reference = expected(model, decoded)
    assert (
        np.abs(result.as_numpy("logits") - reference).max() <= TOLERANCE * np.abs(reference).max()
    )


def test_classification_labels(server, model, tmp_path):
    images = pixels(1, seed=2)
    best = int(np.argmax(expected(model, images)[0]))
    for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
        path = tmp_path / "image.png"
        path.write_bytes(tf.io.encode_png(images[0]).numpy())
        for name in ("vit", "vit_jpeg"):
            top = classify([path], url, name, protocol, top=2)[0]
            assert top[0][1:] == (best, LABELS[best]) and len(top) == 2


def test_client_pixels_are_the_rounded_resize(tmp_path):
    """What classify sends a uint8 model: the SavedModel's bilinear resize, rounded."""
    image = pixels(1, seed=4)[0]
    path = tmp_path / "i.png"
    path.write_bytes(tf.io.encode_png(image).numpy())
    sent = load_pixels(path, (20, 24))
    resized = tf.image.resize(tf.cast(image, tf.float32), (20, 24), method="bilinear")
    assert sent.dtype == np.uint8
    np.testing.assert_array_equal(sent, np.round(resized.numpy()))
    np.testing.assert_array_equal(load_pixels(path, (32, 32)), image)  # the file's own size
    np.testing.assert_array_equal(load_image(path, (20, 24)), preprocess_input(sent))
    with pytest.raises(ValueError, match="cannot read image"):
        load_pixels(tmp_path / "missing.png", (32, 32))


@pytest.mark.parametrize(
    "name, data, dtype, message",
    [
        (
            ("vit", "images"),
            np.zeros((1, 32, 32, 3), np.float32),
            "FP32",
            "data-type|datatype|FP32",
        ),
        (("vit", "images"), np.zeros((1, 16, 32, 3), np.uint8), "UINT8", "shape"),
        (("vit", "images"), np.zeros((9, 32, 32, 3), np.uint8), "UINT8", "batch"),
        (
            ("vit_jpeg", "image_bytes"),
            np.array([[b"\xff\xd8\xff broken"]], np.object_),
            "BYTES",
            "cannot decode image",
        ),
        (
            ("vit_jpeg", "image_bytes"),
            np.array([[b""]], np.object_),
            "BYTES",
            "cannot decode image",
        ),
    ],
    ids=["dtype", "shape", "batch-over-max", "corrupt-jpeg", "empty-jpeg"],
)
def test_bad_requests_get_a_clear_4xx(server, model, name, data, dtype, message):
    with pytest.raises(InferenceServerException, match=message) as error:
        infer(httpclient, server.http_url, name, data, dtype)
    assert error.value.status() == "400"
    assert check_model(server.http_url, "vit") and check_model(server.http_url, "vit_jpeg")


def test_concurrent_clients_and_dynamic_batching(server, model):
    images = pixels(8, seed=3)
    reference = expected(model, images)
    errors = []

    def client_loop(index):
        client = httpclient.InferenceServerClient(server.http_url)
        for _ in range(50):
            tensor = httpclient.InferInput("images", [1, 32, 32, 3], "UINT8")
            tensor.set_data_from_numpy(images[index : index + 1])
            logits = client.infer("vit", [tensor]).as_numpy("logits")
            if np.abs(logits - reference[index]).max() > TOLERANCE * np.abs(reference).max():
                errors.append(index)

    before = httpclient.InferenceServerClient(server.http_url).get_inference_statistics("vit")[
        "model_stats"
    ][0]
    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    stats = statistics_after(server.http_url, "vit", before, 400)
    inferences = stats["inference_count"] - before["inference_count"]
    executions = stats["execution_count"] - before["execution_count"]
    assert inferences == 400
    assert executions < inferences  # dynamic batching combined requests


def statistics_after(url, name, before, inferences, timeout=30):
    """The model's statistics once they count ``inferences`` more than ``before`` (or at timeout).

    Triton can report an execution's statistics after its responses are sent, so a
    client may hold every answer before the counts include the last ones; the
    caller still compares the counts exactly.
    """
    deadline = time.monotonic() + timeout
    with httpclient.InferenceServerClient(url) as client:
        while True:
            stats = client.get_inference_statistics(name)["model_stats"][0]
            counted = stats["inference_count"] - before["inference_count"]
            if counted >= inferences or time.monotonic() > deadline:
                return stats
            time.sleep(0.1)


def descendants(pid):
    """Live processes under ``pid`` (this server's only, not another test's)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            children = open(f"/proc/{parent}/task/{parent}/children").read().split()
        except OSError:
            continue
        for child in map(int, children):
            try:
                state = open(f"/proc/{child}/stat").read().split(") ")[1][0]
            except (OSError, IndexError):
                continue
            if state not in "ZX":
                found.append(child)
                todo.append(child)
    return found


def cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_dead_backend_is_noticed_and_reloaded(server):
    assert check_model(server.http_url, "vit")
    stubs = [p for p in descendants(server.process.pid) if "_backend_stub" in cmdline(p)]
    pids = [p for p in stubs if "/vit/" in cmdline(p)]
    assert pids, "no backend process found for the model"
    subprocess.run(["kill", "-9", *map(str, pids)], check=True)
    deadline = time.monotonic() + 30
    while check_model(server.http_url, "vit") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not check_model(server.http_url, "vit")
    assert heal(server.http_url, "vit", repo=server.repo)
    assert check_model(server.http_url, "vit", "grpc") or check_model(
        server.grpc_url, "vit", "grpc"
    )


def test_export_refuses_to_overwrite_and_validates(model, tmp_path):
    first = export_model(model, tmp_path, "m", labels=LABELS)
    assert first.name == "1" and export_model(model, tmp_path, "m", labels=LABELS).name == "2"
    with pytest.raises(ValueError, match="exists; pass overwrite=True"):
        export_model(model, tmp_path, "m", version=1, labels=LABELS)
    assert export_model(model, tmp_path, "m", version=1, labels=LABELS, overwrite=True).name == "1"
    with pytest.raises(ValueError, match="3 labels for a model with 5 classes"):
        export_model(model, tmp_path, "n", labels=LABELS[:3])
    assert not (tmp_path / "n").exists() or not any((tmp_path / "n").iterdir())
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "1",
        "2",
        "config.pbtxt",
        "labels.txt",
    ]
    config = validate(python_backend_config("t", (32, 32), 5, "jpeg", backend="tensorflow"))
    assert config.platform == "tensorflow_savedmodel"
    assert config.parameters["TF_SIGNATURE_DEF"].string_value == "serve_bytes"
    with pytest.raises(ValueError, match="invalid Triton model configuration"):
        validate('name: "x" max_batch_size: "many"')


def test_cli_export_and_predict(server, model, tmp_path, capsys):
    model.save(tmp_path / "m.keras")
    repo = tmp_path / "repo"
    assert (
        cli.main(
            ["export", "--model", str(tmp_path / "m.keras"), "--repo", str(repo), "--name", "x"]
        )
        == 0
    )
    assert (repo / "x" / "1" / "model.savedmodel").is_dir()
    image = tmp_path / "i.png"
    image.write_bytes(tf.io.encode_png(pixels(1)[0]).numpy())
    assert (
        cli.main(
            [
                "predict",
                str(image),
                "--url",
                server.grpc_url,
                "--protocol",
                "grpc",
                "--name",
                "vit",
                "--top",
                "3",
            ]
        )
        == 0
    )
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(str(image)) and line.count("(") == 3


def test_demo_main_job(tmp_path, capsys):
    """The README's main job, shortened: train, export, serve, classify through Triton."""
    argv = [
        "demo",
        "--epochs",
        "2",
        "--out",
        str(tmp_path / "run"),
        "--repo",
        str(tmp_path / "repo"),
        "--images",
        "3",
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "held-out accuracy: 0." in out
    assert "http: " in out and "grpc: " in out and "held-out digits right through Triton" in out
    assert (tmp_path / "repo" / "digits" / "1" / "model.savedmodel").is_dir()


def test_serving_a_repository_does_not_import_tensorflow():
    """``keras-vit serve`` (server, client, its command) loads no TensorFlow: only export needs it."""
    import sys

    code = (
        "import sys, keras_vit.cli.serve, keras_vit.serving.client, keras_vit.serving.server; "
        "print('tensorflow' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "False"


def test_cli_serve_answers_and_stops_on_ctrl_c(model, tmp_path):
    import os
    import signal
    import sys

    from keras_vit.serving.server import free_port

    export_model(model, tmp_path, "vit", labels=LABELS, max_batch_size=4)
    ports = [str(free_port()) for _ in range(3)]
    command = [sys.executable, "-m", "keras_vit.cli", "serve", "--repo", str(tmp_path)]
    for flag, port in zip(("--http-port", "--grpc-port", "--metrics-port"), ports):
        command += [flag, port]
    command += ["--check-every", "1"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        banner = process.stdout.readline()
        assert banner.startswith("serving vit from") and f"HTTP 127.0.0.1:{ports[0]}" in banner
        assert check_model(f"127.0.0.1:{ports[0]}", "vit")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        assert "stopping tritonserver" in process.stdout.read()
        assert not check_model(f"127.0.0.1:{ports[0]}", "vit")
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
