"""ONNX export: parity in onnxruntime, the Triton configurations, and a real tritonserver
serving it through the Python backend with onnxruntime (no TensorFlow in its process)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import keras
import numpy as np
import onnx
import onnxruntime
import pytest
import tensorflow as tf
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from keras_vit import cli, preprocess_input
from keras_vit.models import ResNetV2, ViT, create_model
from keras_vit.serving import export_model, onnx_export, validate, write_onnx
from keras_vit.serving.client import check_model, heal
from keras_vit.serving.server import TritonServer, free_port

from .conftest import relative_error
from .test_serving import cmdline, descendants, statistics_after
from .test_serving_faults import post

LABELS = ["ant", "bee", "cat", "dog", "eel"]
TOLERANCE = 1e-5  # relative to the largest reference logit, float32
FAMILIES = {
    "vit": lambda: create_model("ViT-Mu/16", image_size=32, num_classes=5),
    "hybrid": lambda: ViT(
        image_size=32,
        patch_size=1,
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        mlp_dim=64,
        num_classes=5,
        resnet_layers=(1,),
        resnet_width=0.5,
    ),
    "bit": lambda: ResNetV2(layers=(1, 1, 1, 1), width=0.5, image_size=32, num_classes=5),
}


def perturbed(model, seed=0):
    """Every weight moved off its initial value, so that no part of the graph is trivial."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(w.numpy() + rng.normal(scale=0.05, size=w.shape).astype("float32"))
    return model


def pixels(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def keras_logits(model, images):
    return model.predict(preprocess_input(images), verbose=0)


@pytest.fixture(scope="module")
def model():
    return perturbed(create_model("ViT-Mu/16", image_size=32, num_classes=5))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_onnx_equals_keras_in_onnxruntime(family, tmp_path):
    model = perturbed(FAMILIES[family]())
    path = write_onnx(model, tmp_path / "model.onnx")
    proto = onnx.load(path)
    onnx.checker.check_model(proto)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    (graph_input,) = session.get_inputs()
    assert (graph_input.name, graph_input.type) == ("images", "tensor(uint8)")
    assert graph_input.shape == ["batch", 32, 32, 3]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [
        ("logits", ["batch", 5]),
        ("probabilities", ["batch", 5]),
    ]
    for batch in (1, 3):  # the batch axis is dynamic
        images = pixels(batch, seed=batch)
        logits, probabilities = session.run(None, {"images": images})
        reference = keras_logits(model, images)
        assert np.abs(reference).max() > 0.1
        assert relative_error(logits, reference) <= TOLERANCE
        assert relative_error(probabilities, tf.nn.softmax(reference).numpy()) <= TOLERANCE


# LayerNorms of each family: ViT-Mu has 2 blocks of 2 and the encoder's; BiT has none.
LAYER_NORMS = {"vit": 5, "hybrid": 3, "bit": 0}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_layer_norms_become_one_node_with_the_same_outputs(family, tmp_path, monkeypatch):
    model = perturbed(FAMILIES[family]())
    fused = onnx.load(write_onnx(model, tmp_path / "fused.onnx"))
    fuse = onnx_export.fuse_layer_norms
    monkeypatch.setattr(onnx_export, "fuse_layer_norms", lambda proto: 0)
    plain = onnx.load(write_onnx(model, tmp_path / "plain.onnx"))  # tf2onnx's graph as it is
    assert fuse(onnx.load(tmp_path / "plain.onnx")) == LAYER_NORMS[family]
    onnx.checker.check_model(fused)
    fused_ops, plain_ops = (Counter(n.op_type for n in p.graph.node) for p in (fused, plain))
    norms = LAYER_NORMS[family]
    assert (fused_ops["LayerNormalization"], plain_ops["LayerNormalization"]) == (norms, 0)
    # Each LayerNorm was 13 nodes, two of them GlobalAveragePools (mean and variance).
    assert plain_ops["GlobalAveragePool"] - fused_ops["GlobalAveragePool"] == 2 * norms
    assert len(plain.graph.node) - len(fused.graph.node) == 12 * norms
    images = pixels(3, seed=2)
    fused_out, plain_out = (
        onnxruntime.InferenceSession(p.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"images": images}
        )
        for p in (fused, plain)
    )
    assert relative_error(fused_out[0], plain_out[0]) <= TOLERANCE  # logits
    assert relative_error(fused_out[1], plain_out[1]) <= TOLERANCE  # probabilities


