"""Float64 NumPy forward passes of the ResNet families, written from each source's code.

Nothing here calls keras_vit: the formulas are read off the sources themselves,

- official BiT: google-research/big_transfer ``bit_jax/models.py`` (``standardize``:
  ``x - mean``, then ``/ sqrt(mean(x**2) + eps)``; ``StdConv`` eps 1e-10, ``GroupNorm``
  eps 1e-5; ``fixed_padding``; the root's zero pad and VALID max-pool);
- timm BiT: ``timm/models/resnetv2.py`` (``_create_resnetv2_bit``: ``StdConv2d(eps=1e-8)``,
  ``stem_type='fixed'``; ``GroupNormAct`` eps 1e-5) and ``timm/layers/std_conv.py``
  (``F.batch_norm`` over each output channel: ``(w - mean) / sqrt(var + eps)``);
- timm hybrid: ``timm/models/vision_transformer_hybrid.py`` (``_resnetv2``:
  ``StdConv2dSame(eps=1e-8)``, ``stem_type='same'``, ``preact=False``), the post-activation
  ``Bottleneck`` of ``resnetv2.py`` and ``VisionTransformer`` (LayerNorm eps 1e-6, exact GELU).

Arrays are NHWC with HWIO kernels; parameters are read by the files' own key names.
"""

from __future__ import annotations

import math

import numpy as np

F64 = np.float64


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (timm ``pad_same``): the odd pixel goes at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad(x: np.ndarray, pads: tuple[int, int], value: float = 0.0) -> np.ndarray:
    """Pads height and width of an NHWC array by ``pads`` (before, after)."""
    return np.pad(x, ((0, 0), pads, pads, (0, 0)), constant_values=value)


def conv(x: np.ndarray, kernel: np.ndarray, stride: int = 1) -> np.ndarray:
    """A VALID convolution, in float64."""
    kh, kw = kernel.shape[:2]
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
    windows = windows[:, ::stride, ::stride]  # [n, h, w, cin, kh, kw]
    return np.einsum("nhwcij,ijco->nhwo", windows, kernel.astype(F64))


def conv_same(x: np.ndarray, kernel: np.ndarray, stride: int = 1) -> np.ndarray:
    """A SAME convolution (TensorFlow / flax / timm ``Conv2dSame``)."""
    k = kernel.shape[0]
    return conv(pad(x, same_pads(x.shape[1], k, stride)), kernel, stride)


def max_pool(x: np.ndarray, size: int, stride: int) -> np.ndarray:
    """A VALID max-pool."""
    windows = np.lib.stride_tricks.sliding_window_view(x, (size, size), axis=(1, 2))
    return windows[:, ::stride, ::stride].max(axis=(-2, -1))


def standardize_var(kernel: np.ndarray, eps: float) -> np.ndarray:
    """``(w - mean) / sqrt(var + eps)`` over ``[kh, kw, in]`` (BiT, timm)."""
    w = kernel.astype(F64)
    w = w - w.mean(axis=(0, 1, 2), keepdims=True)
    return w / np.sqrt(np.mean(w**2, axis=(0, 1, 2), keepdims=True) + eps)


