"""timm state dicts (PyTorch layouts, ``blocks.{i}.attn.qkv``) to canonical keys."""

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
}
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")
_BLOCK_RENAMES = {
    "norm1.weight": "LayerNorm_0/scale",
    "norm1.bias": "LayerNorm_0/bias",
    "norm2.weight": "LayerNorm_2/scale",
    "norm2.bias": "LayerNorm_2/bias",
    "mlp.fc1.bias": "MlpBlock_3/Dense_0/bias",
    "mlp.fc2.bias": "MlpBlock_3/Dense_1/bias",
}
_ATTN = "MultiHeadDotProductAttention_1"


def _block_params(prefix: str, name: str, value: np.ndarray, num_heads: int) -> dict[str, np.ndarray]:
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
                out[f"{prefix}/{_ATTN}/{part_name}/kernel"] = part.T.reshape(-1, num_heads, head_dim)
            else:
                out[f"{prefix}/{_ATTN}/{part_name}/bias"] = part.reshape(num_heads, head_dim)
        return out
    if name == "attn.proj.weight":
        dim = value.shape[0]
        return {f"{prefix}/{_ATTN}/out/kernel": value.T.reshape(num_heads, dim // num_heads, dim)}
    if name == "attn.proj.bias":
        return {f"{prefix}/{_ATTN}/out/bias": value}
    raise CheckpointError(f"timm key {prefix.replace('Transformer/encoderblock_', 'blocks.')}.{name} "
                          "has no place in a keras_vit ViT")


def canonical_timm_vit(state: dict[str, np.ndarray], num_heads: int) -> dict[str, np.ndarray]:
    """Converts a timm ``VisionTransformer`` state dict to canonical keys.

    Args:
        state: the state dict, as numpy arrays.
        num_heads: the model's heads (timm's fused qkv does not record them).

    Returns:
        The canonical parameters.
    """
    if any(k.startswith("fc_norm.") for k in state):
        raise CheckpointError(
            "timm checkpoint has fc_norm (global_pool='avg': pooling before the final norm), "
            "which the official gap classifier does not have"
        )
    params: dict[str, np.ndarray] = {}
    for key, value in state.items():
        block = _BLOCK.match(key)
        if block:
            params.update(_block_params(f"Transformer/encoderblock_{block[1]}", block[2], value, num_heads))
        elif key in _RENAMES:
            params[_RENAMES[key]] = value
        elif key == "patch_embed.proj.weight":
            params["embedding/kernel"] = value.transpose(2, 3, 1, 0)
        elif key in ("head.weight", "pre_logits.fc.weight"):
            params[key.split(".")[0] + "/kernel"] = value.T
        else:
            params[key] = value  # left for the assignment to report as an extra key
    return params