def test_onnx_export_layout_and_configurations(model, tmp_path):
    version = export_model(model, tmp_path, "m", labels=LABELS, max_batch_size=8, format="onnx")
    assert sorted(os.listdir(version)) == ["model.onnx", "model.py"]
    folder = tmp_path / "m"
    assert sorted(os.listdir(folder)) == ["1", "config.pbtxt", "configs", "labels.txt"]
    container = validate((folder / "config.pbtxt").read_text())
    assert container.platform == "onnxruntime_onnx"
    assert container.default_model_filename == "model.onnx"
    assert list(container.dynamic_batching.preferred_batch_size) == [4, 8]
    assert container.model_warmup[0].inputs["images"].zero_data
    assert container.output[1].label_filename == "labels.txt"
    python = validate((folder / "configs" / "python.pbtxt").read_text())
    assert python.backend == "python" and python.max_batch_size == 8
    assert (folder / "labels.txt").read_text().split() == LABELS
    gpu = export_model(model, tmp_path, "g", format="onnx", kind="KIND_GPU", accelerator="tensorrt")
    accelerator = validate((gpu.parent / "config.pbtxt").read_text()).optimization
    (trt,) = accelerator.execution_accelerators.gpu_execution_accelerator
    assert trt.name == "tensorrt" and trt.parameters["precision_mode"] == "FP16"
    # A SavedModel export of the same name retires the Python-backend configuration.
    export_model(model, tmp_path, "m", labels=LABELS)
    assert not (folder / "configs" / "python.pbtxt").exists()
    assert validate((folder / "config.pbtxt").read_text()).backend == "python"


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(image_input="jpeg"), "encoded-image input .* is SavedModel-only"),
        (dict(backend="tensorflow"), "backend applies to format='savedmodel'"),
        (dict(accelerator="tensorrt"), "needs kind KIND_GPU"),
        (dict(accelerator="cuda", format="savedmodel"), "accelerator applies to format='onnx'"),
        (dict(format="tflite"), "format must be one of"),
    ],
)
def test_onnx_export_refuses_what_it_cannot_do(model, tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        export_model(model, tmp_path, "m", labels=LABELS, **{"format": "onnx", **options})
    assert not (tmp_path / "m").exists()


def test_failed_onnx_export_leaves_no_version(tmp_path):
    keras.config.set_dtype_policy("mixed_float16")
    try:
        half = create_model("ViT-Mu/16", image_size=32, num_classes=5)
    finally:
        keras.config.set_dtype_policy("float32")
    with pytest.raises(ValueError, match="ONNX export needs a float32 model"):
        export_model(half, tmp_path, "m", labels=LABELS, format="onnx")
    assert os.listdir(tmp_path / "m") == []  # no version, no staging folder, no config


@pytest.mark.parametrize("fmt", ["savedmodel", "onnx"])
@pytest.mark.parametrize(
    "options", [dict(distilled=True, distillation_output="both"), dict(num_channels=1)]
)
def test_models_that_cannot_be_served_are_refused_before_anything_is_written(
    tmp_path, fmt, options
):
    model = create_model("ViT-Mu/16", image_size=32, num_classes=5, **options)
    with pytest.raises(ValueError, match="only a model with one output and RGB images"):
        export_model(model, tmp_path, "m", labels=LABELS[:5], format=fmt)
    assert not (tmp_path / "m").exists()


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    export_model(model, repo, "vit", labels=LABELS, max_batch_size=8, format="onnx")
    with TritonServer(repo) as running:
        yield running


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_served_onnx_equals_in_process(server, model, protocol):
    module, url = (
        (httpclient, server.http_url) if protocol == "http" else (grpcclient, server.grpc_url)
    )
    images = pixels(3, seed=5)
    tensor = module.InferInput("images", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images)
    result = module.InferenceServerClient(url).infer("vit", [tensor])
    assert relative_error(result.as_numpy("logits"), keras_logits(model, images)) <= TOLERANCE
    np.testing.assert_allclose(result.as_numpy("probabilities").sum(axis=1), 1.0, rtol=1e-5)


def test_instance_process_runs_onnxruntime_without_tensorflow(server):
    assert check_model(server.http_url, "vit")  # it has served a request
    stubs = [p for p in descendants(server.process.pid) if "/vit/" in cmdline(p)]
    assert len(stubs) == 1
    maps = open(f"/proc/{stubs[0]}/maps").read()
    assert "onnxruntime" in maps and "tensorflow" not in maps  # the shared objects mapped
    lines = [
        line for line in server.log_path.read_text().splitlines() if f"pid {stubs[0]})" in line
    ]
    assert lines and '\\"onnxruntime\\": true, \\"tensorflow\\": false' in lines[-1]


@pytest.mark.parametrize(
    "data, dtype, message",
    [
        (np.zeros((1, 32, 32, 3), np.float32), "FP32", "data-type|datatype|FP32"),
        (np.zeros((1, 16, 32, 3), np.uint8), "UINT8", "shape"),
        (np.zeros((9, 32, 32, 3), np.uint8), "UINT8", "batch"),
    ],
    ids=["dtype", "shape", "batch-over-max"],
)
def test_bad_requests_are_refused_and_serving_goes_on(server, data, dtype, message):
    tensor = httpclient.InferInput("images", list(data.shape), dtype)
    tensor.set_data_from_numpy(data)
    with pytest.raises(InferenceServerException, match=message) as error:
        httpclient.InferenceServerClient(server.http_url).infer("vit", [tensor])
    assert error.value.status() == "400"
    assert check_model(server.http_url, "vit") and check_model(server.grpc_url, "vit", "grpc")


def test_malformed_json_is_refused_and_serving_goes_on(server):
    def raw(shape, data):
        inputs = [{"name": "images", "shape": shape, "datatype": "UINT8", "data": data}]
        return json.dumps({"inputs": inputs}).encode()

    for body in (b"{bad", raw([100000, 32, 32, 3], [1, 2, 3]), raw([-1, 32, 32, 3], [1])):
        status, text = post(server.http_url, body)
        assert status in (400, 500) and json.loads(text)["error"]
    assert check_model(server.http_url, "vit")


def test_concurrent_clients_are_batched(server, model):
    images = pixels(4, seed=6)
    reference = keras_logits(model, images)
    client = httpclient.InferenceServerClient(server.http_url)
    before = client.get_inference_statistics("vit")["model_stats"][0]
    errors = []

    def client_loop(index):
        own = httpclient.InferenceServerClient(server.http_url)
        tensor = httpclient.InferInput("images", [1, 32, 32, 3], "UINT8")
        tensor.set_data_from_numpy(images[index : index + 1])
        for _ in range(25):
            logits = own.infer("vit", [tensor]).as_numpy("logits")
            if relative_error(logits, reference[index : index + 1]) > TOLERANCE:
                errors.append(index)

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    stats = statistics_after(server.http_url, "vit", before, 100)
    assert stats["inference_count"] - before["inference_count"] == 100
    assert stats["execution_count"] - before["execution_count"] < 100


def test_dead_onnx_instance_is_reloaded(server, model):
    (stub,) = [p for p in descendants(server.process.pid) if "/vit/" in cmdline(p)]
    os.kill(stub, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while check_model(server.http_url, "vit") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not check_model(server.http_url, "vit")
    assert heal(server.http_url, "vit", repo=server.repo)
    test_served_onnx_equals_in_process(server, model, "grpc")


def test_cli_export_serve_predict_onnx(model, tmp_path, capsys):
    model.save(tmp_path / "m.keras")
    repo, keras_file = tmp_path / "repo", str(tmp_path / "m.keras")
    argv = ["export", "--model", keras_file, "--repo", str(repo), "--name", "vit"]
    assert cli.main([*argv, "--format", "onnx", "--max-batch-size", "4"]) == 0
    assert (repo / "vit" / "1" / "model.onnx").is_file()
    assert cli.main([*argv, "--format", "onnx", "--image-input", "jpeg"]) == 2
    assert "SavedModel-only" in capsys.readouterr().err
    image = tmp_path / "i.png"
    image.write_bytes(tf.io.encode_png(pixels(1, seed=7)[0]).numpy())
    best = int(np.argmax(keras_logits(model, pixels(1, seed=7))[0]))
    ports = [free_port() for _ in range(3)]
    command = [sys.executable, "-m", "keras_vit.cli", "serve", "--repo", str(repo)]
    for flag, port in zip(("--http-port", "--grpc-port", "--metrics-port"), ports):
        command += [flag, str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().startswith("serving vit from")
        for protocol, port in (("http", ports[0]), ("grpc", ports[1])):
            predict = ["predict", str(image), "--url", f"127.0.0.1:{port}", "--name", "vit"]
            assert cli.main([*predict, "--protocol", protocol, "--top", "2"]) == 0
            line = capsys.readouterr().out.strip().splitlines()[-1]
            assert line.startswith(f"{image}: {best} (") and line.count("(") == 2  # labels: indices
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
