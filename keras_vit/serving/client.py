"""Querying a served keras_vit model with ``tritonclient`` (HTTP or gRPC).

Example (not run here: it needs a server)::

    for top in classify(["cat.jpg"], url="127.0.0.1:8000", model="vit_b16"):
        print(top)   # [(score, class index, label), ...]
"""

from __future__ import annotations

import contextlib
import os
import time
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
    with contextlib.closing(module.InferenceServerClient(url)) as client:
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
    try:  # closed after: a server stopping waits for its open connections
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
    finally:
        client.close()


def _state(client: Any, model: str, protocol: str) -> str:
    """The model's state in the server's repository index ("" when not listed)."""
    index = client.get_model_repository_index()
    entries = index.models if protocol == "grpc" else index
    for entry in entries:
        name, state = (
            (entry.name, entry.state) if protocol == "grpc" else (entry["name"], entry.get("state"))
        )
        if name == model:
            return state or ""
    return ""


def _touched(folder: Path) -> bool:
    """Sets the modification time of a model's version folders to now.

    Triton reloads the versions whose folder changed (a change of the model folder
    alone reloads nothing).

    Returns:
        False when there is no version folder or this process may not touch one.
    """
    try:
        versions = [v for v in folder.iterdir() if v.is_dir() and v.name.isdigit()]
        for version in versions:
            os.utime(version)
    except OSError:
        return False
    return bool(versions)


def heal(
    url: str,
    model: str,
    protocol: str = "http",
    timeout: float = 300.0,
    repo: str | os.PathLike | None = None,
) -> bool:
    """Reloads a model that does not answer (needs explicit model control).

    Triton ignores a load request for a loaded model whose files did not change.
    With ``repo``, the modification time of the model's version folders is set
    to now first, which makes Triton load those versions afresh; without it (or when that fails) the
    model is unloaded and, once the unload finished, loaded again.

    Args:
        url: the server's ``host:port`` for ``protocol``.
        model: the model's name.
        protocol: ``"http"`` or ``"grpc"``.
        timeout: seconds to wait for the unload, and for each load.
        repo: the server's model repository, when this process can write it.

    Returns:
        Whether the model answers, at once or after the reload; False also when
        the server itself does not answer.
    """
    if check_model(url, model, protocol):
        return True
    module = client_module(protocol)
    client = None
    try:
        if protocol == "http":
            client, load = module.InferenceServerClient(url, network_timeout=timeout), {}
        else:
            client, load = module.InferenceServerClient(url), {"client_timeout": timeout}
        if repo is not None and _touched(Path(repo) / model):  # "changed": a load reloads it
            with contextlib.suppress(Exception):
                client.load_model(model, **load)
            if check_model(url, model, protocol):
                return True
        client.unload_model(model)
        deadline = time.monotonic() + timeout
        while _state(client, model, protocol) in ("READY", "UNLOADING"):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        client.load_model(model, **load)
    except Exception:  # noqa: BLE001  (a server that does not answer cannot heal it)
        return False
    finally:
        if client is not None:
            client.close()
    return check_model(url, model, protocol)
