"""Named official checkpoints: where each lives and the model it was trained as.

``weights="augreg_in21k_ft_in1k"`` on ``ViT_B16`` resolves here; the file is
downloaded once with ``keras.utils.get_file`` and cached under
``~/.keras/keras_vit/`` (``KERAS_HOME``, or ``KERAS_VIT_CACHE`` for this
package alone, moves it).
"""

from __future__ import annotations

import dataclasses
import os

import keras

from keras_vit.variants import VIT_SIZES

_BASE = "https://storage.googleapis.com/vit_models"
_BIT_BASE = "https://storage.googleapis.com/bit_models"

# Where named checkpoints are cached; None means Keras's own home (~/.keras).
CACHE_DIR: str | None = os.environ.get("KERAS_VIT_CACHE")


@dataclasses.dataclass(frozen=True)
class NamedWeights:
    """One released checkpoint and the head it was saved with."""

    url: str
    num_classes: int
    image_size: int
    representation_size: int | None = None


def _augreg(prefix: str, finetune: str | None = None, res: int = 224) -> str:
    suffix = "" if finetune is None else f"--imagenet2012-steps_20k-lr_{finetune}-res_{res}"
    return f"{_BASE}/augreg/{prefix}{suffix}.npz"


_AUGREG_PRETRAIN = {
    "Ti/16": ("Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0", "0.03"),
    "S/16": ("S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0", "0.03"),
    "S/32": ("S_32-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0", "0.03"),
    "B/8": ("B_8-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0", "0.01"),
    "B/16": ("B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0", "0.01"),
    "B/32": ("B_32-i21k-300ep-lr_0.001-aug_medium1-wd_0.03-do_0.0-sd_0.0", "0.03"),
    "L/16": ("L_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.1-sd_0.1", "0.01"),
}
# The AugReg authors picked a different pre-training run for B/32 at 384 px.
_AUGREG_384_OVERRIDE = {
    "B/32": ("B_32-i21k-300ep-lr_0.001-aug_light1-wd_0.1-do_0.0-sd_0.0", "0.03")
}


def _table() -> dict[str, dict[str, NamedWeights]]:
    table: dict[str, dict[str, NamedWeights]] = {}
    for variant, (prefix, lr) in _AUGREG_PRETRAIN.items():
        entry = table.setdefault(variant, {})
        entry["augreg_in21k"] = NamedWeights(_augreg(prefix), 21843, 224)
        entry["augreg_in21k_ft_in1k"] = NamedWeights(_augreg(prefix, lr, 224), 1000, 224)
        prefix384, lr384 = _AUGREG_384_OVERRIDE.get(variant, (prefix, lr))
        if variant != "B/8":
            entry["augreg_in21k_ft_in1k_384"] = NamedWeights(
                _augreg(prefix384, lr384, 384), 1000, 384
            )
    # The paper's original release: ImageNet-21k pre-training with a pre_logits
    # layer, and its ImageNet-1k fine-tuning at 384 px.
    for variant, file in [
        (v, "ViT-" + v.replace("/", "_")) for v in ("B/16", "B/32", "L/16", "L/32", "H/14")
    ] + [("R50+B/16", "R50+ViT-B_16")]:
        entry = table.setdefault(variant, {})
        hidden = VIT_SIZES[variant.split("+")[-1].split("/")[0]]["hidden_size"]
        entry["imagenet21k"] = NamedWeights(f"{_BASE}/imagenet21k/{file}.npz", 21843, 224, hidden)
        if variant != "H/14":
            entry["imagenet21k+imagenet2012"] = NamedWeights(
                f"{_BASE}/imagenet21k+imagenet2012/{file}.npz", 1000, 384
            )
    # BiT: BiT-S (ImageNet-1k), BiT-M (ImageNet-21k) and BiT-M fine-tuned on ImageNet-1k.
    for variant in ("R50x1", "R50x3", "R101x1", "R101x3", "R152x2", "R152x4"):
        table[variant] = {
            "bit_s_in1k": NamedWeights(f"{_BIT_BASE}/BiT-S-{variant}.npz", 1000, 224),
            "bit_m_in21k": NamedWeights(f"{_BIT_BASE}/BiT-M-{variant}.npz", 21843, 224),
            "bit_m_in21k_ft_in1k": NamedWeights(
                f"{_BIT_BASE}/BiT-M-{variant}-ILSVRC2012.npz",
                1000,
                480 if variant == "R152x4" else 448,
            ),
        }
    return table


NAMED_WEIGHTS = _table()


def lookup(variant: str | None, weights: str) -> NamedWeights:
    """Returns the named checkpoint of a variant, or raises a ValueError listing the names."""
    available = NAMED_WEIGHTS.get(variant or "", {})
    if weights not in available:
        where = variant or "this configuration (no official variant)"
        names = ", ".join(sorted(available)) or "none"
        raise ValueError(
            f"`weights` must be None, an existing file or a named checkpoint; {weights!r} is "
            f"none of these. Named checkpoints for {where}: {names}."
        )
    return available[weights]


def cache_path(named: NamedWeights) -> str:
    """Where ``fetch`` keeps a named checkpoint.

    Args:
        named: the checkpoint.

    Returns:
        Its path in the cache (it may not exist yet).
    """
    home = CACHE_DIR or os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    return os.path.join(os.path.expanduser(home), "keras_vit", os.path.basename(named.url))


def fetch(named: NamedWeights) -> str:
    """Downloads (once) and returns the local path of a named checkpoint.

    Args:
        named: the checkpoint.

    Returns:
        The local file.

    Raises:
        ValueError: when the download fails (offline, say): one line naming the
            file, its URL and how to pass a local copy instead.
    """
    try:
        return keras.utils.get_file(
            fname=os.path.basename(named.url),
            origin=named.url,
            cache_dir=CACHE_DIR,
            cache_subdir="keras_vit",
        )
    except Exception as error:  # get_file raises a bare Exception for URL failures
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(
            f"cannot download {os.path.basename(named.url)} from {named.url} ({reason}); "
            f"download it elsewhere and pass the file (--weights FILE, or weights=FILE), "
            f"or place it at {cache_path(named)}"
        ) from None
