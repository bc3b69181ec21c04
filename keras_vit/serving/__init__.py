"""Exporting models for Triton Inference Server.

``export_model(model, repo, name)`` writes a SavedModel (uint8 and encoded-image
signatures), ``config.pbtxt`` (validated with Triton's protobuf) and labels into
a Triton model repository, atomically; ``format="onnx"`` writes an ONNX model
with the configurations of Triton's ONNX Runtime backend and of the Python backend.
"""

from keras_vit.serving.config import onnx_config, python_backend_config, validate
from keras_vit.serving.export import export_model, serving_archive
from keras_vit.serving.onnx_export import write_onnx

__all__ = [
    "export_model",
    "onnx_config",
    "python_backend_config",
    "serving_archive",
    "validate",
    "write_onnx",
]
