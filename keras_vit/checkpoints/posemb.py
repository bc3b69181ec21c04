"""Resampling position embeddings to another grid (prefix tokens kept apart).

The default reproduces the official loader (vision_transformer's checkpoint.py):
``scipy.ndimage.zoom(order=1)`` on the grid, i.e. bilinear with aligned corners,
computed in float64 and returned as float32. ``"bicubic"`` follows PyTorch's
bicubic (a = -0.75, half-pixel centres), the method timm uses for upsampling.

Example:
    >>> import numpy as np
    >>> posemb = np.zeros((1, 1 + 4 * 4, 8), "float32")
    >>> resample_position_embeddings(posemb, (6, 6), num_prefix_tokens=1).shape
    (1, 37, 8)
"""

from __future__ import annotations

import math

import numpy as np
import scipy.ndimage

METHODS = ("bilinear", "bicubic")


def _cubic_matrix(size_in: int, size_out: int, a: float = -0.75) -> np.ndarray:
    """Interpolation matrix [size_out, size_in] of PyTorch's bicubic (align_corners=False)."""
    scale = size_in / size_out
    matrix = np.zeros((size_out, size_in))
    for out in range(size_out):
        src = (out + 0.5) * scale - 0.5
        base = math.floor(src)
        t = src - base
        coeffs = (
            ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
            ((a + 2) * t - (a + 3)) * t * t + 1,
            ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
            ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a,
        )
        for offset, coeff in zip(range(-1, 3), coeffs):
            matrix[out, min(max(base + offset, 0), size_in - 1)] += coeff
    return matrix


def infer_grid(num_tokens: int) -> tuple[int, int]:
    """The square grid of ``num_tokens`` patches, or a ValueError."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(
            f"cannot infer the grid of {num_tokens} position embeddings (not a square); "
            "pass the checkpoint's grid explicitly."
        )
    return side, side


def resample_position_embeddings(
    posemb: np.ndarray,
    new_grid: tuple[int, int],
    num_prefix_tokens: int = 1,
    old_grid: tuple[int, int] | None = None,
    method: str = "bilinear",
) -> np.ndarray:
    """Resamples ``[1, prefix + gh * gw, dim]`` embeddings to ``new_grid``.

    Args:
        posemb: the embeddings, prefix (class) tokens first.
        new_grid: target ``(grid_h, grid_w)``.
        num_prefix_tokens: leading tokens that are copied, not resampled.
        old_grid: the source grid; inferred as a square when None.
        method: ``"bilinear"`` (the official loader) or ``"bicubic"``.

    Returns:
        float32 ``[1, prefix + new_h * new_w, dim]``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown resampling method {method!r}; expected one of {METHODS}.")
    posemb = np.asarray(posemb, np.float32)
    prefix, grid = posemb[:, :num_prefix_tokens], posemb[0, num_prefix_tokens:]
    old_h, old_w = old_grid or infer_grid(grid.shape[0])
    if old_h * old_w != grid.shape[0]:
        raise ValueError(f"grid {old_h}x{old_w} does not hold {grid.shape[0]} embeddings.")
    grid = grid.reshape(old_h, old_w, -1)
    new_h, new_w = new_grid
    if method == "bilinear":
        resized = scipy.ndimage.zoom(grid, (new_h / old_h, new_w / old_w, 1), order=1)
    else:
        rows, cols = _cubic_matrix(old_h, new_h), _cubic_matrix(old_w, new_w)
        resized = np.einsum("Hh,Ww,hwc->HWc", rows, cols, grid.astype(np.float64))
    resized = resized.astype(np.float32).reshape(1, new_h * new_w, -1)
    return np.concatenate([prefix, resized], axis=1)
