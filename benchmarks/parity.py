"""Parity report: our logits against the reference fixtures (run by hand).

    python benchmarks/parity.py

Builds every fixture of ../shared/fixtures/ with ``keras_vit.models.from_checkpoint``
(what the file does not record is passed, as a user would) and prints
max|ours - reference| / max|reference| of the logits for each attention path
(the metric the tests bound by 1e-5, and by 5e-6 for the ResNets).
"""

from pathlib import Path

import numpy as np

from keras_vit.models import from_checkpoint

F = Path(__file__).resolve().parents[2] / "shared" / "fixtures"

# (label, checkpoint, reference outputs, what the file does not record)
CASES = [
    ("official ViT", "official_tiny_vit.params.npz", "official_tiny_vit", {}),
    ("timm ViT", "timm_tiny_vit.state_dict.npz", "timm_tiny_vit", dict(num_heads=2)),
    (
        "official hybrid R+ViT",
        "official_tiny_hybrid_rootonly.params.npz",
        "official_tiny_hybrid_rootonly",
        {},
    ),
    (
        "timm BiT ResNetV2",
        "timm_bit_resnetv2_l1111_x0p5.state_dict.npz",
        "timm_bit_resnetv2_l1111_x0p5",
        dict(image_size=64),
    ),
    ("Hugging Face ViT", "hf_tiny_vit", "hf_tiny_vit", {}),
    (
        "timm DeiT distilled",
        "timm_tiny_deit_distilled.state_dict.npz",
        "timm_tiny_deit_distilled",
        dict(num_heads=2),
    ),
    (
        "timm avg pool + fc_norm",
        "timm_tiny_vit_avgpool_fcnorm.state_dict.npz",
        "timm_tiny_vit_avgpool_fcnorm",
        dict(num_heads=2),
    ),
    (
        "big_vision MAP + sincos2d",
        "bigvision_tiny_vit_map_sincos.params.npz",
        "bigvision_tiny_vit_map_sincos",
        dict(image_size=64),
    ),
]


def rel(a: np.ndarray, b: np.ndarray) -> float:
    """The parity metric.

    Args:
        a: ours.
        b: the reference.

    Returns:
        max|a - b| / max|b|.
    """
    return float(np.abs(a - b).max() / np.abs(b).max())


def main() -> None:
    """Prints one markdown row per fixture: fused and reference paths (one for BiT)."""
    print("| checkpoint | fused | reference |\n|---|---|---|")
    for label, checkpoint, outputs, given in CASES:
        with np.load(F / f"{outputs}.io.npz", allow_pickle=False) as io:
            images, logits = io["input_nhwc"], io["logits"]
        errors = []
        for impl in ("fused", "reference"):
            if "BiT" in label and impl == "reference":  # a ResNet has no attention
                errors.append("-")
                continue
            extra = {} if "BiT" in label else dict(attention_impl=impl)
            model = from_checkpoint(F / checkpoint, **given, **extra)
            errors.append(f"{rel(model.predict(images, verbose=0), logits):.1e}")
        print(f"| {label} | {' | '.join(errors)} |")


if __name__ == "__main__":
    main()
