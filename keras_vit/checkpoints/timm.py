"""timm state dicts (PyTorch layouts) to canonical keys.

Three families: ``VisionTransformer`` (``blocks.{i}.attn.qkv``; with DeiT's
``dist_token`` / ``head_dist``, ``reg_token``, ``fc_norm`` and LayerScale
``ls1.gamma`` / ``ls2.gamma`` where present), its hybrid
(``patch_embed.backbone.stem`` / ``stages``, the official hybrid stem's port)
and ``ResNetV2`` BiT models (``stem.conv``, ``stages.{i}.blocks.{j}``).
"""

from __future__ import annotations

import re

import numpy as np

from keras_vit.checkpoints.io import CheckpointError

_RENAMES = {
    "cls_token": "cls",
    "pos_embed": "Transformer/posembed_input/pos_embedding",
    "patch_embed.proj.bias": "embedding/bias",
    "norm.weight": "Transformer/encoder_norm/scale",
    "norm.bias": "Transformer/encoder_norm/bias",
    "head.bias": "head/bias",
    "pre_logits.fc.bias": "pre_logits/bias",
    "dist_token": "dist",  # DeiT distilled
    "head_dist.bias": "head_dist/bias",
    "reg_token": "reg",  # register tokens
    "fc_norm.weight": "fc_norm/scale",  # global_pool="avg" with fc_norm
    "fc_norm.bias": "fc_norm/bias",
}
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")
_BLOCK_RENAMES = {
    "norm1.weight": "LayerNorm_0/scale",
    "norm1.bias": "LayerNorm_0/bias",
    "norm2.weight": "LayerNorm_2/scale",
    "norm2.bias": "LayerNorm_2/bias",
    "mlp.fc1.bias": "MlpBlock_3/Dense_0/bias",
    "mlp.fc2.bias": "MlpBlock_3/Dense_1/bias",
    "ls1.gamma": "ls1/scale",  # LayerScale (init_values; DINOv2)
    "ls2.gamma": "ls2/scale",
}
_ATTN = "MultiHeadDotProductAttention_1"


