"""Exporting models for Triton Inference Server.

``export_model(model, repo, name)`` writes a SavedModel (uint8 and encoded-image
signatures), ``config.pbtxt`` (validated with Triton's protobuf) and labels into
a Triton model repository, atomically; ``format="onnx"`` writes an ONNX model
with the configurations of Triton's ONNX Runtime backend and of the Python backend.
"""

import importlib

__all__ = [
    "export_model",
    "onnx_config",
    "python_backend_config",
    "serving_archive",
    "validate",
    "write_onnx",
]

# Loaded on first use: starting and checking a server (``server``, ``client``)
# then never imports TensorFlow, which only exporting needs.
_LAZY = {
    "export_model": "keras_vit.serving.export",
    "onnx_config": "keras_vit.serving.config",
    "python_backend_config": "keras_vit.serving.config",
    "serving_archive": "keras_vit.serving.export",
    "validate": "keras_vit.serving.config",
    "write_onnx": "keras_vit.serving.onnx_export",
}


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'keras_vit.serving' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
