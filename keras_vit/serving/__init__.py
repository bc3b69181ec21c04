"""Exporting models for Triton Inference Server.

``export_model(model, repo, name)`` writes a SavedModel (uint8 and encoded-image
signatures), ``config.pbtxt`` (validated with Triton's protobuf) and labels into
a Triton model repository, atomically.
"""

from keras_vit.serving.config import python_backend_config, validate
from keras_vit.serving.export import export_model, serving_archive

__all__ = ["export_model", "python_backend_config", "serving_archive", "validate"]
