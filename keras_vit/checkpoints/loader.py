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

import dataclasses
import logging
import os

import keras
import numpy as np

from keras_vit.atomic import write_atomic
from keras_vit.checkpoints.assign import assign_params, model_params
from keras_vit.checkpoints.families import Family, Params, canonicalise, detect_family
from keras_vit.checkpoints.hf import hf_numerics, is_hf_folder, read_hf
from keras_vit.checkpoints.io import (
    MAX_CHECKPOINT_BYTES,
    CheckpointError,
    byte_budget,
    read_checkpoint,
)
from keras_vit.checkpoints.meta import (
    META_KEY,
    apply_metadata,
    encode,
    model_numerics,
    warn_numerics,
)
from keras_vit.checkpoints.official import to_bit_layout
from keras_vit.layers.std_conv import set_numerics

logger = logging.getLogger("keras_vit")


def _read(path: str, max_bytes: int, allow_nonfinite: bool) -> tuple[Family, Params, int | None]:
    """Reads a file or Hugging Face folder once; its family, arrays and recorded head count."""
    if not is_hf_folder(path):
        raw = read_checkpoint(path, max_bytes, allow_nonfinite)
        return (*apply_metadata(detect_family(raw), raw), None)
    config, raw = read_hf(path, max_bytes, allow_nonfinite)
    family = detect_family(raw)
    if family.source != "hf":
        raise CheckpointError(
            f"{path!r}: config.json describes a Hugging Face ViT but model.safetensors holds "
            f"a {family.name} checkpoint"
        )
    # The numerics config.json records win over transformers' defaults.
    family = dataclasses.replace(family, **hf_numerics(config))
    return family, raw, int(config.get("num_attention_heads", 12))


def read_canonical(
    path: str | os.PathLike, num_heads: int | None = None, allow_nonfinite: bool = False
) -> tuple[Family, Params]:
    """Reads a checkpoint once and brings it to canonical keys.

    With no model to bound it, the file may declare up to ``io.MAX_CHECKPOINT_BYTES``.

    Args:
        path: an ``.npz`` or ``.safetensors`` file, or a Hugging Face folder.
        num_heads: the head count, for timm ViT state dicts (which do not record it;
            a Hugging Face folder's ``config.json`` does, and must agree).
        allow_nonfinite: accept NaN and infinity in the arrays.

    Returns:
        ``(family, canonical parameters)``; a Hugging Face family carries
        ``config.json``'s GELU form and LayerNorm epsilon, a ``save_npz`` file's
        the numerics it records (``meta.META_KEY``, not among the parameters).

    Raises:
        CheckpointError: for an unreadable, unrecognised or refused file.
    """
    path = os.fspath(path)
    family, raw, recorded = _read(path, MAX_CHECKPOINT_BYTES, allow_nonfinite)
    _check_heads(path, recorded, num_heads, "num_heads=")
    return family, canonicalise(family, raw, recorded or num_heads)


def _check_heads(path: str, recorded: int | None, num_heads: int | None, what: str) -> None:
    if recorded is not None and num_heads is not None and recorded != num_heads:
        raise CheckpointError(
            f"{path!r}: config.json says num_attention_heads={recorded} but {what}{num_heads}"
        )


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


def _assign(model, family, params, source, posemb_method, source_grid, config, numerics=True):
    warn_numerics(family, config, source)
    method = posemb_method or family.posemb_method
    assign_params(model, params, source, method, source_grid)
    if numerics and family.model in ("bit", "hybrid"):  # the ResNet computes as the source
        set_numerics(model, family.model, family.resnet_numerics)


def load_canonical(
    model: keras.Model,
    family: Family,
    params: Params,
    source: str,
    posemb_method: str | None = None,
    source_grid: tuple[int, int] | None = None,
    set_source_numerics: bool = True,
) -> None:
    """Assigns canonical parameters of a checkpoint of ``family`` to ``model``, all or nothing.

    Args:
        model: a keras_vit model of the family's model family.
        family: the checkpoint's family.
        params: its canonical parameters (``read_canonical``).
        source: the file name, for messages.
        posemb_method: position-embedding resampling; None for the family's own.
        source_grid: the checkpoint's patch grid when it is not square.
        set_source_numerics: give a BiT or hybrid model's ResNet the numerics of
            the checkpoint's source; False keeps the model's own (the caller chose).

    Raises:
        CheckpointError: for a model of another family, or missing, extra or
            mis-shaped keys; the model's weights are then unchanged.
    """
    config = _check_model(model, family, source)
    _assign(model, family, params, source, posemb_method, source_grid, config, set_source_numerics)


