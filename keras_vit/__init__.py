"""keras_vit: the Vision Transformer, its hybrid and BiT ResNet-v2 for Keras 3.

Example:
    >>> import keras_vit
    >>> model = keras_vit.models.create_model("ViT-Mu/16", image_size=32, num_classes=10)
    >>> model.output_shape
    (None, 10)
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from keras_vit import checkpoints, layers, models  # noqa: E402
from keras_vit.imagenet import decode_predictions, preprocess_input  # noqa: E402

__version__ = "0.1.0"
__all__ = ["checkpoints", "decode_predictions", "layers", "models", "preprocess_input"]
