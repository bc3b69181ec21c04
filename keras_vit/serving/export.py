"""Exporting a model into a Triton model repository, atomically.

SavedModel layout (the default): ``<repo>/<name>/config.pbtxt`` (Python backend),
``<repo>/<name>/labels.txt`` and ``<repo>/<name>/<version>/{model.savedmodel/, model.py}``.

ONNX layout (``format="onnx"``): ``<repo>/<name>/<version>/{model.onnx, model.py}``,
``<repo>/<name>/config.pbtxt`` for Triton's ONNX Runtime backend (what a Triton
container uses) and ``<repo>/<name>/configs/python.pbtxt`` for the Python
backend, whose ``model.py`` runs ``model.onnx`` with onnxruntime (what
``keras-vit serve`` uses with the ``nvidia-pytriton`` server, which has no ONNX
Runtime backend: it starts Triton with ``--model-config-name=python``).

A version directory is written under a temporary name and renamed into place,
so it appears whole or not at all; an existing version is replaced only with
``overwrite=True``.

Example:
    >>> import tempfile
    >>> from keras_vit.models import create_model
    >>> model = create_model("ViT-Mu/16", image_size=32, num_classes=3)
    >>> path = export_model(model, tempfile.mkdtemp(), "mu", labels=["a", "b", "c"])
    >>> sorted(os.listdir(path))
    ['model.py', 'model.savedmodel']
"""

from __future__ import annotations

import importlib.resources
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import keras
import tensorflow as tf

from keras_vit.atomic import plain_mode, write_text_atomic
from keras_vit.imagenet import imagenet_labels, preprocess_input
from keras_vit.images import decode_image, resize
from keras_vit.serving.config import PYTHON_CONFIG, onnx_config, python_backend_config
from keras_vit.serving.onnx_export import write_onnx

FORMATS = ("savedmodel", "onnx")


def model_py() -> Path:
    """The Python-backend model kept in ``triton_repo/model.py``.

    Returns:
        Its path (installed as package data of ``keras_vit.triton_repo``).
    """
    return Path(str(importlib.resources.files("keras_vit.triton_repo").joinpath("model.py")))


def serving_archive(model: keras.Model) -> keras.export.ExportArchive:
    """A SavedModel archive with two signatures that take images as clients have them.

    ``serving_default``: uint8 ``[N, H, W, 3]`` at the model's input size.
    ``serve_bytes``: encoded JPEG/PNG/GIF/BMP strings ``[N]``, decoded and resized
    in the graph as ``keras_vit.images`` does (bilinear, not rounded). Both scale
    with ``preprocess_input`` and return ``logits`` and ``probabilities``.

    Args:
        model: a classifier of float images in [-1, 1].

    Returns:
        The archive, ready for ``write_out``.
    """
    height, width = model.input_shape[1:3]
    archive = keras.export.ExportArchive()
    archive.track(model)

    def outputs(images):
        logits = model(preprocess_input(images), training=False)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

    def decode(data):
        return resize(decode_image(data), (height, width))

    archive.add_endpoint(
        "serving_default",
        outputs,
        input_signature=[tf.TensorSpec([None, height, width, 3], tf.uint8)],
    )
    archive.add_endpoint(
        "serve_bytes",
        lambda data: outputs(tf.map_fn(decode, data, fn_output_signature=tf.float32)),
        input_signature=[tf.TensorSpec([None], tf.string)],
    )
    return archive


def _next_version(model_dir: Path) -> int:
    versions = (
        [int(p.name) for p in model_dir.glob("*") if p.name.isdigit()] if model_dir.exists() else []
    )
    return max(versions, default=0) + 1


def _move_into_place(staging: Path, target: Path) -> None:
    """Renames ``staging`` to ``target``; an existing ``target`` is moved aside first."""
    if target.exists():
        retired = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
        os.rename(target, retired / "version")
        os.rename(staging, target)
        shutil.rmtree(retired)
    else:
        os.rename(staging, target)


