"""Prints the ResNet parity numbers (run by hand): ``python -m tests.resnet_numerics_report``.

The metric of the tests, max|ours - reference| / max|reference| in float32, for the timm
BiT and official hybrid fixtures, and for official BiT and timm's hybrid against the
float64 references of ``tests/resnet_reference.py`` (with, for scale, the same
weights under the other source's numerics).
"""

import tempfile
from pathlib import Path

import numpy as np

from keras_vit.checkpoints import save_npz
from keras_vit.layers.std_conv import set_numerics
from keras_vit.models import ResNetV2, ViT, from_checkpoint

from . import resnet_reference as reference
from .conftest import FIXTURES, relative_error
from .test_resnet_numerics import BIT, HYBRID, _images, _randomise, _timm_hybrid_state


def _fixture(name: str, stem: str, **overrides) -> None:
    io = dict(np.load(FIXTURES / f"{stem}.io.npz"))
    suffix = ".state_dict.npz" if stem.startswith("timm") else ".params.npz"
    model = from_checkpoint(FIXTURES / f"{stem}{suffix}", **overrides)
    error = relative_error(model.predict(io["input_nhwc"], verbose=0), io["logits"])
    print(f"{name}: {error:.2e}")


def _against_reference(name, model, expected, x, family, other) -> None:
    print(f"{name}: {relative_error(model.predict(x, verbose=0), expected):.2e}", end="")
    set_numerics(model, family, other)
    print(f" ({other} numerics: {relative_error(model.predict(x, verbose=0), expected):.2e})")


def main() -> None:
    """Prints one line per fixture and per float64 reference."""
    _fixture("timm BiT fixture (from_checkpoint)", "timm_bit_resnetv2_l1111_x0p5", image_size=64)
    _fixture("official hybrid fixture (from_checkpoint)", "official_tiny_hybrid_rootonly")
    folder, x = Path(tempfile.mkdtemp()), _images(32)
    bit = ResNetV2(**BIT)
    _randomise(bit)
    save_npz(bit, folder / "bit.npz")
    expected = reference.bit(dict(np.load(folder / "bit.npz")), x, std_eps=1e-10)
    model = from_checkpoint(folder / "bit.npz", image_size=32)
    _against_reference("official BiT vs float64", model, expected, x, "bit", "timm")
    hybrid = ViT(**HYBRID)
    _randomise(hybrid)
    save_npz(hybrid, folder / "hybrid.npz")
    state = _timm_hybrid_state(dict(np.load(folder / "hybrid.npz")))
    np.savez(folder / "timm_hybrid.npz", **state)
    expected = reference.timm_hybrid(state, x, num_heads=2)
    model = from_checkpoint(folder / "timm_hybrid.npz", num_heads=2)
    _against_reference("timm hybrid vs float64", model, expected, x, "hybrid", "official")


if __name__ == "__main__":
    main()
