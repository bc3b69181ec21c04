"""PNG figures of the analyses (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _to_unit(image: np.ndarray) -> np.ndarray:
    return np.clip((np.asarray(image, np.float64) + 1.0) / 2.0, 0.0, 1.0)


def _upsample(grid_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    rows = np.minimum((np.arange(size[0]) * grid_map.shape[0]) // size[0], grid_map.shape[0] - 1)
    cols = np.minimum((np.arange(size[1]) * grid_map.shape[1]) // size[1], grid_map.shape[1] - 1)
    return grid_map[rows][:, cols]


def plot_rollout(
    images: np.ndarray, maps: np.ndarray, path: str, titles: Sequence[str] | None = None
) -> None:
    """Each image beside its attention-rollout map laid over it.

    Args:
        images: ``[n, h, w, 3]`` in [-1, 1].
        maps: ``[n, grid_h, grid_w]`` rollout maps.
        path: the PNG file to write.
        titles: one title per image (``"image"`` when None).
    """
    fig, axes = plt.subplots(len(images), 2, figsize=(6, 3 * len(images)), squeeze=False)
    for row, (image, grid_map) in enumerate(zip(images, maps)):
        mask = _upsample(grid_map / max(grid_map.max(), 1e-12), image.shape[:2])
        axes[row, 0].imshow(_to_unit(image))
        axes[row, 0].set_title(titles[row] if titles else "image")
        axes[row, 1].imshow(_to_unit(image) * mask[..., None])
        axes[row, 1].set_title("attention rollout")
        for ax in axes[row]:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_mean_distance(distances: np.ndarray, path: str) -> None:
    """Mean attention distance: layer on x, distance on y, a dot per head.

    Args:
        distances: ``[layers, heads]`` pixels.
        path: the PNG file to write.
    """
    distances = np.asarray(distances)
    fig, ax = plt.subplots(figsize=(5, 4))
    for head in range(distances.shape[1]):
        ax.scatter(np.arange(distances.shape[0]), distances[:, head], s=12, label=f"head {head}")
    ax.set_xticks(np.arange(distances.shape[0]))
    ax.set_xlabel("network depth (layer)")
    ax.set_ylabel("mean attention distance (pixels)")
    if distances.shape[1] <= 16:
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_position_similarity(similarity: np.ndarray, path: str) -> None:
    """The grid of small maps: position (i, j)'s cosine similarity to every position.

    Args:
        similarity: ``[grid_h, grid_w, grid_h, grid_w]``.
        path: the PNG file to write.
    """
    grid_h, grid_w = similarity.shape[:2]
    fig, axes = plt.subplots(grid_h, grid_w, figsize=(grid_w, grid_h), squeeze=False)
    for i in range(grid_h):
        for j in range(grid_w):
            axes[i, j].imshow(similarity[i, j], vmin=-1, vmax=1, cmap="viridis")
            axes[i, j].axis("off")
    fig.suptitle("position embedding similarity")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_filters(components: np.ndarray, path: str) -> None:
    """Principal components of the RGB filters, each scaled to [0, 1].

    Args:
        components: ``[k, kh, kw, 3]``.
        path: the PNG file to write.
    """
    count = len(components)
    cols = min(7, count)
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols, rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, component in zip(axes.ravel(), components):
        low, high = component.min(), component.max()
        ax.imshow((component - low) / max(high - low, 1e-12))
    fig.suptitle("embedding filters (principal components)")
    fig.savefig(path, dpi=100)
    plt.close(fig)
