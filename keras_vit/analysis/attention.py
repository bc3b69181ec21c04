"""Attention weights of a ViT and their rollout (Abnar & Zuidema, 2020; the paper's Figure 6).

Example:
    >>> import numpy as np
    >>> from keras_vit.analysis import attention_rollout
    >>> identity = [np.eye(5, dtype="float32")[None, None]] * 3
    >>> attention_rollout(identity, num_prefix_tokens=1).shape
    (1, 2, 2)
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import numpy.typing as npt
from keras import ops

from keras_vit.checkpoints.assign import model_grid
from keras_vit.checkpoints.posemb import infer_grid
from keras_vit.kernels import attention_weights as attention_probabilities
from keras_vit.layers import Encoder


def encoder_of(model: keras.Model) -> Encoder:
    """The encoder of a model with attention.

    Args:
        model: a keras_vit model.

    Returns:
        Its ``Transformer`` layer.

    Raises:
        ValueError: for a model without attention layers (BiT).
    """
    try:
        return model.get_layer("Transformer")
    except ValueError:
        raise ValueError(
            f"model {model.name!r} has no attention layers (no 'Transformer' encoder): "
            "the attention analyses need a ViT or hybrid model"
        ) from None


def _check_images(model: keras.Model, images: npt.ArrayLike) -> np.ndarray:
    images = np.asarray(images, np.float32)
    expected = tuple(model.input_shape[1:])
    if images.ndim != 4 or images.shape[1:] != expected:
        raise ValueError(
            f"images must be [batch, {', '.join(map(str, expected))}] for model {model.name!r}; "
            f"got shape {images.shape}"
        )
    return images


def attention_weights(model: keras.Model, images: npt.ArrayLike) -> list[np.ndarray]:
    """The attention weights of every encoder block.

    Args:
        model: a keras_vit ViT or hybrid model.
        images: float images in [-1, 1] at the model's input size.

    Returns:
        One float32 array per block, ``[batch, heads, tokens, tokens]``, the
        prefix tokens (class, distillation, registers) first where the model
        has them (``num_prefix_tokens``).

    Raises:
        ValueError: for a model without attention layers or images of the wrong shape.
    """
    encoder = encoder_of(model)
    images = _check_images(model, images)
    tokens = keras.Model(model.input, encoder.input)(images)
    x = encoder.embed(tokens)
    result = []
    for block in encoder.blocks:
        normed = block.norm_0(x)
        attention = block.attention
        weights = attention_probabilities(attention.query(normed), attention.key(normed))
        result.append(np.asarray(ops.convert_to_numpy(weights), np.float32))
        x = block(x)
    return result


def rollout_matrix(attentions: Sequence[npt.ArrayLike]) -> np.ndarray:
    """Head-averaged attention plus identity, rows renormalised, multiplied through the layers.

    Args:
        attentions: per-layer ``[batch, heads, tokens, tokens]`` weights, first layer first.

    Returns:
        float64 ``[batch, tokens, tokens]``: how much each token draws on each input token.

    Raises:
        ValueError: for an empty ``attentions``.
    """
    rollout = None
    for attention in attentions:
        mixed = np.asarray(attention, np.float64).mean(axis=1)
        mixed = mixed + np.eye(mixed.shape[-1])
        mixed /= mixed.sum(axis=-1, keepdims=True)
        rollout = mixed if rollout is None else mixed @ rollout
    if rollout is None:
        raise ValueError("attention_rollout needs at least one layer's attention")
    return rollout


def attention_rollout(
    attentions: Sequence[npt.ArrayLike],
    num_prefix_tokens: int = 1,
    grid: tuple[int, int] | None = None,
) -> np.ndarray:
    """The rolled-out attention of the class token (or the mean token) over the patches.

    Args:
        attentions: per-layer ``[batch, heads, tokens, tokens]`` weights.
        num_prefix_tokens: the tokens before the patches (``num_prefix_tokens(model)``):
            with any, the first one's row is taken (the class token; DeiT's
            distillation token and registers follow it); with none (gap and MAP
            models), the mean of all rows.
        grid: the patch grid; a square grid is assumed when None.

    Returns:
        float32 ``[batch, grid_h, grid_w]``.
    """
    rollout = rollout_matrix(attentions)
    rows = rollout[:, 0] if num_prefix_tokens else rollout.mean(axis=1)
    patches = rows[:, num_prefix_tokens:]
    grid_h, grid_w = grid or infer_grid(patches.shape[-1])
    return patches.reshape(-1, grid_h, grid_w).astype(np.float32)


def num_prefix_tokens(model: keras.Model) -> int:
    """How many tokens precede the patches in the encoder: class, distillation, registers.

    Args:
        model: a keras_vit model with attention.

    Returns:
        The encoder's tokens less the patches (0 for gap and MAP models).

    Raises:
        ValueError: for a model without attention layers.

    Example:
        >>> from keras_vit.models import ViT
        >>> model = ViT(image_size=32, patch_size=16, hidden_size=8, num_layers=1, num_heads=2,
        ...             mlp_dim=8, num_classes=2, distilled=True, num_register_tokens=4)
        >>> num_prefix_tokens(model)
        6
    """
    grid_h, grid_w = model_patch_grid(model)
    return int(encoder_of(model).input.shape[1]) - grid_h * grid_w


def model_patch_grid(model: keras.Model) -> tuple[int, int]:
    """The patch grid of a ViT or hybrid model.

    Args:
        model: a keras_vit model with attention.

    Returns:
        ``(grid_h, grid_w)``.

    Raises:
        ValueError: for a model without attention layers.
    """
    encoder_of(model)
    return model_grid(model)
