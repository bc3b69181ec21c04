"""Matching canonical checkpoint parameters to a model's weights, all or nothing."""

from __future__ import annotations

import logging
import re

import keras
import numpy as np

from keras_vit.checkpoints.mismatch import CheckpointMismatchError
from keras_vit.checkpoints.posemb import resample_position_embeddings

logger = logging.getLogger("keras_vit")

POSEMB_KEY = "Transformer/posembed_input/pos_embedding"
_HEAD_KEYS = ("head/kernel", "head/bias", "head_dist/kernel", "head_dist/bias")
_PRE_LOGITS_KEYS = ("pre_logits/kernel", "pre_logits/bias")
_POOL_SCOPES = ("MAPHead_0/", "fc_norm/")

# Keras variable paths -> checkpoint keys. Layers carry the checkpoint scopes, so
# only Keras's own variable names differ.
_PATH_TO_KEY = (
    (re.compile(r"/gamma$"), "/scale"),
    (re.compile(r"/beta$"), "/bias"),
    (re.compile(r"^(cls|dist|reg)/\1$"), r"\1"),  # class, distillation, register tokens
    (re.compile(r"^root/"), ""),  # the hybrid's root layer; the official root has no scope
)


def checkpoint_key(path: str) -> str:
    """The checkpoint key of a Keras variable path (``.../gamma`` -> ``.../scale``)."""
    for pattern, replacement in _PATH_TO_KEY:
        path = pattern.sub(replacement, path)
    return path


def model_params(model: keras.Model) -> dict[str, keras.Variable]:
    """The model's weights by checkpoint key."""
    params = {}
    for variable in model.weights:
        key = checkpoint_key(variable.path)
        if key in params:
            raise ValueError(f"two weights of the model map to the checkpoint key {key!r}")
        params[key] = variable
    return params


def model_grid(model: keras.Model) -> tuple[int, int]:
    """The patch grid of a ViT model (from its ``embedding`` layer)."""
    return tuple(model.get_layer("embedding").output.shape[1:3])


def _head_keys_to_skip(targets, params) -> tuple[set[str], str | None]:
    """Checkpoint keys left out for fine-tuning or a headless model, and why."""
    ckpt_head = set(_HEAD_KEYS + _PRE_LOGITS_KEYS) & params.keys()
    if "head/kernel" not in targets:
        # The pooling layers too (MAP head, fc_norm), unless the model pools with them.
        pooling = {key for key in params.keys() - targets.keys() if key.startswith(_POOL_SCOPES)}
        return ckpt_head | pooling, "the model has no head (include_top=False)"
    if "pre_logits/kernel" in params and "pre_logits/kernel" not in targets:
        return ckpt_head, "the model has no representation (pre_logits) layer"
    if "head/kernel" in params and params["head/kernel"].shape != tuple(
        targets["head/kernel"].shape
    ):
        return set(_HEAD_KEYS) & params.keys(), (
            f"the model has {targets['head/kernel'].shape[-1]} classes, "
            f"the checkpoint {params['head/kernel'].shape[-1]}"
        )
    return set(), None


def assign_params(
    model: keras.Model,
    params: dict[str, np.ndarray],
    source: str,
    posemb_method: str = "bilinear",
    source_grid: tuple[int, int] | None = None,
) -> None:
    """Assigns canonical ``params`` to ``model``; checks everything before assigning anything.

    Args:
        model: the model to load.
        params: canonical checkpoint parameters.
        source: the file name, for messages.
        posemb_method: how position embeddings are resampled to another grid.
        source_grid: the checkpoint's patch grid, if not square.

    Raises:
        CheckpointMismatchError: (a ``CheckpointError``) on missing, extra or mis-shaped
            keys, with a short summary and the full lists; the model is unchanged.
    """
    targets = model_params(model)
    skipped, reason = _head_keys_to_skip(targets, params)
    missing, mismatched, plan = [], [], []
    for key, variable in targets.items():
        if key in skipped:
            continue  # the head stays as initialised (fine-tuning)
        if key not in params:
            missing.append(key)
            continue
        value = np.asarray(params[key])
        shape = tuple(variable.shape)
        if (
            key == POSEMB_KEY
            and value.shape != shape
            and value.ndim == 3
            and value.shape[-1] == shape[-1]
        ):
            grid_h, grid_w = model_grid(model)
            num_prefix = shape[1] - grid_h * grid_w  # embedded prefix tokens, any count
            value = resample_position_embeddings(
                value, model_grid(model), num_prefix, source_grid, posemb_method
            )
            logger.warning(
                "%s: position embeddings resampled from %s to %s", source, params[key].shape, shape
            )
        if value.shape != shape:
            mismatched.append(f"{key}: checkpoint {value.shape}, model {shape}")
            continue
        plan.append((variable, value))
    extra = sorted(params.keys() - targets.keys() - skipped)
    if missing or extra or mismatched:
        shapes = {key: tuple(variable.shape) for key, variable in targets.items()}
        found = {key: np.shape(value) for key, value in params.items()}
        raise CheckpointMismatchError(source, model.name, found, shapes, missing, extra, mismatched)
    for variable, value in plan:
        variable.assign(value.astype(variable.dtype))
    if reason is not None:
        logger.warning(
            "%s: loaded all but the head, which stays as initialised: %s", source, reason
        )
