"""The Vision Transformer as a Keras functional model.

Layer names follow the official checkpoint scopes (``embedding``, ``cls``,
``Transformer``, ``pre_logits``, ``head``), so ``keras_vit.checkpoints`` maps
checkpoint keys to weights almost one to one.

Example:
    >>> import numpy as np
    >>> from keras_vit.models import ViT
    >>> model = ViT(image_size=32, patch_size=16, hidden_size=64, num_layers=1,
    ...             num_heads=2, mlp_dim=128, num_classes=10)
    >>> model.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0).shape
    (1, 10)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras

from keras_vit.checkpoints import load_weights_file
from keras_vit.layers import (
    ClassToken,
    Encoder,
    HybridRoot,
    PatchEmbedding,
    ResidualUnit,
    ResNetStage,
    TokenPooling,
)
from keras_vit.models.args import check_head, image_hw, resolve_weights
from keras_vit.variants import vit_variant_name

CLASSIFIERS = ("token", "gap")
POOLINGS = (None, "token", "gap", "avg", "max")


def _hybrid_resnet(images, stages: tuple[int, ...], width_factor: int):
    """The ResNet of the official hybrid (scopes ``conv_root``, ``gn_root``, ``block{i}``)."""
    width = int(64 * width_factor)
    x = HybridRoot(width, name="root")(images)
    for i, units in enumerate(stages):
        stride = 1 if i == 0 else 2
        x = ResNetStage(units, width * 2**i, stride, unit=ResidualUnit, name=f"block{i + 1}")(x)
    return x


def _check_grid(height: int, width: int, patch_size: int, resnet_layers) -> None:
    """Checks that the patches (on the hybrid's ResNet features, if any) tile the image."""
    if not isinstance(patch_size, int) or patch_size <= 0:
        raise ValueError(f"patch_size must be a positive int; got {patch_size!r}.")
    stride = 1 if resnet_layers is None else 2 ** (1 + max(len(resnet_layers), 1))
    if height % (stride * patch_size) or width % (stride * patch_size):
        what = (
            "patch size"
            if stride == 1
            else f"effective patch size ({stride}x stem, patch {patch_size})"
        )
        raise ValueError(
            f"image size {height}x{width} is not divisible by the {what} {stride * patch_size}."
        )


def _head(x, classifier, representation_size, num_classes, classifier_activation):
    """The classification top: ``pool``, ``pre_logits`` (Dense+tanh or identity), ``head``."""
    x = TokenPooling(classifier, name="pool")(x)
    if representation_size:
        x = keras.layers.Dense(
            representation_size,
            activation="tanh",
            kernel_initializer="lecun_normal",
            name="pre_logits",
        )(x)
    else:
        x = keras.layers.Identity(name="pre_logits")(x)
    return keras.layers.Dense(
        num_classes, kernel_initializer="zeros", activation=classifier_activation, name="head"
    )(x)


def ViT(
    image_size: int | Sequence[int] = 224,
    patch_size: int = 16,
    hidden_size: int = 768,
    num_layers: int = 12,
    num_heads: int = 12,
    mlp_dim: int = 3072,
    num_classes: int = 1000,
    classifier: str = "token",
    representation_size: int | None = None,
    approximate_gelu: bool = True,
    dropout_rate: float = 0.0,
    attention_dropout_rate: float = 0.0,
    include_top: bool = True,
    weights: str | os.PathLike | None = None,
    pooling: str | None = None,
    classifier_activation: str | None = None,
    resnet_layers: Sequence[int] | None = None,
    resnet_width: int = 1,
    attention_impl: str = "fused",
    attention_block_size: int | None = None,
    name: str = "vit",
) -> keras.Model:
    """Builds a Vision Transformer (Dosovitskiy et al., 2020).

    Args:
        image_size: input size, an int or ``(height, width)``; each must be
            divisible by ``patch_size``.
        patch_size: side of the square patches.
        hidden_size: token width.
        num_layers: number of encoder blocks.
        num_heads: attention heads per block.
        mlp_dim: hidden width of each block's MLP.
        num_classes: size of the ``head``.
        classifier: ``"token"`` (class token) or ``"gap"`` (mean of all tokens
            after the final LayerNorm, as the official code does).
        representation_size: width of the ``pre_logits`` Dense+tanh layer of the
            ImageNet-21k checkpoints; None for none.
        approximate_gelu: the tanh GELU of the official JAX checkpoints (True) or
            the exact erf GELU of timm (False).
        dropout_rate: dropout after the position embeddings, attention and MLP.
        attention_dropout_rate: dropout on the attention weights.
        include_top: whether to end with ``pre_logits`` and ``head``. Without it
            the model returns the encoded tokens ``[batch, tokens, hidden]``, or
            a pooled vector if ``pooling`` is given.
        weights: None, a checkpoint file (official ``.npz``, timm ``.npz`` or
            ``.safetensors``, Keras ``.weights.h5``), or a named official
            checkpoint of the variant (see ``keras_vit.models.weights``).
        pooling: with ``include_top=False``: ``"token"``, ``"gap"``/``"avg"``
            or ``"max"``.
        classifier_activation: activation of the head; None returns logits, as
            the official code does.
        resnet_layers: None for a plain ViT; for the hybrid, the units of each
            stage of the ResNet stem (``(3, 4, 9)`` for R50+ViT-B/16; ``()`` is the
            root alone: conv, GroupNorm, max-pool). ``patch_size`` then applies
            to the stem's feature map. The stem's layers are ``root``
            (``HybridRoot``) and ``block1``, ``block2``, ...
        resnet_width: width multiplier of the stem.
        attention_impl: ``"fused"`` (default): in inference the whole encoder and
            the patch embedding run as XLA-compiled kernels of
            ``keras_vit.kernels``; ``"reference"`` (and every training step):
            the same computation layer by layer.
        attention_block_size: with the fused kernels, attention over sequences
            longer than this many tokens is computed blockwise (online softmax),
            saving memory at high resolution.
        name: model name.

    Returns:
        A ``keras.Model`` taking float images in [-1, 1] (see
        ``keras_vit.preprocess_input``), shaped ``[batch, height, width, 3]``.
        ``model.get_layer("Transformer").output`` gives the encoded tokens and
        ``model.get_layer("pre_logits").output`` the features before the head.

    Raises:
        ValueError: for an inconsistent configuration or unknown ``weights``.
    """
    height, width = image_hw(image_size)
    _check_grid(height, width, patch_size, resnet_layers)
    if classifier not in CLASSIFIERS:
        raise ValueError(f"classifier must be one of {CLASSIFIERS}; got {classifier!r}.")
    check_head(include_top, num_classes, pooling, POOLINGS)
    if pooling == "token" and classifier != "token":
        raise ValueError('pooling="token" needs classifier="token" (a model with a class token).')
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}.")
    variant = vit_variant_name(
        dict(
            hidden_size=hidden_size,
            num_layers=num_layers,
            mlp_dim=mlp_dim,
            num_heads=num_heads,
            patch_size=patch_size,
            resnet_layers=resnet_layers,
            resnet_width=resnet_width,
        )
    )
    weights_path = resolve_weights(weights, variant)

    images = keras.Input(shape=(height, width, 3), name="images")
    x = (
        images
        if resnet_layers is None
        else _hybrid_resnet(images, tuple(resnet_layers), resnet_width)
    )
    grid_h, grid_w = x.shape[1] // patch_size, x.shape[2] // patch_size
    x = PatchEmbedding(hidden_size, patch_size, attention_impl, name="embedding")(x)
    x = keras.layers.Reshape((grid_h * grid_w, hidden_size), name="patches")(x)
    if classifier == "token":
        x = ClassToken(name="cls")(x)
    x = Encoder(
        num_layers=num_layers,
        mlp_dim=mlp_dim,
        num_heads=num_heads,
        dropout_rate=dropout_rate,
        attention_dropout_rate=attention_dropout_rate,
        approximate_gelu=approximate_gelu,
        attention_impl=attention_impl,
        attention_block_size=attention_block_size,
        name="Transformer",
    )(x)
    if include_top:
        x = _head(x, classifier, representation_size, num_classes, classifier_activation)
    elif pooling is not None:
        x = TokenPooling("gap" if pooling == "avg" else pooling, name="pool")(x)
    model = keras.Model(images, x, name=name)

    if weights_path is not None:
        load_weights_file(model, weights_path)
    return model