def _load(
    model: keras.Model,
    path: str | os.PathLike,
    source: str | None,
    posemb_method: str | None = None,
    source_grid: tuple[int, int] | None = None,
    allow_nonfinite: bool = False,
) -> None:
    """The whole pipeline; ``source`` (``"official"``, ``"timm"``, ``"hf"``) refuses the others."""
    path = os.fspath(path)
    num_params = sum(int(np.prod(v.shape)) for v in model_params(model).values())
    family, raw, recorded = _read(path, byte_budget(num_params), allow_nonfinite)
    if source != family.source and family.source == "hf" and source is not None:
        raise CheckpointError(f"{path!r} is a Hugging Face checkpoint; use load_hf")
    if source == "hf" and family.source != "hf":
        raise CheckpointError(f"{path!r} is not a Hugging Face ViT folder")
    if source == "official" and family.source == "timm":
        raise CheckpointError(f"{path!r} is a timm state dict; use load_timm")
    if source == "timm" and family.source != "timm":
        raise CheckpointError(f"{path!r} is not a timm state dict; use load_npz")
    config = _check_model(model, family, path)
    _check_heads(path, recorded, config and config["num_heads"], "the model has num_heads=")
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
    """Loads a timm state dict: ``VisionTransformer`` (DeiT too), its hybrid, or BiT ``ResNetV2``.

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


def load_hf(
    model: keras.Model,
    path: str | os.PathLike,
    posemb_method: str = "bicubic",
    allow_nonfinite: bool = False,
) -> None:
    """Loads a Hugging Face ``transformers`` ViT folder (``config.json`` + ``model.safetensors``).

    ``ViTForImageClassification`` and ``ViTModel`` (whose pooler a headless model
    leaves out). ``config.json`` is checked against the weights and against the
    model's head count; a model built with other numerics (``layer_norm_eps``,
    ``hidden_act``) is warned about. ``keras_vit.models.from_checkpoint`` builds
    the matching model.

    Args:
        model: a keras_vit ViT (``layer_norm_epsilon=1e-12``,
            ``approximate_gelu=False`` for the defaults).
        path: the folder.
        posemb_method: how position embeddings are resampled (transformers: bicubic).
        allow_nonfinite: accept NaN and infinity in the checkpoint.

    Raises:
        CheckpointError: as ``load_npz``, and for a ``config.json`` that disagrees
            with the weights or the model, naming both.

    Example:
        >>> import os, tempfile
        >>> from keras_vit.models import ViT
        >>> model = ViT(image_size=32, patch_size=16, hidden_size=64, num_layers=1,
        ...             num_heads=2, mlp_dim=128, num_classes=10)
        >>> load_hf(model, tempfile.mkdtemp())
        Traceback (most recent call last):
        ...
        keras_vit.checkpoints.io.CheckpointError: ... is not a Hugging Face ViT folder (...)
    """
    if not is_hf_folder(path):
        raise CheckpointError(
            f"{os.fspath(path)!r} is not a Hugging Face ViT folder "
            "(config.json + model.safetensors)"
        )
    _load(model, path, "hf", posemb_method, allow_nonfinite=allow_nonfinite)


def load_weights_file(model: keras.Model, path: str | os.PathLike) -> None:
    """Loads any supported weights file, choosing the loader by its content.

    Args:
        model: a keras_vit model.
        path: a ``.weights.h5`` file, an official or timm ``.npz`` /
            ``.safetensors`` checkpoint, or a Hugging Face ViT folder (each
            read with its family's defaults).

    Raises:
        CheckpointError: for an unsupported file name, or as ``load_npz``.
    """
    path = os.fspath(path)
    if path.endswith(".weights.h5"):
        model.load_weights(path)
    elif path.endswith((".npz", ".safetensors")) or is_hf_folder(path):
        _load(model, path, source=None)
    else:
        raise CheckpointError(
            f"unsupported weights file {path!r}: expected .npz, .safetensors or .weights.h5"
        )


def save_npz(model: keras.Model, path: str | os.PathLike) -> None:
    """Writes the model's weights as an official-format ``.npz`` (atomically).

    ViT and hybrid models are written as vision_transformer's files (they load
    with its ``checkpoint.load``), BiT models as BiT's ``resnet/...`` files. A
    model whose numerics are not the official ones (timm, Hugging Face) gets one
    more key, ``meta.META_KEY``, which keras_vit's loaders apply.

    Args:
        model: a keras_vit model.
        path: the ``.npz`` file; written whole or not at all.
    """
    arrays = {key: keras.ops.convert_to_numpy(v) for key, v in model_params(model).items()}
    if model_family(model) == "bit":
        arrays = to_bit_layout(arrays)
    numerics = model_numerics(model)
    if numerics:
        arrays[META_KEY] = encode(numerics)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    write_atomic(path, write, suffix=".npz")