def group_norm(x: np.ndarray, gamma, beta, eps: float, groups: int = 32) -> np.ndarray:
    """GroupNorm over (height, width, channels of a group), then the affine."""
    n, h, w, c = x.shape
    g = x.reshape(n, h, w, groups, c // groups)
    mean = g.mean(axis=(1, 2, 4), keepdims=True)
    var = ((g - mean) ** 2).mean(axis=(1, 2, 4), keepdims=True)
    g = (g - mean) / np.sqrt(var + eps)
    return g.reshape(x.shape) * np.reshape(gamma, -1) + np.reshape(beta, -1)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def bit(params: dict[str, np.ndarray], images: np.ndarray, std_eps: float = 1e-10) -> np.ndarray:
    """BiT's logits (``bit_jax/models.py``) from a BiT ``.npz`` (``resnet/...`` keys).

    ``std_eps``: 1e-10 as BiT's own code; timm's ``resnetv2_*_bit`` is the same network
    with 1e-8 (and the same symmetric paddings: ``get_padding`` gives 3 for the 7x7/2
    root and 1 for the 3x3 convolutions).
    """
    p = {k.removeprefix("resnet/"): v for k, v in params.items()}

    def std_conv(x, name, stride=1):
        return conv(x, standardize_var(p[f"{name}/standardized_conv2d/kernel"], std_eps), stride)

    def gn_relu(x, name):
        return relu(
            group_norm(x, p[f"{name}/group_norm/gamma"], p[f"{name}/group_norm/beta"], 1e-5)
        )

    x = std_conv(pad(images.astype(F64), (3, 3)), "root_block", 2)
    x = max_pool(pad(x, (1, 1)), 3, 2)
    stages = sorted({k.split("/")[0] for k in p if k.startswith("block")})
    for i, stage in enumerate(stages):
        units = sorted({k.split("/")[1] for k in p if k.startswith(stage + "/")})
        for j, unit in enumerate(units):
            s, stride = f"{stage}/{unit}", 2 if i > 0 and j == 0 else 1
            y = gn_relu(x, f"{s}/a")
            shortcut = (
                std_conv(y, f"{s}/a/proj", stride)
                if f"{s}/a/proj/standardized_conv2d/kernel" in p
                else x
            )
            y = std_conv(y, f"{s}/a")
            y = std_conv(pad(gn_relu(y, f"{s}/b"), (1, 1)), f"{s}/b", stride)
            x = std_conv(gn_relu(y, f"{s}/c"), f"{s}/c") + shortcut
    x = relu(group_norm(x, p["group_norm/gamma"], p["group_norm/beta"], 1e-5)).mean(axis=(1, 2))
    return x @ p["head/conv2d/kernel"].reshape(x.shape[-1], -1) + p["head/conv2d/bias"]


def _timm_conv(state, name, x, stride=1):
    """timm ``StdConv2dSame(eps=1e-8)``: OIHW weight standardised per output channel."""
    kernel = standardize_var(state[name].transpose(2, 3, 1, 0), 1e-8)
    return conv_same(x, kernel, stride)


def _timm_gn(state, name, x):
    """timm ``GroupNormAct``: ``F.group_norm`` with eps 1e-5."""
    return group_norm(x, state[f"{name}.weight"], state[f"{name}.bias"], 1e-5)


def _layer_norm(x, state, name, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * state[f"{name}.weight"] + state[f"{name}.bias"]


def _linear(x, state, name):
    return x @ state[f"{name}.weight"].astype(F64).T + state[f"{name}.bias"]


def _timm_block(x, state, name, num_heads):
    """timm ``Block``: pre-norm attention and MLP (exact GELU)."""
    n, tokens, dim = x.shape
    qkv = _linear(_layer_norm(x, state, f"{name}.norm1"), state, f"{name}.attn.qkv")
    q, k, v = qkv.reshape(n, tokens, 3, num_heads, dim // num_heads).transpose(2, 0, 3, 1, 4)
    logits = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dim // num_heads)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out = (weights @ v).transpose(0, 2, 1, 3).reshape(n, tokens, dim)
    x = x + _linear(out, state, f"{name}.attn.proj")
    h = _linear(_layer_norm(x, state, f"{name}.norm2"), state, f"{name}.mlp.fc1")
    erf = np.vectorize(math.erf)
    h = 0.5 * h * (1 + erf(h / math.sqrt(2)))
    return x + _linear(h, state, f"{name}.mlp.fc2")


def timm_hybrid(state: dict[str, np.ndarray], images: np.ndarray, num_heads: int) -> np.ndarray:
    """timm's hybrid ViT logits from its state dict (a ResNet of post-activation stages)."""
    b = "patch_embed.backbone."
    x = _timm_conv(state, b + "stem.conv.weight", images.astype(F64), stride=2)
    x = relu(_timm_gn(state, b + "stem.norm", x))
    x = max_pool(pad(x, same_pads(x.shape[1], 3, 2), -np.inf), 3, 2)
    stages = sorted({k.split(".")[3] for k in state if k.startswith(b + "stages.")}, key=int)
    for i in stages:
        blocks = {k.split(".")[5] for k in state if k.startswith(f"{b}stages.{i}.blocks.")}
        for j in sorted(blocks, key=int):
            u, stride = f"{b}stages.{i}.blocks.{j}.", 2 if int(i) > 0 and j == "0" else 1
            shortcut = x
            if u + "downsample.conv.weight" in state:
                shortcut = _timm_conv(state, u + "downsample.conv.weight", x, stride)
                shortcut = _timm_gn(state, u + "downsample.norm", shortcut)
            y = relu(_timm_gn(state, u + "norm1", _timm_conv(state, u + "conv1.weight", x)))
            y = relu(_timm_gn(state, u + "norm2", _timm_conv(state, u + "conv2.weight", y, stride)))
            y = _timm_gn(state, u + "norm3", _timm_conv(state, u + "conv3.weight", y))
            x = relu(y + shortcut)
    kernel = state["patch_embed.proj.weight"].transpose(2, 3, 1, 0)
    x = conv(x, kernel, kernel.shape[0]) + state["patch_embed.proj.bias"]
    x = x.reshape(x.shape[0], -1, x.shape[-1])
    cls = np.broadcast_to(state["cls_token"], (x.shape[0], 1, x.shape[-1]))
    x = np.concatenate([cls, x], axis=1) + state["pos_embed"]
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    for i in range(depth):
        x = _timm_block(x, state, f"blocks.{i}", num_heads)
    return _linear(_layer_norm(x, state, "norm")[:, 0], state, "head")
