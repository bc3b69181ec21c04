"""Loading and saving checkpoints: official and big_vision ``.npz`` files, timm state
dicts, Hugging Face ViT folders.

Every loader reads the file once, recognises its family from the keys
(``families.FAMILIES``), applies that family's named fix-ups and checks the
whole checkpoint against the model before it assigns anything, so a bad file
leaves the model untouched.

Example:
    >>> import os, tempfile
    >>> from keras_vit.models import create_model
    >>> from keras_vit.checkpoints import load_npz, save_npz
    >>> model = create_model("ViT-Mu/16", image_size=32, num_classes=10)
    >>> path = os.path.join(tempfile.mkdtemp(), "mu16.npz")
    >>> save_npz(model, path)
    >>> load_npz(create_model("ViT-Mu/16", image_size=32, num_classes=10), path)
"""

from keras_vit.checkpoints.io import CheckpointError
from keras_vit.checkpoints.loader import (
    load_hf,
    load_npz,
    load_timm,
    load_weights_file,
    save_npz,
)
from keras_vit.checkpoints.posemb import resample_position_embeddings

__all__ = [
    "CheckpointError",
    "load_hf",
    "load_npz",
    "load_timm",
    "load_weights_file",
    "resample_position_embeddings",
    "save_npz",
]
