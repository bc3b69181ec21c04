"""A float64 NumPy forward pass of a ViT, written from timm's and transformers' rules.

Not from keras_vit's code: the rules as timm ``vision_transformer.py`` states them
(``_pos_embed``: ``[cls, reg..., patches]``; with ``no_embed_class`` the position
embeddings are added to the patches before the prefix tokens are concatenated,
otherwise after; blocks ``x + ls1(attn(norm1(x)))``, ``x + ls2(mlp(norm2(x)))``;
``global_pool="avg"`` averages the tokens after the prefix; ``fc_norm`` replaces
the final ``norm`` and follows the pooling).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf


def _ln(x, weight, bias, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _gelu(x, approximate):
    if approximate:
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def random_timm_state(
    rng,
    *,
    dim=32,
    depth=2,
    mlp=64,
    patch=8,
    grid=(4, 4),
    classes=5,
    registers=0,
    no_embed_class=False,
    layer_scale=False,
    qkv_bias=True,
    fc_norm=False,
):
    """A timm ``VisionTransformer`` state dict (PyTorch layouts) with random weights."""

    def normal(*shape, mean=0.0):
        return (mean + 0.05 * rng.normal(size=shape)).astype(np.float32)

    prefix = 1 + registers
    state = {
        "cls_token": normal(1, 1, dim),
        "pos_embed": normal(1, grid[0] * grid[1] + (0 if no_embed_class else prefix), dim),
        "patch_embed.proj.weight": normal(dim, 3, patch, patch),
        "patch_embed.proj.bias": normal(dim),
        "head.weight": normal(classes, dim),
        "head.bias": normal(classes),
    }
    if registers:
        state["reg_token"] = normal(1, registers, dim)
    norm = "fc_norm" if fc_norm else "norm"
    state |= {f"{norm}.weight": normal(dim, mean=1.0), f"{norm}.bias": normal(dim)}
    for i in range(depth):
        b = f"blocks.{i}."
        state |= {
            b + "norm1.weight": normal(dim, mean=1.0),
            b + "norm1.bias": normal(dim),
            b + "attn.qkv.weight": normal(3 * dim, dim),
            b + "attn.proj.weight": normal(dim, dim),
            b + "attn.proj.bias": normal(dim),
            b + "norm2.weight": normal(dim, mean=1.0),
            b + "norm2.bias": normal(dim),
            b + "mlp.fc1.weight": normal(mlp, dim),
            b + "mlp.fc1.bias": normal(mlp),
            b + "mlp.fc2.weight": normal(dim, mlp),
            b + "mlp.fc2.bias": normal(dim),
        }
        if qkv_bias:
            state[b + "attn.qkv.bias"] = normal(3 * dim)
        if layer_scale:
            state[b + "ls1.gamma"] = normal(dim, mean=0.5)
            state[b + "ls2.gamma"] = normal(dim, mean=0.5)
    return state


def timm_forward(
    state,
    images,
    num_heads,
    *,
    no_embed_class=False,
    global_pool="token",
    eps=1e-6,
    approximate_gelu=False,
):
    """Logits of a timm ViT state dict on NHWC images, in float64."""
    s = {k: np.asarray(v, np.float64) for k, v in state.items()}
    x = np.asarray(images, np.float64)
    weight = s["patch_embed.proj.weight"]
    dim, _, p, _ = weight.shape
    n, h, w, c = x.shape
    # Patches flattened in the (channel, row, column) order of the conv weight.
    patches = x.reshape(n, h // p, p, w // p, p, c).transpose(0, 1, 3, 5, 2, 4)
    t = patches.reshape(n, -1, c * p * p) @ weight.reshape(dim, -1).T + s["patch_embed.proj.bias"]
    prefix = [np.broadcast_to(s["cls_token"], (n, 1, dim))]
    if "reg_token" in s:
        prefix.append(np.broadcast_to(s["reg_token"], (n,) + s["reg_token"].shape[1:]))
    if no_embed_class:
        t = np.concatenate(prefix + [t + s["pos_embed"]], axis=1)
    else:
        t = np.concatenate(prefix + [t], axis=1) + s["pos_embed"]
    head_dim = dim // num_heads
    for i in range(len({k.split(".")[1] for k in s if k.startswith("blocks.")})):
        b = f"blocks.{i}."
        y = _ln(t, s[b + "norm1.weight"], s[b + "norm1.bias"], eps)
        qkv = y @ s[b + "attn.qkv.weight"].T + s.get(b + "attn.qkv.bias", 0.0)
        q, k, v = qkv.reshape(n, -1, 3, num_heads, head_dim).transpose(2, 0, 3, 1, 4)
        logits = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head_dim)
        attn = np.exp(logits - logits.max(-1, keepdims=True))
        attn /= attn.sum(-1, keepdims=True)
        o = (attn @ v).transpose(0, 2, 1, 3).reshape(n, -1, dim)
        o = o @ s[b + "attn.proj.weight"].T + s[b + "attn.proj.bias"]
        t = t + o * s.get(b + "ls1.gamma", 1.0)
        y = _ln(t, s[b + "norm2.weight"], s[b + "norm2.bias"], eps)
        y = _gelu(y @ s[b + "mlp.fc1.weight"].T + s[b + "mlp.fc1.bias"], approximate_gelu)
        y = y @ s[b + "mlp.fc2.weight"].T + s[b + "mlp.fc2.bias"]
        t = t + y * s.get(b + "ls2.gamma", 1.0)
    if "norm.weight" in s:
        t = _ln(t, s["norm.weight"], s["norm.bias"], eps)
    num_prefix = sum(token.shape[1] for token in prefix)
    pooled = t[:, 0] if global_pool == "token" else t[:, num_prefix:].mean(axis=1)
    if "fc_norm.weight" in s:
        pooled = _ln(pooled, s["fc_norm.weight"], s["fc_norm.bias"], eps)
    return pooled @ s["head.weight"].T + s["head.bias"]


def hf_state(state):
    """The same weights as a transformers ``ViTForImageClassification`` would save them."""
    dim = state["cls_token"].shape[-1]
    out = {
        "vit.embeddings.cls_token": state["cls_token"],
        "vit.embeddings.position_embeddings": state["pos_embed"],
        "vit.embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
        "vit.embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
        "vit.layernorm.weight": state["norm.weight"],
        "vit.layernorm.bias": state["norm.bias"],
        "classifier.weight": state["head.weight"],
        "classifier.bias": state["head.bias"],
    }
    parts = {
        "norm1": "layernorm_before",
        "norm2": "layernorm_after",
        "attn.proj": "attention.output.dense",
        "mlp.fc1": "intermediate.dense",
        "mlp.fc2": "output.dense",
    }
    for key, value in state.items():
        if not key.startswith("blocks."):
            continue
        _, i, rest = key.split(".", 2)
        name, kind = rest.rsplit(".", 1)
        layer = f"vit.encoder.layer.{i}."
        if name == "attn.qkv":
            for j, part in enumerate(("query", "key", "value")):
                out[f"{layer}attention.attention.{part}.{kind}"] = value[j * dim : (j + 1) * dim]
        else:
            out[f"{layer}{parts[name]}.{kind}"] = value
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def big_vision_params(state, num_heads):
    """The same weights as big_vision's ``vit.Model`` saves them (``"tok"``, learned posemb).

    Current Linen names, flax layouts; ``pos_embedding`` at the top level, covering
    the patches only (pair with a state built with ``no_embed_class=True``).
    """
    dim = state["cls_token"].shape[-1]
    head_dim = dim // num_heads
    out = {
        "embedding/kernel": state["patch_embed.proj.weight"].transpose(2, 3, 1, 0),
        "embedding/bias": state["patch_embed.proj.bias"],
        "cls": state["cls_token"],
        "pos_embedding": state["pos_embed"],
        "Transformer/encoder_norm/scale": state["norm.weight"],
        "Transformer/encoder_norm/bias": state["norm.bias"],
        "head/kernel": state["head.weight"].T,
        "head/bias": state["head.bias"],
    }
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    for i in range(depth):
        b, scope = f"blocks.{i}.", f"Transformer/encoderblock_{i}/"
        attn = scope + "MultiHeadDotProductAttention_0/"
        qkv_w, qkv_b = state[b + "attn.qkv.weight"], state[b + "attn.qkv.bias"]
        for j, part in enumerate(("query", "key", "value")):
            rows = slice(j * dim, (j + 1) * dim)
            out[f"{attn}{part}/kernel"] = qkv_w[rows].T.reshape(dim, num_heads, head_dim)
            out[f"{attn}{part}/bias"] = qkv_b[rows].reshape(num_heads, head_dim)
        out[attn + "out/kernel"] = state[b + "attn.proj.weight"].T.reshape(num_heads, head_dim, dim)
        out[attn + "out/bias"] = state[b + "attn.proj.bias"]
        for norm, name in (("norm1", "LayerNorm_0"), ("norm2", "LayerNorm_1")):
            out[f"{scope}{name}/scale"] = state[f"{b}{norm}.weight"]
            out[f"{scope}{name}/bias"] = state[f"{b}{norm}.bias"]
        for fc, name in (("fc1", "Dense_0"), ("fc2", "Dense_1")):
            out[f"{scope}MlpBlock_0/{name}/kernel"] = state[f"{b}mlp.{fc}.weight"].T
            out[f"{scope}MlpBlock_0/{name}/bias"] = state[f"{b}mlp.{fc}.bias"]
    return {k: np.ascontiguousarray(v) for k, v in out.items()}
