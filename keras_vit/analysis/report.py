"""``keras-vit analyze``: every analysis of a model on a set of images, as PNG and JSON/CSV."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence

import keras
import numpy as np

from keras_vit.analysis import plots
from keras_vit.analysis.attention import (
    attention_rollout,
    attention_weights,
    model_patch_grid,
    num_prefix_tokens,
)
from keras_vit.analysis.distance import mean_attention_distance
from keras_vit.analysis.embeddings import embedding_filters, position_embedding_similarity


def _effective_patch(model: keras.Model, grid: tuple[int, int]) -> int:
    return model.input_shape[1] // grid[0]


def analyze(
    model: keras.Model, images: np.ndarray, out_dir: str, names: Sequence[str] | None = None
) -> dict:
    """Writes the four analyses of ``model`` on ``images`` into ``out_dir``.

    Files: ``attention_rollout.png``, ``mean_attention_distance.png`` and
    ``.csv``, ``position_embedding_similarity.png``, ``embedding_filters.png``
    and ``summary.json`` with the numbers behind every figure.

    Args:
        model: a ViT or hybrid model.
        images: ``[n, h, w, 3]`` in [-1, 1] at the model's input size.
        out_dir: the folder, created once every analysis has succeeded.
        names: one name per image for titles and the summary (indices when None).

    Returns:
        The summary that was written to ``summary.json``.

    Raises:
        ValueError: for a model without attention layers or images of the wrong
            shape; nothing is written then.
    """
    grid = model_patch_grid(model)
    prefix = num_prefix_tokens(model)
    attentions = attention_weights(model, images)
    rollout = attention_rollout(attentions, prefix, grid)
    patch = _effective_patch(model, grid)
    distances = np.stack([mean_attention_distance(a, patch, prefix, grid) for a in attentions])
    similarity = position_embedding_similarity(model)
    components, explained = embedding_filters(model)
    os.makedirs(out_dir, exist_ok=True)  # only once every analysis has succeeded

    plots.plot_rollout(images, rollout, os.path.join(out_dir, "attention_rollout.png"), names)
    plots.plot_mean_distance(distances, os.path.join(out_dir, "mean_attention_distance.png"))
    plots.plot_position_similarity(
        similarity, os.path.join(out_dir, "position_embedding_similarity.png")
    )
    plots.plot_filters(components, os.path.join(out_dir, "embedding_filters.png"))
    with open(os.path.join(out_dir, "mean_attention_distance.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["layer", "head", "distance_px"])
        for layer, row in enumerate(distances):
            writer.writerows([layer, head, f"{d:.4f}"] for head, d in enumerate(row))
    summary = {
        "grid": list(grid),
        "effective_patch_size": patch,
        "images": list(names) if names else list(range(len(images))),
        "attention_rollout": rollout.tolist(),
        "mean_attention_distance": distances.tolist(),
        "position_embedding_similarity": similarity.tolist(),
        "embedding_filters_explained_variance": explained.tolist(),
    }
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f)
    return summary
