"""``from_checkpoint``: build the model a checkpoint describes, then load it.

The architecture is read off the checkpoint's canonical keys and shapes (the
file is read once, through the loader's pipeline): widths, depths, heads,
patch size, classifier, representation layer, class count, the hybrid's stem
and BiT's stages; the image size from the position-embedding grid; the token
layout and block options (``models.layout``: DeiT's distillation token,
registers, ``fc_norm``, MAP head, sincos2d, LayerScale, qkv biases); a Hugging
Face folder's ``config.json`` (checked against its weights). Builder
arguments given as overrides win, so ``image_size=`` or ``num_classes=``
fine-tune as ``load_npz`` does (position embeddings resampled, a new head
left as initialised).

Example:
    >>> import os, tempfile
    >>> from keras_vit.checkpoints import save_npz
    >>> from keras_vit.models import ViT, from_checkpoint
    >>> model = ViT(image_size=32, patch_size=16, hidden_size=64, num_layers=1,
    ...             num_heads=4, mlp_dim=128, num_classes=10)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
    >>> save_npz(model, path)
    >>> restored = from_checkpoint(path)
    >>> restored.get_layer("Transformer").get_config()["num_heads"], restored.output.shape
    (4, (None, 10))
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

import keras
import numpy as np

from keras_vit.checkpoints.assign import POSEMB_KEY
from keras_vit.checkpoints.families import Family
from keras_vit.checkpoints.hf import hf_vit_arguments, is_hf_folder, read_config
from keras_vit.checkpoints.io import CheckpointError
from keras_vit.checkpoints.loader import load_canonical, read_canonical
from keras_vit.checkpoints.posemb import infer_grid
from keras_vit.models.bit import ResNetV2
from keras_vit.models.layout import embedded_prefix, layout_arguments
from keras_vit.models.vit import ViT

_BLOCK = re.compile(r"^Transformer/encoderblock_(\d+)/")
_UNIT = re.compile(r"^block(\d+)/unit(\d+)/")
_FIRST_BLOCK = "Transformer/encoderblock_0"


def _array(params: dict[str, np.ndarray], key: str, what: str) -> np.ndarray:
    if key not in params:
        raise CheckpointError(f"checkpoint has no {key!r}: cannot tell the model's {what}")
    return params[key]


def _numbered(indices: set[int], start: int, what: str) -> int:
    """How many of ``start, start + 1, ...`` there are; a gap is an error."""
    if sorted(indices) != list(range(start, start + len(indices))):
        raise CheckpointError(
            f"checkpoint's {what} are not numbered consecutively: {sorted(indices)}"
        )
    return len(indices)


def _stages(params: dict[str, np.ndarray]) -> tuple[int, ...]:
    """Units per ResNet stage, from the ``block{i}/unit{j}/`` keys."""
    units: dict[int, set[int]] = {}
    for key in params:
        match = _UNIT.match(key)
        if match:
            units.setdefault(int(match[1]), set()).add(int(match[2]))
    _numbered(set(units), 1, "ResNet stages (block{i})")
    return tuple(_numbered(units[i], 1, f"units of block{i}") for i in sorted(units))


def _width(channels: int) -> int | float:
    """A width multiplier from a root convolution's channels (64 at width 1)."""
    return channels // 64 if channels % 64 == 0 else channels / 64


def _head(params: dict[str, np.ndarray]) -> dict[str, Any]:
    if "head/kernel" not in params:
        return dict(include_top=False)
    return dict(include_top=True, num_classes=int(params["head/kernel"].shape[-1]))


def _image_size(params: dict[str, np.ndarray], patch: int, stride: int, prefix: int) -> int:
    if POSEMB_KEY not in params:
        raise CheckpointError(
            "sincos2d checkpoints (big_vision) do not record the image size: pass image_size="
        )
    posemb = params[POSEMB_KEY]
    tokens = posemb.shape[1] - prefix
    try:
        side, _ = infer_grid(tokens)
    except ValueError:
        raise CheckpointError(
            f"the checkpoint's {tokens} position embeddings form no square grid: pass image_size="
            " (and no_embed_class=True if its prefix tokens have no position embeddings)"
        ) from None
    return side * patch * stride


