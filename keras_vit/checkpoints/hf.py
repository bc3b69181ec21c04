"""Hugging Face ``transformers`` ViT folders (``config.json`` + ``model.safetensors``).

``ViTModel`` and ``ViTForImageClassification`` as ``save_pretrained`` writes
them: keys ``[vit.]embeddings...``, ``[vit.]encoder.layer.{i}...``,
``[vit.]layernorm``, ``classifier`` (and ``pooler.dense`` for ``ViTModel``),
PyTorch layouts, query, key and value stored apart. The weights do not record
everything: the head count, the LayerNorm epsilon (``layer_norm_eps``, 1e-12 by
default) and the GELU form (``hidden_act``) come from ``config.json``, which is
checked against the weights.

Example:
    >>> import numpy as np
    >>> params = canonical_hf_vit({"vit.layernorm.weight": np.ones(4)}, num_heads=2)
    >>> sorted(params)
    ['Transformer/encoder_norm/scale']
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import numpy as np

from keras_vit.checkpoints.io import CheckpointError, read_checkpoint

Params = dict[str, np.ndarray]
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
# hidden_act -> approximate_gelu: "gelu" is the exact erf form; the others are
# the tanh approximation 0.5*x*(1 + tanh(sqrt(2/pi)*(x + 0.044715*x**3))).
_GELU_FORMS = {"gelu": False, "gelu_new": True, "gelu_pytorch_tanh": True, "gelu_fast": True}
_RENAMES = {
    "embeddings.cls_token": "cls",
    "embeddings.position_embeddings": "Transformer/posembed_input/pos_embedding",
    "embeddings.patch_embeddings.projection.bias": "embedding/bias",
    "layernorm.weight": "Transformer/encoder_norm/scale",
    "layernorm.bias": "Transformer/encoder_norm/bias",
    "classifier.bias": "head/bias",
    "pooler.dense.bias": "pre_logits/bias",
}
_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")
_ATTN = "MultiHeadDotProductAttention_1"
_LAYER_PARTS = {
    "layernorm_before": "LayerNorm_0",
    "layernorm_after": "LayerNorm_2",
    "intermediate.dense": "MlpBlock_3/Dense_0",
    "output.dense": "MlpBlock_3/Dense_1",
    "attention.attention.query": f"{_ATTN}/query",
    "attention.attention.key": f"{_ATTN}/key",
    "attention.attention.value": f"{_ATTN}/value",
    "attention.output.dense": f"{_ATTN}/out",
}


def is_hf_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding ``config.json`` (a Hugging Face checkpoint).

    Args:
        path: a file or folder.

    Returns:
        True for a folder with a ``config.json``.
    """
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG))


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """Reads and checks a ViT ``config.json``.

    Args:
        folder: the checkpoint folder.

    Returns:
        The configuration.

    Raises:
        CheckpointError: for an unreadable file or a model type other than ``vit``.
    """
    path = os.path.join(folder, CONFIG)
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"cannot read {path!r}: {error}") from error
    if not isinstance(config, dict) or config.get("model_type") != "vit":
        kind = config.get("model_type") if isinstance(config, dict) else None
        raise CheckpointError(
            f"{path!r} describes model_type={kind!r}; keras_vit reads Hugging Face 'vit' models"
        )
    return config


def _layer_param(index: str, part: str, kind: str, value: np.ndarray, num_heads: int) -> Params:
    scope = f"Transformer/encoderblock_{index}/{_LAYER_PARTS[part]}"
    if kind == "bias":
        if part.startswith("attention.attention."):
            value = value.reshape(num_heads, -1)
        return {f"{scope}/bias": value}
    if part.startswith("layernorm"):
        return {f"{scope}/scale": value}
    kernel = value.T  # PyTorch Linear: [out, in]
    if part.startswith("attention.attention."):
        kernel = kernel.reshape(kernel.shape[0], num_heads, -1)
    elif part == "attention.output.dense":
        kernel = kernel.reshape(num_heads, -1, kernel.shape[-1])
    return {f"{scope}/kernel": kernel}


def canonical_hf_vit(state: Params, num_heads: int) -> Params:
    """Converts a Hugging Face ViT state dict to canonical keys.

    Args:
        state: the ``model.safetensors`` arrays.
        num_heads: ``config.json``'s ``num_attention_heads``.

    Returns:
        The canonical parameters; keys without a place are kept, for the
        assignment to report.
    """
    params: Params = {}
    for key, value in state.items():
        name = key.removeprefix("vit.")
        layer = _LAYER.match(name)
        if layer and layer[2] in _LAYER_PARTS:
            params.update(_layer_param(layer[1], layer[2], layer[3], value, num_heads))
        elif name in _RENAMES:
            params[_RENAMES[name]] = value
        elif name == "embeddings.patch_embeddings.projection.weight":
            params["embedding/kernel"] = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        elif name in ("classifier.weight", "pooler.dense.weight"):
            params[("head" if name[0] == "c" else "pre_logits") + "/kernel"] = value.T
        else:
            params[key] = value  # left for the assignment to report as an extra key
    return params


def hf_numerics(config: dict[str, Any]) -> dict[str, Any]:
    """The numerics ``config.json`` sets: GELU form and LayerNorm epsilon.

    Args:
        config: the configuration.

    Returns:
        ``approximate_gelu`` and ``layer_norm_epsilon``.

    Raises:
        CheckpointError: for a ``hidden_act`` keras_vit does not implement.
    """
    act = config.get("hidden_act", "gelu")
    if act not in _GELU_FORMS:
        raise CheckpointError(
            f"config.json's hidden_act={act!r} is not supported (expected one of "
            f"{sorted(_GELU_FORMS)})"
        )
    return dict(
        approximate_gelu=_GELU_FORMS[act],
        layer_norm_epsilon=float(config.get("layer_norm_eps", 1e-12)),
    )


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, (int, float)) else tuple(map(int, value))


