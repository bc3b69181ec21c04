"""Loading and saving checkpoints: official ``.npz`` files, timm state dicts.

Every loader checks the whole checkpoint against the model before it assigns
anything, so a bad file leaves the model untouched.

Example:
    >>> import os, tempfile
    >>> from keras_vit.models import create_model
    >>> from keras_vit.checkpoints import load_npz, save_npz
    >>> model = create_model("ViT-Mu/16", image_size=32, num_classes=10)
    >>> path = os.path.join(tempfile.mkdtemp(), "mu16.npz")
    >>> save_npz(model, path)
    >>> load_npz(create_model("ViT-Mu/16", image_size=32, num_classes=10), path)
"""

from __future__ import annotations

import logging
import os

import keras

from keras_vit.checkpoints.assign import assign_params, model_params
from keras_vit.checkpoints.io import CheckpointError, read_npz, read_safetensors, write_npz_atomic
from keras_vit.checkpoints.official import canonical_official, detect_family, to_bit_layout
from keras_vit.checkpoints.posemb import resample_position_embeddings
from keras_vit.checkpoints.timm import canonical_timm_bit, canonical_timm_vit, timm_family

logger = logging.getLogger("keras_vit")

__all__ = [
    "CheckpointError",
    "load_npz",
    "load_timm",
    "load_weights_file",
    "resample_position_embeddings",
    "save_npz",
]


def _model_family(model: keras.Model) -> str:
    names = {layer.name for layer in model.layers}
    if "conv_root" in names:
        return "hybrid"
    if "Transformer" in names:
        return "vit"
    if "root_block" in names:
        return "bit"
    raise CheckpointError(f"model {model.name!r} is not a keras_vit ViT, hybrid or BiT model")


def _encoder_config(model: keras.Model) -> dict:
    return model.get_layer("Transformer").get_config()


def _check_family(model: keras.Model, family: str, path) -> None:
    expected = _model_family(model)
    if family != expected:
        raise CheckpointError(
            f"{os.fspath(path)!r} is a {family!r} checkpoint but the model is a {expected!r} model"
        )


def _warn_gelu(model: keras.Model, approximate: bool, source: str) -> None:
    if _model_family(model) == "bit":
        return
    if _encoder_config(model)["approximate_gelu"] != approximate:
        form = "tanh (approximate_gelu=True)" if approximate else "erf (approximate_gelu=False)"
        logger.warning(
            "%s was trained with the %s GELU; the model uses the other form", source, form
        )


def load_npz(
    model: keras.Model,
    path: str | os.PathLike,
    posemb_method: str = "bilinear",
    source_grid: tuple[int, int] | None = None,
) -> None:
    """Loads an official ``.npz`` checkpoint: ViT, hybrid or BiT.

    Recognises the family from the keys (original, AugReg and i21k ViT files
    with pre-Linen numbering; Linen numbering; big_vision's layout; hybrids
    with old ``(1, 1, 1, C)`` GroupNorm parameters; BiT's ``resnet/`` files). Position
    embeddings are resampled when the model's grid differs (the official
    loader's bilinear zoom by default). A model with another class count, or
    without the checkpoint's ``pre_logits`` layer, keeps its own head.

    Args:
        model: a keras_vit model.
        path: the ``.npz`` file.
        posemb_method: ``"bilinear"`` (official) or ``"bicubic"``.
        source_grid: the checkpoint's patch grid when it is not square.

    Raises:
        CheckpointError: naming the missing, extra or mis-shaped keys, or the
            wrong family; the model's weights are then unchanged.
    """
    raw = read_npz(path)
    family = detect_family(raw)
    if family == "timm":
        raise CheckpointError(f"{os.fspath(path)!r} is a timm state dict; use load_timm")
    _check_family(model, family, path)
    _warn_gelu(model, True, os.fspath(path))
    assign_params(model, canonical_official(raw), os.fspath(path), posemb_method, source_grid)


def load_timm(model: keras.Model, path: str | os.PathLike, posemb_method: str = "bicubic") -> None:
    """Loads a timm / Hugging Face state dict: ``VisionTransformer``, its hybrid, or BiT ``ResNetV2``.

    Args:
        model: a keras_vit model; a ViT built with ``approximate_gelu=False``
            matches timm's exact GELU.
        path: a ``.safetensors`` file or an ``.npz`` of the state dict.
        posemb_method: how position embeddings are resampled (timm: bicubic).

    Raises:
        CheckpointError: as ``load_npz``.
    """
    path = os.fspath(path)
    state = read_safetensors(path) if path.endswith(".safetensors") else read_npz(path)
    if detect_family(state) != "timm":
        raise CheckpointError(f"{path!r} is not a timm state dict; use load_npz")
    family = timm_family(state)
    _check_family(model, family, path)
    if family == "bit":
        params = canonical_timm_bit(state)
    else:
        _warn_gelu(model, False, path)
        params = canonical_timm_vit(state, _encoder_config(model)["num_heads"])
    assign_params(model, params, path, posemb_method)


def save_npz(model: keras.Model, path: str | os.PathLike) -> None:
    """Writes the model's weights as an official-format ``.npz`` (atomically).

    ViT and hybrid models are written as vision_transformer's files (they load
    with its ``checkpoint.load``), BiT models as BiT's ``resnet/...`` files.
    """
    arrays = {key: keras.ops.convert_to_numpy(v) for key, v in model_params(model).items()}
    if _model_family(model) == "bit":
        arrays = to_bit_layout(arrays)
    write_npz_atomic(path, arrays)


def load_weights_file(model: keras.Model, path: str | os.PathLike) -> None:
    """Loads any supported weights file, choosing the loader by its content."""
    path = os.fspath(path)
    if path.endswith(".weights.h5"):
        model.load_weights(path)
    elif path.endswith(".safetensors"):
        load_timm(model, path)
    elif path.endswith(".npz"):
        if detect_family(read_npz(path)) == "timm":
            load_timm(model, path)
        else:
            load_npz(model, path)
    else:
        raise CheckpointError(
            f"unsupported weights file {path!r}: expected .npz, .safetensors or .weights.h5"
        )
