"""The checkpoint loader: read once, recognise the family once, fix up, assign.

Every checkpoint takes the same four steps:

1. **read**: the file is read once, eagerly, without pickle (``io.read_checkpoint``);
2. **recognise**: ``families.detect_family`` names its row of ``families.FAMILIES``
   (and with it the model family it fits);
3. **fix up**: ``families.canonicalise`` applies the row's named fix-ups, bringing
   the keys to canonical names (the model's scopes); timm's fused ``qkv`` is
   split with the model's head count;
4. **assign**: ``assign.assign_params`` checks every key and shape against the
   model, then assigns all or nothing.

Example:
    >>> import os, tempfile
    >>> from keras_vit.models import ViT
    >>> model = ViT(image_size=32, patch_size=16, hidden_size=64, num_layers=1,
    ...             num_heads=2, mlp_dim=128, num_classes=10)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
    >>> save_npz(model, path)
    >>> family, params = read_canonical(path)
    >>> family.name, params["head/kernel"].shape
    ('official ViT', (64, 10))
"""

from __future__ import annotations

import logging
import os

import keras
import numpy as np

from keras_vit.atomic import write_atomic
from keras_vit.checkpoints.assign import assign_params, model_params
from keras_vit.checkpoints.families import Family, Params, canonicalise, detect_family
from keras_vit.checkpoints.io import CheckpointError, byte_budget, read_checkpoint
from keras_vit.checkpoints.official import to_bit_layout

logger = logging.getLogger("keras_vit")


def read_canonical(
    path: str | os.PathLike, num_heads: int | None = None, allow_nonfinite: bool = False
) -> tuple[Family, Params]:
    """Reads a checkpoint once and brings it to canonical keys.

    With no model to bound it, the file may declare up to ``io.MAX_CHECKPOINT_BYTES``.

    Args:
        path: an ``.npz`` or ``.safetensors`` file.
        num_heads: the head count, for timm ViT state dicts (which do not record it).
        allow_nonfinite: accept NaN and infinity in the arrays.

    Returns:
        ``(family, canonical parameters)``.

    Raises:
        CheckpointError: for an unreadable, unrecognised or refused file.
    """
    raw = read_checkpoint(path, allow_nonfinite=allow_nonfinite)
    family = detect_family(raw)
    return family, canonicalise(family, raw, num_heads)


def model_family(model: keras.Model) -> str:
    """``"vit"``, ``"hybrid"`` or ``"bit"``, from the checkpoint keys of the model's weights.

    Args:
        model: a keras_vit model.

    Returns:
        The model family, as ``Family.model`` names it.

    Raises:
        CheckpointError: for a model that is none of them.
    """
    keys = model_params(model)
    if "conv_root/kernel" in keys:
        return "hybrid"
    if "embedding/kernel" in keys:
        return "vit"
    if "root_block/standardized_conv2d/kernel" in keys:
        return "bit"
    raise CheckpointError(f"model {model.name!r} is not a keras_vit ViT, hybrid or BiT model")


def _check_model(model: keras.Model, family: Family, source: str) -> dict | None:
    """Refuses a model of another family; returns its encoder config (None for BiT)."""
    expected = model_family(model)
    if family.model != expected:
        raise CheckpointError(
            f"{source!r} is a {family.model!r} checkpoint but the model is a {expected!r} model"
        )
    return None if expected == "bit" else model.get_layer("Transformer").get_config()


def _assign(model, family, params, source, posemb_method, source_grid, config) -> None:
    if config is not None and config["approximate_gelu"] != family.approximate_gelu:
        form = (
            "tanh (approximate_gelu=True)"
            if family.approximate_gelu
            else "erf (approximate_gelu=False)"
        )
        logger.warning(
            "%s was trained with the %s GELU; the model uses the other form", source, form
        )
    method = posemb_method or family.posemb_method
    assign_params(model, params, source, method, source_grid)


def load_canonical(
    model: keras.Model,
    family: Family,
    params: Params,
    source: str,
    posemb_method: str | None = None,
    source_grid: tuple[int, int] | None = None,
) -> None:
    """Assigns canonical parameters of a checkpoint of ``family`` to ``model``, all or nothing.

    Args:
        model: a keras_vit model of the family's model family.
        family: the checkpoint's family.
        params: its canonical parameters (``read_canonical``).
        source: the file name, for messages.
        posemb_method: position-embedding resampling; None for the family's own.
        source_grid: the checkpoint's patch grid when it is not square.

    Raises:
        CheckpointError: for a model of another family, or missing, extra or
            mis-shaped keys; the model's weights are then unchanged.
    """
    config = _check_model(model, family, source)
    _assign(model, family, params, source, posemb_method, source_grid, config)


