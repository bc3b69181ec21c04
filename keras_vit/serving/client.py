"""Querying a served keras_vit model with ``tritonclient`` (HTTP or gRPC).

Example (not run here: it needs a server)::

    for top in classify(["cat.jpg"], url="127.0.0.1:8000", model="vit_b16"):
        print(top)   # [(score, class index, label), ...]
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

PROTOCOLS = ("http", "grpc")


def client_module(protocol: str) -> ModuleType:
    """The ``tritonclient`` module of a protocol.

    Args:
        protocol: ``"http"`` or ``"grpc"``.

    Returns:
        ``tritonclient.http`` or ``tritonclient.grpc``.

    Raises:
        ValueError: for another protocol.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}; got {protocol!r}")
    if protocol == "http":
        import tritonclient.http as module
    else:
        import tritonclient.grpc as module
    return module


def model_input(client: Any, model: str, protocol: str) -> tuple[str, list[int]]:
    """The model's input from the server's configuration of it.

    Args:
        client: an ``InferenceServerClient`` of ``protocol``.
        model: the model's name.
        protocol: ``"http"`` or ``"grpc"`` (their configs differ in form).

    Returns:
        ``(input name, dims without the batch)``.
    """
    config = client.get_model_config(model)
    if protocol == "grpc":
        entry = config.config.input[0]
        return entry.name, list(entry.dims)
    entry = config["input"][0]
    return entry["name"], [int(d) for d in entry["dims"]]


def classify(
    images: list[str | os.PathLike],
    url: str = "127.0.0.1:8000",
    model: str = "vit",
    protocol: str = "http",
    top: int = 5,
) -> list[list[tuple[float, int, str]]]:
    """Top classes of image files, from Triton's classification extension.

    Files are sent as they are to a model exported with ``image_input="jpeg"``,
    or decoded and resized here (``keras_vit.images.load_pixels``) for a uint8 model.

    Args:
        images: the image files.
        url: the server's ``host:port`` for ``protocol``.
        model: the model's name.
        protocol: ``"http"`` or ``"grpc"``.
        top: classes per image.

    Returns:
        For each image, ``top`` tuples ``(score, class index, label)``, best first.
    """
    module = client_module(protocol)
    client = module.InferenceServerClient(url)
    name, dims = model_input(client, model, protocol)
    if name == "image_bytes":
        data = np.array([[Path(path).read_bytes()] for path in images], dtype=np.object_)
        tensor = module.InferInput(name, list(data.shape), "BYTES")
    else:
        from keras_vit.images import load_pixels

        data = np.stack([load_pixels(path, tuple(dims[:2])) for path in images])
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

    Args:
        url: the server's ``host:port`` for ``protocol``.
        model: the model's name.
        protocol: ``"http"`` or ``"grpc"``.

    Returns:
        Whether the inference succeeded.
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
        timeout = {"client_timeout": 30} if protocol == "grpc" else {}
        client.infer(model, [tensor], **timeout)
        return True
    except Exception:  # noqa: BLE001  (any failure means: not answering)
        return False


def heal(url: str, model: str, protocol: str = "http") -> bool:
    """Reloads a model that does not answer (needs explicit model control).

    Args:
        url: the server's ``host:port`` for ``protocol``.
        model: the model's name.
        protocol: ``"http"`` or ``"grpc"``.

    Returns:
        Whether the model answers, at once or after the reload.
    """
    if check_model(url, model, protocol):
        return True
    client_module(protocol).InferenceServerClient(url).load_model(model)
    return check_model(url, model, protocol)
