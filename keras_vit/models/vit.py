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
    Encoder,
    HybridRoot,
    PatchEmbedding,
    ResidualUnit,
    ResNetStage,
    SinCos2DPositionEmbedding,
)
from keras_vit.models.args import check_head, image_hw, resolve_weights
from keras_vit.models.vit_top import (
    CLASSIFIERS,
    add_prefix_tokens,
    attach_top,
    check_top,
)
from keras_vit.numerics import LAYER_NORM_EPSILON
from keras_vit.variants import vit_variant_name

__all__ = ["CLASSIFIERS", "POOLINGS", "ViT"]
POOLINGS = (None, "token", "gap", "avg", "max", "map")


def _hybrid_resnet(images, stages: tuple[int, ...], width_factor: int, numerics: str):
    """The ResNet of the official hybrid (scopes ``conv_root``, ``gn_root``, ``block{i}``)."""
    width = int(64 * width_factor)
    x = HybridRoot(width, numerics=numerics, name="root")(images)
    for i, units in enumerate(stages):
        stride = 1 if i == 0 else 2
        x = ResNetStage(
            units, width * 2**i, stride, unit=ResidualUnit, numerics=numerics, name=f"block{i + 1}"
        )(x)
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


def _tokens(x, hidden_size: int, patch_size: int, attention_impl: str, posemb: str):
    """Patch embedding and computed position embeddings: the patch tokens."""
    x = PatchEmbedding(hidden_size, patch_size, attention_impl, name="embedding")(x)
    if posemb == "sincos2d":
        x = SinCos2DPositionEmbedding(name="posemb_sincos2d")(x)
    return keras.layers.Reshape((x.shape[1] * x.shape[2], hidden_size), name="patches")(x)


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
    *,
    resnet_numerics: str = "official",
    num_channels: int = 3,
    class_token: bool | None = None,
    distilled: bool = False,
    distillation_output: str = "mean",
    num_register_tokens: int = 0,
    no_embed_class: bool = False,
    posemb: str = "learn",
    fc_norm: bool = False,
    layer_norm_epsilon: float = LAYER_NORM_EPSILON,
    layer_scale_init: float | None = None,
    qkv_bias: bool = True,
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
        classifier: ``"token"`` (class token), ``"gap"`` (mean of the patch
            tokens: the official ``gap``, timm's ``global_pool="avg"``) or
            ``"map"`` (big_vision's attention-pooling head ``MAPHead_0``).
        representation_size: width of the ``pre_logits`` Dense+tanh layer of the
            ImageNet-21k checkpoints; None for none.
        approximate_gelu: the tanh GELU of the official JAX and big_vision
            checkpoints and Hugging Face's ``gelu_new`` (True) or the exact erf
            GELU of timm and Hugging Face's ``gelu`` (False).
        dropout_rate: dropout after the position embeddings, attention and MLP.
        attention_dropout_rate: dropout on the attention weights.
        include_top: whether to end with ``pre_logits`` and ``head``. Without it
            the model returns the encoded tokens ``[batch, tokens, hidden]``, or
            a pooled vector if ``pooling`` is given.
        weights: None, a checkpoint file (official ``.npz``, timm ``.npz`` or
            ``.safetensors``, Keras ``.weights.h5``), or a named official
            checkpoint of the variant (see ``keras_vit.models.weights``).
        pooling: with ``include_top=False``: ``"token"``, ``"gap"``/``"avg"``
            or ``"max"`` (over all tokens; over the patch tokens where the source
            pools so: ``fc_norm`` models, ``classifier="gap"`` with a class
            token), or ``"map"`` (``MAPHead_0``). An ``fc_norm`` model then
            applies ``fc_norm`` (timm's ``forward_head`` without the head).
        classifier_activation: activation of the head; None returns logits, as
            the official code does.
        resnet_layers: None for a plain ViT; for the hybrid, the units of each
            stage of the ResNet stem (``(3, 4, 9)`` for R50+ViT-B/16; ``()`` is the
            root alone: conv, GroupNorm, max-pool). ``patch_size`` then applies
            to the stem's feature map. The stem's layers are ``root``
            (``HybridRoot``) and ``block1``, ``block2``, ...
        resnet_width: width multiplier of the stem.
        resnet_numerics: the stem's weight standardization and GroupNorm epsilons:
            ``"official"`` (vision_transformer) or ``"timm"`` (timm's hybrid ports),
            see ``keras_vit.layers.std_conv.NUMERICS``. Loading a checkpoint sets
            the numerics of its source.
        attention_impl: ``"fused"`` (default): in inference the whole encoder and
            the patch embedding run as XLA-compiled kernels of
            ``keras_vit.kernels``; ``"reference"`` (and every training step):
            the same computation layer by layer.
        attention_block_size: with the fused kernels, attention over sequences
            longer than this many tokens is computed blockwise (online softmax),
            saving memory at high resolution.
        name: model name.
        num_channels: input channels.
        class_token: whether a class token (layer ``cls``) is prepended; None:
            exactly when ``classifier="token"`` (timm's ``global_pool="avg"``
            models keep theirs: ``classifier="gap", class_token=True``).
        distilled: DeiT's distillation token (layer ``dist``, after ``cls``)
            and second head ``head_dist`` on it (its input is layer
            ``pool_dist``; ``pre_logits`` stays the class token's).
        distillation_output: for a distilled model, ``"mean"``: one output, the
            mean of both heads' logits (timm's inference rule); ``"both"``: the
            list ``[head, head_dist]``, for distillation training.
        num_register_tokens: register tokens (layer ``reg``, after the class
            and distillation tokens), as timm's ``reg_tokens``.
        no_embed_class: the prefix tokens get no position embedding (timm's
            ``no_embed_class``; big_vision's class token): the embeddings are
            added to the patches before the prefix tokens are prepended.
        posemb: ``"learn"`` (``Transformer/posembed_input``) or ``"sincos2d"``
            (big_vision's fixed embeddings, added to the patches only).
        fc_norm: timm's ``fc_norm``: LayerNorm ``fc_norm`` after the pooling,
            and no ``encoder_norm``.
        layer_norm_epsilon: every LayerNorm's epsilon (Hugging Face: 1e-12).
        layer_scale_init: None, or LayerScale (timm's ``init_values``, DINOv2)
            in every block, initialised to this value.
        qkv_bias: whether the attention's query, key and value have biases.

    Returns:
        A ``keras.Model`` taking float images in [-1, 1] (see
        ``keras_vit.preprocess_input``), shaped ``[batch, height, width, 3]``.
        ``model.get_layer("Transformer").output`` gives the encoded tokens and
        ``model.get_layer("pre_logits").output`` the features before the head.
        All options work with both ``attention_impl`` values (the fused kernel
        gets LayerScale folded into its weights, zero position embeddings for
        the prefix tokens, one kernel per block without ``encoder_norm``).

    Raises:
        ValueError: for an inconsistent configuration or unknown ``weights``.
    """
    height, width = image_hw(image_size)
    _check_grid(height, width, patch_size, resnet_layers)
    class_token = classifier == "token" if class_token is None else class_token
    top = dict(
        fc_norm=fc_norm,
        layer_norm_epsilon=layer_norm_epsilon,
        representation_size=representation_size,
        classifier_activation=classifier_activation,
        distilled=distilled,
        distillation_output=distillation_output,
    )
    check_head(include_top, num_classes, pooling, POOLINGS)
    check_top(classifier, class_token, distilled, dict(top, pooling=pooling, posemb=posemb))
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
    images = keras.Input(shape=(height, width, num_channels), name="images")
    x = (
        images
        if resnet_layers is None
        else _hybrid_resnet(images, tuple(resnet_layers), resnet_width, resnet_numerics)
    )
    x = _tokens(x, hidden_size, patch_size, attention_impl, posemb)
    x, prefix = add_prefix_tokens(x, class_token, distilled, num_register_tokens)
    x = Encoder(
        num_layers=num_layers,
        mlp_dim=mlp_dim,
        num_heads=num_heads,
        dropout_rate=dropout_rate,
        attention_dropout_rate=attention_dropout_rate,
        approximate_gelu=approximate_gelu,
        attention_impl=attention_impl,
        attention_block_size=attention_block_size,
        layer_norm_epsilon=layer_norm_epsilon,
        layer_scale_init=layer_scale_init,
        qkv_bias=qkv_bias,
        final_norm=not fc_norm,
        position_embedding="learn" if posemb == "learn" else "none",
        unembedded_tokens=prefix if no_embed_class or posemb == "sincos2d" else 0,
        name="Transformer",
    )(x)
    top.update(num_heads=num_heads, mlp_dim=mlp_dim, approximate_gelu=approximate_gelu)
    top.update(classifier=classifier, class_token=class_token, num_classes=num_classes)
    x = attach_top(x, include_top, pooling, prefix, top)
    model = keras.Model(images, x, name=name)
    if weights_path is not None:
        load_weights_file(model, weights_path)
    return model