def _load(
    model: keras.Model,
    path: str | os.PathLike,
    source: str | None,
    posemb_method: str | None = None,
    source_grid: tuple[int, int] | None = None,
    allow_nonfinite: bool = False,
) -> None:
    """The whole pipeline; ``source`` (``"official"``, ``"timm"``) refuses the other's files."""
    path = os.fspath(path)
    num_params = sum(int(np.prod(v.shape)) for v in model_params(model).values())
    raw = read_checkpoint(path, byte_budget(num_params), allow_nonfinite)
    family = detect_family(raw)
    if source == "official" and family.source == "timm":
        raise CheckpointError(f"{path!r} is a timm state dict; use load_timm")
    if source == "timm" and family.source != "timm":
        raise CheckpointError(f"{path!r} is not a timm state dict; use load_npz")
    config = _check_model(model, family, path)
    params = canonicalise(family, raw, config and config["num_heads"])
    _assign(model, family, params, path, posemb_method, source_grid, config)


def load_npz(
    model: keras.Model,
    path: str | os.PathLike,
    posemb_method: str = "bilinear",
    source_grid: tuple[int, int] | None = None,
    allow_nonfinite: bool = False,
) -> None:
    """Loads an official ``.npz`` checkpoint: ViT, hybrid or BiT.

    Recognises the family from the keys (original, AugReg and i21k ViT files
    with pre-Linen numbering; Linen numbering; big_vision's layout; hybrids
    with old ``(1, 1, 1, C)`` GroupNorm parameters; BiT's ``resnet/`` files). Position
    embeddings are resampled when the model's grid differs (the official
    loader's bilinear zoom by default). A model with another class count, or
    without the checkpoint's ``pre_logits`` layer, keeps its own head. The file's
    array headers are checked before its data is read: it may declare at most
    ``io.byte_budget`` of the model's parameter count (four times the model's
    float32 bytes plus 256 MiB).

    Args:
        model: a keras_vit model.
        path: the ``.npz`` file.
        posemb_method: ``"bilinear"`` (official) or ``"bicubic"``.
        source_grid: the checkpoint's patch grid when it is not square.
        allow_nonfinite: accept NaN and infinity in the checkpoint.

    Raises:
        CheckpointError: naming the missing, extra or mis-shaped keys, the wrong
            family, an oversized declaration or non-finite arrays; the model's
            weights are then unchanged.
    """
    _load(model, path, "official", posemb_method, source_grid, allow_nonfinite)


def load_timm(
    model: keras.Model,
    path: str | os.PathLike,
    posemb_method: str = "bicubic",
    allow_nonfinite: bool = False,
) -> None:
    """Loads a timm / Hugging Face state dict: ``VisionTransformer``, its hybrid, or BiT ``ResNetV2``.

    Args:
        model: a keras_vit model; a ViT built with ``approximate_gelu=False``
            matches timm's exact GELU.
        path: a ``.safetensors`` file or an ``.npz`` of the state dict.
        posemb_method: how position embeddings are resampled (timm: bicubic).
        allow_nonfinite: accept NaN and infinity in the checkpoint.

    Raises:
        CheckpointError: as ``load_npz``.
    """
    _load(model, path, "timm", posemb_method, allow_nonfinite=allow_nonfinite)


def load_weights_file(model: keras.Model, path: str | os.PathLike) -> None:
    """Loads any supported weights file, choosing the loader by its content.

    Args:
        model: a keras_vit model.
        path: a ``.weights.h5`` file, or an official or timm ``.npz`` /
            ``.safetensors`` checkpoint (each read with its family's defaults).

    Raises:
        CheckpointError: for an unsupported file name, or as ``load_npz``.
    """
    path = os.fspath(path)
    if path.endswith(".weights.h5"):
        model.load_weights(path)
    elif path.endswith((".npz", ".safetensors")):
        _load(model, path, source=None)
    else:
        raise CheckpointError(
            f"unsupported weights file {path!r}: expected .npz, .safetensors or .weights.h5"
        )


def save_npz(model: keras.Model, path: str | os.PathLike) -> None:
    """Writes the model's weights as an official-format ``.npz`` (atomically).

    ViT and hybrid models are written as vision_transformer's files (they load
    with its ``checkpoint.load``), BiT models as BiT's ``resnet/...`` files.

    Args:
        model: a keras_vit model.
        path: the ``.npz`` file; written whole or not at all.
    """
    arrays = {key: keras.ops.convert_to_numpy(v) for key, v in model_params(model).items()}
    if model_family(model) == "bit":
        arrays = to_bit_layout(arrays)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    write_atomic(path, write, suffix=".npz")