def _configs(
    model: keras.Model,
    name: str,
    format: str,
    options: dict,
) -> dict[str, str]:
    """The configuration files of an export, by path in the model folder; validates options."""
    size, classes = tuple(model.input_shape[1:3]), model.output_shape[-1]
    batch, instances, kind = options["max_batch_size"], options["instances"], options["kind"]
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}; got {format!r}")
    if format == "savedmodel":
        if options["accelerator"] != "none":
            raise ValueError("accelerator applies to format='onnx' (Triton's ONNX Runtime backend)")
        image_input, backend = options["image_input"], options["backend"]
        return {
            "config.pbtxt": python_backend_config(
                name, size, classes, image_input, batch, instances, kind, backend
            )
        }
    if options["image_input"] != "uint8":
        raise ValueError(
            "the encoded-image input (image_input='jpeg') is SavedModel-only: ONNX has no "
            "image decoder; export with format='savedmodel', or send uint8 pixels"
        )
    if options["backend"] != "python":
        raise ValueError(
            "backend applies to format='savedmodel'; an ONNX export writes the configurations "
            "of Triton's ONNX Runtime backend and of the Python backend"
        )
    return {
        "config.pbtxt": onnx_config(
            name, size, classes, batch, instances, kind, options["accelerator"]
        ),
        # The Python backend runs on the CPU, whatever kind the ONNX Runtime one has.
        f"configs/{PYTHON_CONFIG}.pbtxt": python_backend_config(
            name, size, classes, "uint8", batch, instances, "KIND_CPU", warmup=True
        ),
    }


def export_model(
    model: keras.Model,
    repo: str | os.PathLike,
    name: str,
    version: int | None = None,
    max_batch_size: int = 32,
    instances: int = 1,
    image_input: str = "uint8",
    backend: str = "python",
    kind: str = "KIND_CPU",
    labels: Sequence[str] | None = None,
    overwrite: bool = False,
    format: str = "savedmodel",
    accelerator: str = "none",
) -> Path:
    """Exports ``model`` into a Triton model repository.

    Args:
        model: a keras_vit classifier (float images in [-1, 1] to logits).
        repo: the repository folder (created if needed).
        name: the model's name in the repository.
        version: the version number; the next free one when None.
        max_batch_size: Triton's ``max_batch_size``.
        instances: model instances.
        image_input: ``"uint8"`` or ``"jpeg"`` (encoded images, SavedModel only)
            as the Triton input.
        backend: ``"python"`` or ``"tensorflow"`` (see ``python_backend_config``);
            SavedModel only.
        kind: ``"KIND_CPU"`` or ``"KIND_GPU"``.
        labels: class names for Triton's classification extension; ImageNet-1k
            labels for 1000 classes, class indices otherwise, when None.
        overwrite: replace an existing version.
        format: ``"savedmodel"`` or ``"onnx"`` (see the module's docstring).
        accelerator: ONNX only: ``"none"``, ``"tensorrt"`` or ``"cuda"`` (the GPU
            execution provider of Triton's ONNX Runtime backend; needs ``KIND_GPU``).

    Returns:
        The version directory.

    Raises:
        ValueError: for an existing version without ``overwrite``, bad options or
            labels that do not match the classes; nothing is written then.
    """
    if len(model.outputs) != 1 or model.input_shape[-1] != 3:
        raise ValueError(
            f"only a model with one output and RGB images can be served; {model.name!r} has "
            f"{len(model.outputs)} outputs and {model.input_shape[-1]} input channels "
            '(a distilled model: build it with distillation_output="mean")'
        )
    repo, num_classes = Path(repo), model.output_shape[-1]
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"invalid model name {name!r}")
    if labels is None:
        labels = imagenet_labels() if num_classes == 1000 else [str(i) for i in range(num_classes)]
    if len(labels) != num_classes:
        raise ValueError(f"{len(labels)} labels for a model with {num_classes} classes")
    options = dict(
        max_batch_size=max_batch_size,
        instances=instances,
        image_input=image_input,
        backend=backend,
        kind=kind,
        accelerator=accelerator,
    )
    configs = _configs(model, name, format, options)
    model_dir = repo / name
    version = _next_version(model_dir) if version is None else version
    target = model_dir / str(version)
    if target.exists() and not overwrite:
        raise ValueError(f"{target} exists; pass overwrite=True (--overwrite) to replace it")
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=model_dir, prefix=f".{version}.tmp-"))
    try:
        os.chmod(staging, plain_mode(folder=True))  # mkdtemp's 0700 would hide it from Triton
        if format == "onnx":
            write_onnx(model, staging / "model.onnx")
        else:
            serving_archive(model).write_out(str(staging / "model.savedmodel"), verbose=False)
        if backend == "python":
            shutil.copyfile(model_py(), staging / "model.py")
        write_text_atomic(model_dir / "labels.txt", "\n".join(labels) + "\n")
        # A SavedModel export retires an earlier ONNX export's Python-backend configuration.
        (model_dir / "configs" / f"{PYTHON_CONFIG}.pbtxt").unlink(missing_ok=True)
        for relative, text in configs.items():
            (model_dir / relative).parent.mkdir(exist_ok=True)
            write_text_atomic(model_dir / relative, text)
        _move_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
