"""Mean attention distance per head (the paper's Figure 7 right and Figure 11).

Example:
    >>> import numpy as np
    >>> from keras_vit.analysis import mean_attention_distance
    >>> self_only = np.eye(4, dtype="float32")[None, None]
    >>> mean_attention_distance(self_only, patch_size=16, num_prefix_tokens=0).tolist()
    [0.0]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from keras_vit.checkpoints.posemb import infer_grid


def patch_distances(grid: tuple[int, int], patch_size: int) -> np.ndarray:
    """Pixel distance between the centres of every pair of patches.

    Args:
        grid: ``(grid_h, grid_w)``.
        patch_size: patch side in pixels.

    Returns:
        float64 ``[n, n]`` with ``n = grid_h * grid_w``, patches in row-major order.
    """
    rows, cols = np.meshgrid(np.arange(grid[0]), np.arange(grid[1]), indexing="ij")
    coords = np.stack([rows.ravel(), cols.ravel()], axis=-1).astype(np.float64) * patch_size
    return np.linalg.norm(coords[:, None] - coords[None], axis=-1)


def mean_attention_distance(
    attention: npt.ArrayLike,
    patch_size: int,
    num_prefix_tokens: int = 1,
    grid: tuple[int, int] | None = None,
) -> np.ndarray:
    """Average query-key pixel distance weighted by attention, one value per head.

    Prefix (class) tokens are left out as queries and keys, and each query's
    weights over the patches are renormalised to sum to one.

    Args:
        attention: one layer's ``[batch, heads, tokens, tokens]`` weights.
        patch_size: patch side in pixels (of the input image).
        num_prefix_tokens: leading tokens that are not patches.
        grid: the patch grid; square when None.

    Returns:
        float64 ``[heads]`` distances in pixels, averaged over queries and batch.

    Raises:
        ValueError: for weights that are not ``[batch, heads, tokens, tokens]`` or
            a grid that does not hold the patch tokens.
    """
    attention = np.asarray(attention, np.float64)
    if attention.ndim != 4 or attention.shape[-1] != attention.shape[-2]:
        raise ValueError(f"attention must be [batch, heads, tokens, tokens]; got {attention.shape}")
    patches = attention[:, :, num_prefix_tokens:, num_prefix_tokens:]
    count = patches.shape[-1]
    grid = grid or infer_grid(count)
    if grid[0] * grid[1] != count:
        raise ValueError(f"grid {grid} does not hold {count} patch tokens")
    patches = patches / patches.sum(axis=-1, keepdims=True)
    distances = np.einsum("bhqk,qk->bhq", patches, patch_distances(grid, patch_size))
    return distances.mean(axis=(0, 2))
