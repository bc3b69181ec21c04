"""Querying a served keras_vit model with ``tritonclient`` (HTTP or gRPC).

Example (not run here: it needs a server)::

    for top in classify(["cat.jpg"], url="127.0.0.1:8000", model="vit_b16"):
        print(top)   # [(score, class index, label), ...]
"""

from __future__ import annotations

import os

import numpy as np

PROTOCOLS = ("http", "grpc")


def client_module(protocol: str):
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}; got {protocol!r}")
    if protocol == "http":
        import tritonclient.http as module
    else:
        import tritonclient.grpc as module
    return module


def model_input(client, model: str, protocol: str) -> tuple[str, list[int]]:
    """The model's input name and dims (without the batch) from the server's config."""
    config = client.get_model_config(model)
    if protocol == "grpc":
        entry = config.config.input[0]
        return entry.name, list(entry.dims)
    entry = config["input"][0]
    return entry["name"], [int(d) for d in entry["dims"]]


def _pixels(path: str, size: list[int]) -> np.ndarray:
    from keras_vit.images import load_image

    return np.round((load_image(path, tuple(size[:2])) + 1.0) * 127.5).astype(np.uint8)


def classify(
    images: list[str | os.PathLike],
    url: str = "127.0.0.1:8000",
    model: str = "vit",
    protocol: str = "http",
    top: int = 5,
) -> list[list[tuple[float, int, str]]]:
    """Top classes of image files, from Triton's classification extension.

    Files are sent as they are to a model exported with ``image_input="jpeg"``,
    or decoded and resized here for a uint8 model.

    Returns:
        For each image, ``top`` tuples ``(score, class index, label)``, best first.
    """
    module = client_module(protocol)
    client = module.InferenceServerClient(url)
    name, dims = model_input(client, model, protocol)
    if name == "image_bytes":
        data = np.array([[open(path, "rb").read()] for path in images], dtype=np.object_)
        tensor = module.InferInput(name, list(data.shape), "BYTES")
    else:
        data = np.stack([_pixels(os.fspath(path), dims) for path in images])
        tensor = module.InferInput(name, list(data.shape), "UINT8")
    tensor.set_data_from_numpy(data)
    output = module.InferRequestedOutput("probabilities", class_count=top)
    result = client.infer(model, [tensor], outputs=[output]).as_numpy("probabilities")
    parsed = []
    for row in result.reshape(len(images), -1):
        entries = []
        for item in row:
            score, index, label = item.decode().split(":", 2)
            entries.append((float(score), int(index), label))
        parsed.append(entries)
    return parsed


def check_model(url: str, model: str, protocol: str = "http") -> bool:
    """A real inference on a blank input: True when the model answers.

    A model whose backend process died still reports READY while every request
    fails, so readiness alone says nothing.
    """
    module = client_module(protocol)
    client = module.InferenceServerClient(url)
    try:
        name, dims = model_input(client, model, protocol)
        if name == "image_bytes":
            import tensorflow as tf

            blank = tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)).numpy()
            data, dtype = np.array([[blank]], dtype=np.object_), "BYTES"
        else:
            data, dtype = np.zeros([1, *dims], np.uint8), "UINT8"
        tensor = module.InferInput(name, list(data.shape), dtype)
        tensor.set_data_from_numpy(data)
        client.infer(model, [tensor], client_timeout=30) if protocol == "grpc" else client.infer(
            model, [tensor]
        )
        return True
    except Exception:  # noqa: BLE001  (any failure means: not answering)
        return False


def heal(url: str, model: str, protocol: str = "http") -> bool:
    """Reloads a model that does not answer (explicit model control); True if it answers after."""
    if check_model(url, model, protocol):
        return True
    client_module(protocol).InferenceServerClient(url).load_model(model)
    return check_model(url, model, protocol)
