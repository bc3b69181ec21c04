"""The paper's analyses (section 4.5) as functions and figures.

- ``attention_weights(model, images)``: per-layer ``[batch, heads, tokens, tokens]``.
- ``attention_rollout(attentions, num_prefix_tokens=1)``: ``[batch, grid_h, grid_w]``.
- ``num_prefix_tokens(model)``: class, distillation and register tokens (0 for gap / MAP).
- ``mean_attention_distance(attention, patch_size, num_prefix_tokens=1)``: ``[heads]`` pixels.
- ``position_embedding_similarity(model)``: ``[grid_h, grid_w, grid_h, grid_w]``.
- ``embedding_filters(model)`` / ``principal_filters(kernel)``: PCA of the RGB filters.
- ``analyze(model, images, out_dir)``: all of them as PNG, CSV and JSON.

Example:
    >>> import numpy as np
    >>> from keras_vit import analysis
    >>> from keras_vit.models import create_model
    >>> model = create_model("ViT-Mu/16", image_size=32, num_classes=10)
    >>> maps = analysis.attention_weights(model, np.zeros((1, 32, 32, 3), "float32"))
    >>> [m.shape for m in maps]
    [(1, 2, 5, 5), (1, 2, 5, 5)]
"""

from keras_vit.analysis.attention import (
    attention_rollout,
    attention_weights,
    num_prefix_tokens,
    rollout_matrix,
)
from keras_vit.analysis.distance import mean_attention_distance, patch_distances
from keras_vit.analysis.embeddings import (
    cosine_similarity_grid,
    embedding_filters,
    position_embedding_similarity,
    principal_filters,
)
from keras_vit.analysis.report import analyze

__all__ = [
    "analyze",
    "attention_rollout",
    "attention_weights",
    "cosine_similarity_grid",
    "embedding_filters",
    "mean_attention_distance",
    "num_prefix_tokens",
    "patch_distances",
    "position_embedding_similarity",
    "principal_filters",
    "rollout_matrix",
]
