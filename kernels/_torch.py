"""The PyTorch kernels: attention through ``torch.nn.functional.scaled_dot_product_attention``.

The same numbers as the other backends' kernels (query scaled before the
logits, softmax and LayerNorm statistics in float32 for the plain path). Eager
functions: ``torch.compile`` is the caller's choice for the whole model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812 (PyTorch's own convention)
from keras import ops

_F32 = torch.float32


def _tensor(x):
    return None if x is None else ops.convert_to_tensor(x)


def _scaled(query):
    # The official code scales the query (flax); the logits' rounding follows.
    return query * (1.0 / math.sqrt(query.shape[-1]))


def dropout(x, rate: float, seed):
    """Inverted dropout whose mask is drawn from a generator seeded by ``seed`` (int32 ``[2]``)."""
    if rate == 0.0:
        return x
    first, second = (int(s) for s in torch.as_tensor(seed).reshape(-1)[:2])
    generator = torch.Generator(x.device).manual_seed(first * 2**31 + second)
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= rate
    return torch.where(keep, x / (1.0 - rate), torch.zeros_like(x))


def dense_attention(query, key, value, mask, dropout_rate, seed):
    """The plain path: ``(output, float32 weights before dropout)``."""
    logits = torch.einsum("bqhd,bkhd->bhqk", _scaled(query), key).to(_F32)
    if mask is not None:
        logits = logits.masked_fill(~mask, -1e30)
    weights = torch.softmax(logits, dim=-1)
    dropped = dropout(weights, dropout_rate, seed)
    return torch.einsum("bhqk,bkhd->bqhd", dropped.to(value.dtype), value), weights


def blockwise_attention(query, key, value, block_size: int):
    """Online softmax over key blocks, in float32."""
    query = _scaled(query.to(_F32))
    batch, _, heads, _ = key.shape
    stats = (batch, heads, query.shape[1])
    running_max = torch.full(stats, -1e30, dtype=_F32, device=query.device)
    running_sum = torch.zeros(stats, dtype=_F32, device=query.device)
    accumulator = torch.zeros((*stats, value.shape[-1]), dtype=_F32, device=query.device)
    for start in range(0, key.shape[1], block_size):
        k = key[:, start : start + block_size].to(_F32)
        v = value[:, start : start + block_size].to(_F32)
        logits = torch.einsum("bqhd,bkhd->bhqk", query, k)
        new_max = torch.maximum(running_max, logits.amax(dim=-1))
        probs = torch.exp(logits - new_max[..., None])
        correction = torch.exp(running_max - new_max)
        running_sum = running_sum * correction + probs.sum(dim=-1)
        accumulator = accumulator * correction[..., None] + torch.einsum(
            "bhqk,bkhd->bhqd", probs, v
        )
        running_max = new_max
    return (accumulator / running_sum[..., None]).permute(0, 2, 1, 3).to(value.dtype)


def attention(query, key, value, mask, dropout_rate, seed, block_size, return_weights):
    """``keras_vit.kernels.fused_attention`` on PyTorch: ``(output, weights or None)``."""
    query, key, value, mask = (_tensor(t) for t in (query, key, value, mask))
    if block_size:
        return blockwise_attention(query, key, value, block_size), None
    # On a CPU, half-precision SDPA is less accurate than the plain path (its
    # gradients measured 1.6x the reference's error in bfloat16): SDPA on GPUs only.
    half_on_cpu = query.dtype in (torch.bfloat16, torch.float16) and query.device.type == "cpu"
    if dropout_rate or return_weights or half_on_cpu:
        return dense_attention(query, key, value, mask, dropout_rate, seed)
    q, k, v = (t.transpose(1, 2) for t in (_scaled(query), key, value))
    output = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
    return output.transpose(1, 2), None


def _layer_norm(x, scale, bias, eps):
    normed = F.layer_norm(x.to(_F32), x.shape[-1:], scale.to(_F32), bias.to(_F32), eps)
    return normed.to(x.dtype)


def _dense(x, kernel, bias, spec):
    # The bias add (and what follows until the next matmul) in float32, rounded once.
    return torch.einsum(spec, x, kernel).to(_F32) + bias.to(_F32)


def _block_body(x, p, options, dropout_rate, seed):
    """One block; ``options`` is ``(approximate_gelu, eps, attention_dropout_rate, block_size)``."""
    approximate_gelu, eps, attention_dropout_rate, block_size = options
    dtype = x.dtype
    h = _layer_norm(x, p["ln0_scale"], p["ln0_bias"], eps)
    q, k, v = (
        _dense(h, p[f"{n}_kernel"], p[f"{n}_bias"], "btd,dnh->btnh").to(dtype) for n in "qkv"
    )
    context, _ = attention(q, k, v, None, attention_dropout_rate, seed + 1, block_size, False)
    y = _dense(context, p["out_kernel"], p["out_bias"], "btnh,nhd->btd")
    x = (x + dropout(y, dropout_rate, seed + 2)).to(dtype)
    h = _layer_norm(x, p["ln2_scale"], p["ln2_bias"], eps)
    h = _dense(h, p["mlp0_kernel"], p["mlp0_bias"], "btd,dm->btm")
    h = F.gelu(h, approximate="tanh" if approximate_gelu else "none").to(dtype)
    h = _dense(dropout(h, dropout_rate, seed + 3), p["mlp1_kernel"], p["mlp1_bias"], "btm,md->btd")
    return (x + dropout(h, dropout_rate, seed + 4)).to(dtype)


def _seed(seed):
    return torch.zeros(2, dtype=torch.int64) if seed is None else torch.as_tensor(seed).long()


def encoder_block(x, params, options, dropout_rate, seed):
    """``keras_vit.kernels.encoder_block`` on PyTorch."""
    params = {name: _tensor(value) for name, value in params.items()}
    return _block_body(_tensor(x), params, options, dropout_rate, _seed(seed))


def encoder(x, pos_embedding, blocks, norm_scale, norm_bias, options, dropout_rate, seed):
    """``keras_vit.kernels.encoder`` on PyTorch."""
    seed = _seed(seed)
    x = dropout(_tensor(x) + _tensor(pos_embedding), dropout_rate, seed + 5)
    for i, params in enumerate(blocks):
        params = {name: _tensor(value) for name, value in params.items()}
        x = _block_body(x, params, options, dropout_rate, seed + 7 * (i + 1))
    return _layer_norm(x, _tensor(norm_scale), _tensor(norm_bias), options[1])


def patch_embed(images, kernel, bias, cls_token, pos_embedding):
    """``keras_vit.kernels.patch_embed`` on PyTorch: reshape + one matmul."""
    images, kernel, bias = _tensor(images), _tensor(kernel), _tensor(bias)
    p, _, channels, hidden = kernel.shape
    batch, height, width, _ = images.shape
    grid_h, grid_w = height // p, width // p
    x = images.reshape(batch, grid_h, p, grid_w, p, channels).permute(0, 1, 3, 2, 4, 5)
    x = x.reshape(batch, grid_h * grid_w, p * p * channels)
    x = x @ kernel.reshape(p * p * channels, hidden) + bias
    if cls_token is not None:
        x = torch.cat([_tensor(cls_token).expand(batch, 1, hidden), x], dim=1)
    return x if pos_embedding is None else x + _tensor(pos_embedding)