def _block_params(
    prefix: str, name: str, value: np.ndarray, num_heads: int
) -> dict[str, np.ndarray]:
    if name in _BLOCK_RENAMES:
        return {f"{prefix}/{_BLOCK_RENAMES[name]}": value}
    if name == "mlp.fc1.weight":
        return {f"{prefix}/MlpBlock_3/Dense_0/kernel": value.T}
    if name == "mlp.fc2.weight":
        return {f"{prefix}/MlpBlock_3/Dense_1/kernel": value.T}
    if name in ("attn.qkv.weight", "attn.qkv.bias"):
        # timm fuses q, k, v along the output axis, each laid out [heads, head_dim].
        parts = np.split(value, 3, axis=0)
        out = {}
        for part_name, part in zip(("query", "key", "value"), parts):
            head_dim = part.shape[0] // num_heads
            if name.endswith("weight"):
                out[f"{prefix}/{_ATTN}/{part_name}/kernel"] = part.T.reshape(
                    -1, num_heads, head_dim
                )
            else:
                out[f"{prefix}/{_ATTN}/{part_name}/bias"] = part.reshape(num_heads, head_dim)
        return out
    if name == "attn.proj.weight":
        dim = value.shape[0]
        return {f"{prefix}/{_ATTN}/out/kernel": value.T.reshape(num_heads, dim // num_heads, dim)}
    if name == "attn.proj.bias":
        return {f"{prefix}/{_ATTN}/out/bias": value}
    raise CheckpointError(
        f"timm key {prefix.replace('Transformer/encoderblock_', 'blocks.')}.{name} "
        "has no place in a keras_vit ViT"
    )


def _norm_param(key: str) -> str:
    """The official name of a PyTorch norm parameter: ``weight`` -> ``scale``, ``bias`` -> ``bias``."""
    return "scale" if key.endswith("weight") else "bias"


def _conv(value: np.ndarray) -> np.ndarray:
    """PyTorch OIHW kernel to HWIO."""
    return value.transpose(2, 3, 1, 0)


_BIT_UNIT = re.compile(r"^stages\.(\d+)\.blocks\.(\d+)\.(\w+)\.(weight|bias)$")
_BIT_PARTS = {
    "norm1": "a/group_norm",
    "conv1": "a/standardized_conv2d",
    "norm2": "b/group_norm",
    "conv2": "b/standardized_conv2d",
    "norm3": "c/group_norm",
    "conv3": "c/standardized_conv2d",
}


def canonical_timm_bit(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Converts a timm ``ResNetV2`` (``resnetv2_*_bit``) state dict to canonical keys.

    Args:
        state: the state dict, as numpy arrays.

    Returns:
        The canonical parameters; keys without a place are kept, for the
        assignment to report.
    """
    params: dict[str, np.ndarray] = {}
    for key, value in state.items():
        unit = _BIT_UNIT.match(key.replace(".downsample.conv.", ".proj."))
        if key == "stem.conv.weight":
            params["root_block/standardized_conv2d/kernel"] = _conv(value)
        elif key in ("norm.weight", "norm.bias"):
            params["group_norm/" + _norm_param(key)] = value
        elif key == "head.fc.weight":
            params["head/kernel"] = value.reshape(value.shape[:2]).T
        elif key == "head.fc.bias":
            params["head/bias"] = value
        elif unit and (unit[3] in _BIT_PARTS or unit[3] == "proj"):
            scope = f"block{int(unit[1]) + 1}/unit{int(unit[2]) + 1:02d}/"
            part = "a/proj/standardized_conv2d" if unit[3] == "proj" else _BIT_PARTS[unit[3]]
            if part.endswith("conv2d"):
                params[f"{scope}{part}/kernel"] = _conv(value)
            else:
                params[f"{scope}{part}/" + _norm_param(unit[4])] = value
        else:
            params[key] = value  # left for the assignment to report as an extra key
    return params


_HYBRID_UNIT = re.compile(
    r"^patch_embed\.backbone\.stages\.(\d+)\.blocks\.(\d+)\.(.+)\.(weight|bias)$"
)
_HYBRID_PARTS = {
    "conv1": "conv1",
    "norm1": "gn1",
    "conv2": "conv2",
    "norm2": "gn2",
    "conv3": "conv3",
    "norm3": "gn3",
    "downsample.conv": "conv_proj",
    "downsample.norm": "gn_proj",
}


def _hybrid_stem(
    state: dict[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Splits a timm hybrid's backbone off (as canonical keys) from the rest."""
    stem, rest = {}, {}
    for key, value in state.items():
        unit = _HYBRID_UNIT.match(key)
        if key == "patch_embed.backbone.stem.conv.weight":
            stem["conv_root/kernel"] = _conv(value)
        elif key in (
            "patch_embed.backbone.stem.norm.weight",
            "patch_embed.backbone.stem.norm.bias",
        ):
            stem["gn_root/" + _norm_param(key)] = value
        elif unit and unit[3] in _HYBRID_PARTS:
            name = f"block{int(unit[1]) + 1}/unit{int(unit[2]) + 1}/{_HYBRID_PARTS[unit[3]]}"
            if name.rsplit("/", 1)[1].startswith("conv"):
                stem[f"{name}/kernel"] = _conv(value)
            else:
                stem[f"{name}/" + _norm_param(unit[4])] = value
        else:
            rest[key] = value
    return stem, rest


def canonical_timm_vit(state: dict[str, np.ndarray], num_heads: int) -> dict[str, np.ndarray]:
    """Converts a timm ``VisionTransformer`` state dict to canonical keys.

    Args:
        state: the state dict, as numpy arrays.
        num_heads: the model's heads (timm's fused qkv does not record them).

    Returns:
        The canonical parameters; keys without a place are kept, for the
        assignment to report.

    Raises:
        CheckpointError: when ``num_heads`` does not divide the width.
    """
    width = state["patch_embed.proj.weight"].shape[0] if "patch_embed.proj.weight" in state else 0
    if not isinstance(num_heads, int) or num_heads <= 0 or width % num_heads:
        raise CheckpointError(
            f"num_heads={num_heads!r} does not divide the checkpoint's width {width}"
        )
    params, state = _hybrid_stem(state)
    for key, value in state.items():
        block = _BLOCK.match(key)
        if block:
            params.update(
                _block_params(f"Transformer/encoderblock_{block[1]}", block[2], value, num_heads)
            )
        elif key in _RENAMES:
            params[_RENAMES[key]] = value
        elif key == "patch_embed.proj.weight":
            params["embedding/kernel"] = _conv(value)
        elif key in ("head.weight", "head_dist.weight", "pre_logits.fc.weight"):
            params[key.split(".")[0] + "/kernel"] = value.T
        else:
            params[key] = value  # left for the assignment to report as an extra key
    return params