def vit_arguments(
    params: dict[str, np.ndarray], family: Family, image_size: Any = True
) -> dict[str, Any]:
    """The ``ViT`` arguments that canonical ViT or hybrid parameters describe.

    Args:
        params: canonical checkpoint parameters (``checkpoints.loader.read_canonical``).
        family: the checkpoint's family (for its GELU form and LayerNorm epsilon).
        image_size: True to infer the image size (from a square grid); False,
            or the size the caller gives (which then tells the patch grid).

    Returns:
        Keyword arguments of ``keras_vit.models.ViT``.

    Raises:
        CheckpointError: when a key the architecture is read from is absent.
    """
    kernel = _array(params, "embedding/kernel", "patch size")
    if kernel.shape[0] != kernel.shape[1]:
        raise CheckpointError(f"non-square patches {kernel.shape[:2]} are not supported")
    blocks = {int(m[1]) for m in map(_BLOCK.match, params) if m}
    query = _array(params, f"{_FIRST_BLOCK}/MultiHeadDotProductAttention_1/query/kernel", "heads")
    mlp = _array(params, f"{_FIRST_BLOCK}/MlpBlock_3/Dense_0/kernel", "MLP width")
    pre_logits = params.get("pre_logits/kernel")
    args = dict(
        patch_size=int(kernel.shape[0]),
        hidden_size=int(kernel.shape[-1]),
        num_layers=_numbered(blocks, 0, "encoder blocks"),
        num_heads=int(query.shape[1]),  # query kernels are [hidden, heads, head_dim]
        mlp_dim=int(mlp.shape[-1]),
        num_channels=int(kernel.shape[2]),
        representation_size=None if pre_logits is None else int(pre_logits.shape[-1]),
        approximate_gelu=family.approximate_gelu,
        **_head(params),
    )
    stride = 1
    if family.model == "hybrid":
        args["resnet_layers"] = _stages(params)
        root_kernel = _array(params, "conv_root/kernel", "stem width")
        root = root_kernel.shape[-1]
        args["num_channels"] = int(root_kernel.shape[2])  # the image's, not the stem's output
        if root % 64:
            raise CheckpointError(f"hybrid stem of {root} channels: not a multiple of 64")
        args["resnet_width"] = _width(root)
        args["resnet_numerics"] = family.resnet_numerics
        # The root conv and the max-pool halve the image; each stage after the first too.
        stride = 4 * 2 ** max(len(args["resnet_layers"]) - 1, 0)
    given = None if isinstance(image_size, bool) else image_size
    args.update(layout_arguments(params, family, given, args["patch_size"] * stride))
    if image_size is True:
        prefix = embedded_prefix(args)
        args["image_size"] = _image_size(params, args["patch_size"], stride, prefix)
    return args


def bit_arguments(params: dict[str, np.ndarray], family: Family) -> dict[str, Any]:
    """The ``ResNetV2`` arguments that canonical BiT parameters describe.

    BiT checkpoints do not record an image size: the builder's default (224)
    applies unless ``image_size=`` is given.

    Args:
        params: canonical checkpoint parameters.
        family: the checkpoint's family (its source gives the numerics).

    Returns:
        Keyword arguments of ``keras_vit.models.ResNetV2``.

    Raises:
        CheckpointError: when the root convolution is absent.
    """
    root = _array(params, "root_block/standardized_conv2d/kernel", "width").shape[-1]
    return dict(
        layers=_stages(params),
        width=_width(root),
        numerics=family.resnet_numerics,
        **_head(params),
    )


def from_checkpoint(
    path: str | os.PathLike,
    *,
    posemb_method: str | None = None,
    source_grid: tuple[int, int] | None = None,
    allow_nonfinite: bool = False,
    **overrides: Any,
) -> keras.Model:
    """Builds the ViT, hybrid or BiT model a checkpoint describes and loads it.

    Official ViT, hybrid and big_vision files get the tanh GELU
    (``approximate_gelu=True``), timm files the exact one (False), Hugging Face
    folders their ``config.json``'s ``hidden_act`` and ``layer_norm_eps``,
    ``save_npz`` files of models with other numerics the ones they record
    (``checkpoints.meta``); numerics given as overrides win. timm
    ViT state dicts do not record the head count: pass ``num_heads=``;
    big_vision ``sincos2d`` files do not record the image size: pass
    ``image_size=``. Whether prefix tokens have position embeddings is read off
    the embeddings' rows (timm), or fixed by the family (big_vision: no;
    official: yes), unless ``no_embed_class=`` is given. With no model yet to
    bound it, the file may declare up to ``checkpoints.io.MAX_CHECKPOINT_BYTES``
    (checked from its headers before any data is read).

    Args:
        path: an official or big_vision ``.npz`` (including our own
            ``save_npz`` files), a timm ``.npz`` / ``.safetensors`` state dict
            (ViT, DeiT, registers, LayerScale, ``fc_norm``, hybrid, BiT), or a
            Hugging Face ViT folder (``config.json`` + ``model.safetensors``).
        posemb_method: position-embedding resampling when ``image_size``
            changes the grid; None for the family's own (official bilinear,
            timm bicubic).
        source_grid: the checkpoint's patch grid when it is not square.
        allow_nonfinite: accept NaN and infinity in the checkpoint.
        **overrides: any ``ViT`` or ``ResNetV2`` argument, winning over the
            checkpoint's (``image_size=`` resamples the position embeddings,
            ``num_classes=`` keeps a new, zero head). ``image_size`` is needed
            when the checkpoint's grid is not square.

    Returns:
        The loaded ``keras.Model``.

    Raises:
        CheckpointError: for an unreadable, unrecognised or refused file, a
            timm ViT without ``num_heads``, a sincos2d file without
            ``image_size``, a ``config.json`` that disagrees with its weights,
            or keys that do not fit the model (named);
            no model is returned then.
        ValueError: for ``weights=``, or overrides the builder refuses
            (a TypeError for a name it does not take).
    """
    if "weights" in overrides:
        raise ValueError("from_checkpoint loads `path` itself; do not pass weights=")
    family, params = read_canonical(path, overrides.get("num_heads"), allow_nonfinite)
    if "no_embed_class" in overrides:  # the caller tells what the rows of pos_embedding cannot
        family = dataclasses.replace(family, no_embed_class=overrides["no_embed_class"])
    if family.model == "bit":
        builder, args = ResNetV2, bit_arguments(params, family)
    elif family.source == "hf" and is_hf_folder(path):
        builder, args = ViT, hf_vit_arguments(read_config(path), params)
    else:
        builder, args = ViT, vit_arguments(params, family, overrides.get("image_size", True))
    model = builder(**{**args, **overrides})
    # The model was built with the source's numerics unless the caller chose others.
    load_canonical(model, family, params, os.fspath(path), posemb_method, source_grid, False)
    return model