def _shape(state: Params, key: str) -> tuple[int, ...] | None:
    for name in (f"vit.{key}", key):
        if name in state:
            return tuple(state[name].shape)
    return None


def _claims(config: dict[str, Any], state: Params) -> list[tuple[str, Any, str, Any, bool]]:
    """``(config name, value, weight key, its shape, whether they agree)`` for each check."""
    hidden, heads = config.get("hidden_size", 768), config.get("num_attention_heads", 12)
    patch, image = _pair(config.get("patch_size", 16)), _pair(config.get("image_size", 224))
    channels = config.get("num_channels", 3)
    labels = len(config["id2label"]) if "id2label" in config else config.get("num_labels", 2)
    proj = "embeddings.patch_embeddings.projection.weight"
    layers = {int(m[1]) for m in map(_LAYER.match, (k.removeprefix("vit.") for k in state)) if m}
    depth = config.get("num_hidden_layers", 12)
    tokens = (image[0] // patch[0]) * (image[1] // patch[1]) + 1
    checks = [
        ("hidden_size", hidden, proj, lambda s: s[0] == hidden),
        ("patch_size", patch, proj, lambda s: s[2:] == patch),
        ("num_channels", channels, proj, lambda s: s[1] == channels),
        ("num_attention_heads", heads, proj, lambda s: s[0] % heads == 0),
        ("image_size", image, "embeddings.position_embeddings", lambda s: s[1] == tokens),
        (
            "intermediate_size",
            config.get("intermediate_size", 3072),
            "encoder.layer.0.intermediate.dense.weight",
            lambda s: s[0] == config.get("intermediate_size", 3072),
        ),
        ("num_labels", labels, "classifier.weight", lambda s: s[0] == labels),
    ]
    result = [(n, v, k, _shape(state, k), f) for n, v, k, f in checks]
    result = [(n, v, k, shape, shape is None or f(shape)) for n, v, k, shape, f in result]
    result.append(
        ("num_hidden_layers", depth, "encoder.layer.<i>", len(layers), layers == set(range(depth)))
    )
    bias = _shape(state, "encoder.layer.0.attention.attention.query.bias") is not None
    qkv_bias = bool(config.get("qkv_bias", True))
    result.append(
        (
            "qkv_bias",
            qkv_bias,
            "encoder.layer.0.attention.attention.query.bias",
            "present" if bias else "absent",
            bias == qkv_bias,
        )
    )
    return result


def check_config(config: dict[str, Any], state: Params, folder: str) -> None:
    """Refuses a ``config.json`` that disagrees with the weights, naming both.

    Args:
        config: the configuration.
        state: the ``model.safetensors`` arrays, as stored.
        folder: the checkpoint folder, for the message.

    Raises:
        CheckpointError: listing each disagreement (config value, weight key and shape).
    """
    wrong = [
        f"{CONFIG} says {name}={value!r} but {WEIGHTS} has {key} of shape {shape}"
        if isinstance(shape, tuple)
        else f"{CONFIG} says {name}={value!r} but {WEIGHTS} has {shape} ({key})"
        for name, value, key, shape, agree in _claims(config, state)
        if not agree
    ]
    if wrong:
        raise CheckpointError(f"{folder!r}: " + "; ".join(wrong))


def hf_vit_arguments(config: dict[str, Any], params: Params) -> dict[str, Any]:
    """The ``ViT`` arguments a (checked) Hugging Face ViT configuration describes.

    Args:
        config: the configuration (``read_config``).
        params: the canonical parameters (to tell a classifier from a ``ViTModel``).

    Returns:
        Keyword arguments of ``keras_vit.models.ViT``.
    """
    patch = _pair(config.get("patch_size", 16))
    if patch[0] != patch[1]:
        raise CheckpointError(f"non-square patches {patch} are not supported")
    args = dict(
        image_size=_pair(config.get("image_size", 224)),
        patch_size=patch[0],
        hidden_size=int(config.get("hidden_size", 768)),
        num_layers=int(config.get("num_hidden_layers", 12)),
        num_heads=int(config.get("num_attention_heads", 12)),
        mlp_dim=int(config.get("intermediate_size", 3072)),
        num_channels=int(config.get("num_channels", 3)),
        qkv_bias=bool(config.get("qkv_bias", True)),
        classifier="token",
        **hf_numerics(config),
    )
    head = params.get("head/kernel")
    args.update(
        dict(include_top=False)
        if head is None
        else dict(include_top=True, num_classes=int(head.shape[-1]))
    )
    return args


def read_hf(
    folder: str | os.PathLike, max_bytes: int, allow_nonfinite: bool = False
) -> tuple[dict[str, Any], Params]:
    """Reads a Hugging Face ViT folder and checks its ``config.json`` against its weights.

    Args:
        folder: the folder holding ``config.json`` and ``model.safetensors``.
        max_bytes: the most array bytes the weights may declare.
        allow_nonfinite: accept NaN and infinity.

    Returns:
        ``(config, the arrays as stored)``.

    Raises:
        CheckpointError: for an unreadable folder or a disagreement, naming both sides.
    """
    folder = os.fspath(folder)
    config = read_config(folder)
    weights = os.path.join(folder, WEIGHTS)
    if not os.path.isfile(weights):
        raise CheckpointError(f"{folder!r} has a {CONFIG} but no {WEIGHTS}")
    state = read_checkpoint(weights, max_bytes, allow_nonfinite)
    check_config(config, state, folder)
    return config, state
