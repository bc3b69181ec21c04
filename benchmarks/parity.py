"""Parity report: our logits against the reference fixtures (run by hand).

    python benchmarks/parity.py

Prints max|ours - reference| / max|reference| for each fixture of
../shared/fixtures/ (the metric the tests bound by 1e-5 and 5e-5).
"""

from pathlib import Path

import numpy as np

import keras_vit  # noqa: F401
from keras_vit.checkpoints import load_npz, load_timm
from keras_vit.models import ResNetV2, ViT
from keras_vit.variants import parse_model_name

F = str(Path(__file__).resolve().parents[2] / "shared" / "fixtures") + "/"


def rel(a: np.ndarray, b: np.ndarray) -> float:
    """The parity metric.

    Args:
        a: ours.
        b: the reference.

    Returns:
        max|a - b| / max|b|.
    """
    return np.abs(a - b).max() / np.abs(b).max()


# The fixtures' tiny ViT is the Mu variant at 64 px with 10 classes.
tiny = dict(parse_model_name("ViT-Mu/16")[2], image_size=64, num_classes=10)
cases = [
    ("official ViT (load_npz)", ViT(**tiny), load_npz, "official_tiny_vit"),
    ("timm ViT (load_timm)", ViT(**tiny, approximate_gelu=False), load_timm, "timm_tiny_vit"),
    (
        "official hybrid R+ViT (load_npz)",
        ViT(**dict(tiny, patch_size=2), resnet_layers=()),
        load_npz,
        "official_tiny_hybrid_rootonly",
    ),
    (
        "timm BiT ResNetV2 (load_timm)",
        ResNetV2(layers=(1, 1, 1, 1), width=0.5, image_size=64, num_classes=10),
        load_timm,
        "timm_bit_resnetv2_l1111_x0p5",
    ),
]
for label, model, loader, stem in cases:
    loader(model, F + stem + (".params.npz" if stem.startswith("official") else ".state_dict.npz"))
    io = np.load(F + stem + ".io.npz")
    print(f"| {label} | {rel(model.predict(io['input_nhwc'], verbose=0), io['logits']):.1e} |")
