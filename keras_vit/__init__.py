"""keras_vit: the Vision Transformer, its hybrid and BiT ResNet-v2 for Keras 3.

Example:
    >>> import keras_vit
    >>> model = keras_vit.models.create_model("ViT-Mu/16", image_size=32, num_classes=10)
    >>> model.output_shape
    (None, 10)
"""

import importlib
import os
import platform

# TensorFlow stays the default backend; KERAS_BACKEND=jax or torch, set before
# Keras is first imported, runs the same models (TensorFlow is then never imported).
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow's oneDNN kernels. TensorFlow turns them on by itself only on x86 CPUs
# with AVX-512 VNNI or BF16, AVX-VNNI or AMX; on an AVX2 AMD EPYC its fp32 matmul ran
# at 97 GFLOP/s without them and 141 with, and ViT training 1.2-1.4x faster (README,
# "Kernels and speed"). An explicit TF_ENABLE_ONEDNN_OPTS wins, and like any setting
# of it this acts only where keras_vit is imported before TensorFlow.
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

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
