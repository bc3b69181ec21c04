"""Position-embedding similarity (Figure 7 centre) and embedding filters (Figure 7 left).

Example:
    >>> import numpy as np
    >>> from keras_vit.analysis import principal_filters
    >>> kernel = np.random.default_rng(0).normal(size=(4, 4, 3, 32))
    >>> components, explained = principal_filters(kernel, num_components=5)
    >>> components.shape, explained.shape
    ((5, 4, 4, 3), (5,))
"""

from __future__ import annotations

import keras
import numpy as np
import numpy.typing as npt

from keras_vit.analysis.attention import encoder_of, model_patch_grid
from keras_vit.checkpoints.assign import model_params
from keras_vit.layers import sincos2d


def cosine_similarity_grid(embeddings: npt.ArrayLike, grid: tuple[int, int]) -> np.ndarray:
    """Cosine similarity of every position's embedding with every other.

    Args:
        embeddings: ``[grid_h * grid_w, dim]`` (no prefix tokens).
        grid: ``(grid_h, grid_w)``.

    Returns:
        ``[grid_h, grid_w, grid_h, grid_w]``.
    """
    embeddings = np.asarray(embeddings, np.float64)
    unit = embeddings / np.linalg.norm(embeddings, axis=-1, keepdims=True)
    return (unit @ unit.T).reshape(grid[0], grid[1], grid[0], grid[1])


def position_embedding_similarity(model: keras.Model) -> np.ndarray:
    """Cosine similarity between the model's position embeddings (of the patches).

    Learned embeddings, or the computed ``sincos2d`` ones of a big_vision model.

    Args:
        model: a ViT or hybrid model.

    Returns:
        ``[grid_h, grid_w, grid_h, grid_w]``: entry ``[i, j]`` is the map of
        position (i, j)'s similarity to every position.
    """
    encoder = encoder_of(model)
    grid = model_patch_grid(model)
    if encoder.posembed_input is None:
        width = encoder.input.shape[-1]
        return cosine_similarity_grid(sincos2d(*grid, width), grid)
    posemb = np.asarray(encoder.posembed_input.pos_embedding)[0]
    return cosine_similarity_grid(posemb[posemb.shape[0] - grid[0] * grid[1] :], grid)


def principal_filters(
    kernel: npt.ArrayLike, num_components: int = 28
) -> tuple[np.ndarray, np.ndarray]:
    """Top principal components of a convolution kernel's filters.

    Args:
        kernel: ``[kh, kw, in, out]``; each of the ``out`` filters is a sample.
        num_components: how many components to return.

    Returns:
        ``(components [k, kh, kw, in], explained variance ratio [k])``, largest
        first; each component has unit norm (its sign is arbitrary).
    """
    kernel = np.asarray(kernel, np.float64)
    kh, kw, channels, count = kernel.shape
    samples = kernel.reshape(-1, count).T
    samples = samples - samples.mean(axis=0)
    _, singular, components = np.linalg.svd(samples, full_matrices=False)
    k = min(num_components, components.shape[0])
    variance = singular**2
    return components[:k].reshape(k, kh, kw, channels), variance[:k] / variance.sum()


def embedding_filters(
    model: keras.Model, num_components: int = 28
) -> tuple[np.ndarray, np.ndarray]:
    """Principal components of the model's first RGB filters.

    The patch embedding of a ViT; the root convolution (``conv_root``) of a
    hybrid, whose patch embedding sees ResNet features rather than pixels.

    Args:
        model: a ViT, hybrid or BiT model.
        num_components: how many components to return.

    Returns:
        ``(components, explained variance ratio)`` as ``principal_filters``.

    Raises:
        ValueError: for a model with neither weight.
    """
    params = model_params(model)
    kernel = params.get("conv_root/kernel", params.get("embedding/kernel"))
    if kernel is None:
        raise ValueError(f"model {model.name!r} has no patch embedding or root convolution")
    return principal_filters(np.asarray(kernel), num_components)
