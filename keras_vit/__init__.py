"""keras_vit: the Vision Transformer, its hybrid and BiT ResNet-v2 for Keras 3.

Example:
    >>> import keras_vit
    >>> model = keras_vit.models.create_model("ViT-Mu/16", image_size=32, num_classes=10)
    >>> model.output_shape
    (None, 10)
"""

import importlib
import os

# TensorFlow stays the default backend; KERAS_BACKEND=jax or torch, set before
# Keras is first imported, runs the same models (TensorFlow is then never imported).
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"
__all__ = ["checkpoints", "decode_predictions", "layers", "models", "preprocess_input"]

# Submodules and names load on first use, so that `import keras_vit.cli` does not
# import a backend (the command line silences its start-up lines first). Loading
# a saved .keras file needs the layers registered: import keras_vit.layers (or
# keras_vit.models) first.
_LAZY = {
    "checkpoints": ("keras_vit.checkpoints", None),
    "layers": ("keras_vit.layers", None),
    "models": ("keras_vit.models", None),
    "decode_predictions": ("keras_vit.imagenet", "decode_predictions"),
    "preprocess_input": ("keras_vit.imagenet", "preprocess_input"),
}


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'keras_vit' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = importlib.import_module(module)
    return value if attribute is None else getattr(value, attribute)
