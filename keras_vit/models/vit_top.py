"""The parts of ``ViT`` around the encoder: prefix tokens, pooling and heads.

Prefix tokens, in timm's order: ``[cls, dist, reg..., patches]`` (class token,
DeiT's distillation token, register tokens). The top pools (class token, mean
of the patch tokens, or big_vision's ``MAPHead_0``), optionally normalises the
pooled vector (timm's ``fc_norm``), then ``pre_logits`` and ``head``; a
distilled model adds ``head_dist`` on the distillation token.

Example:
    >>> from keras_vit.models.vit_top import prefix_token_count
    >>> prefix_token_count(class_token=True, distilled=True, num_register_tokens=4)
    6
"""

from __future__ import annotations

import keras

from keras_vit.layers import ClassToken, MAPHead, TokenPooling, layer_norm

CLASSIFIERS = ("token", "gap", "map")
DISTILLATION_OUTPUTS = ("mean", "both")
POSEMBS = ("learn", "sincos2d")


def prefix_token_count(class_token: bool, distilled: bool, num_register_tokens: int) -> int:
    """How many tokens precede the patches.

    Args:
        class_token: whether the model has a class token.
        distilled: whether it has DeiT's distillation token.
        num_register_tokens: its register tokens.

    Returns:
        The number of prefix tokens.
    """
    return int(class_token) + int(distilled) + num_register_tokens


def add_prefix_tokens(x, class_token: bool, distilled: bool, num_register_tokens: int):
    """Prepends the prefix tokens to the patch tokens: ``[cls, dist, reg..., patches]``.

    Args:
        x: patch tokens ``[batch, patches, hidden]``.
        class_token: add the class token (layer ``cls``).
        distilled: add the distillation token (layer ``dist``).
        num_register_tokens: add this many register tokens (layer ``reg``).

    Returns:
        ``([batch, prefix + patches, hidden], the number of prefix tokens)``.
    """
    if num_register_tokens:
        x = ClassToken(num_register_tokens, name="reg")(x)
    if distilled:
        x = ClassToken(name="dist")(x)
    if class_token:
        x = ClassToken(name="cls")(x)
    return x, prefix_token_count(class_token, distilled, num_register_tokens)


def check_top(classifier: str, class_token: bool, distilled: bool, options: dict) -> None:
    """Refuses combinations of the top's options that no source defines.

    Args:
        classifier: ``"token"``, ``"gap"`` or ``"map"``.
        class_token: whether the model has a class token.
        distilled: whether it has a distillation token.
        options: ``fc_norm``, ``representation_size``, ``distillation_output``,
            ``pooling`` and ``posemb``.

    Raises:
        ValueError: naming the offending argument.
    """
    if classifier not in CLASSIFIERS:
        raise ValueError(f"classifier must be one of {CLASSIFIERS}; got {classifier!r}.")
    if options["posemb"] not in POSEMBS:
        raise ValueError(f"posemb must be one of {POSEMBS}; got {options['posemb']!r}.")
    for name, value in (("classifier", classifier), ("pooling", options["pooling"])):
        if value == "token" and not class_token:
            raise ValueError(f'{name}="token" needs a class token (class_token=True).')
    if options["distillation_output"] not in DISTILLATION_OUTPUTS:
        raise ValueError(
            f"distillation_output must be one of {DISTILLATION_OUTPUTS}; "
            f"got {options['distillation_output']!r}."
        )
    if distilled and (
        classifier != "token" or options["fc_norm"] or options["representation_size"]
    ):
        raise ValueError(
            'distilled=True (DeiT) needs classifier="token", no fc_norm and no representation_size.'
        )


def pool(x, mode: str, num_prefix_tokens: int, options: dict):
    """Pools the encoded tokens: layer ``pool`` (``TokenPooling``) or ``MAPHead_0``.

    Args:
        x: encoded tokens ``[batch, tokens, hidden]``.
        mode: ``"token"``, ``"gap"``/``"avg"`` (mean of the patch tokens),
            ``"max"`` or ``"map"``.
        num_prefix_tokens: the tokens before the patches.
        options: ``num_heads``, ``mlp_dim``, ``approximate_gelu`` and
            ``layer_norm_epsilon``, for ``"map"``.

    Returns:
        ``[batch, hidden]``.
    """
    if mode == "map":
        names = ("num_heads", "mlp_dim", "approximate_gelu", "layer_norm_epsilon")
        return MAPHead(**{k: options[k] for k in names}, name="MAPHead_0")(x)
    mode = "gap" if mode == "avg" else mode
    return TokenPooling(mode, num_prefix_tokens, name="pool")(x)


def attach_top(x, include_top: bool, pooling: str | None, num_prefix_tokens: int, options: dict):
    """What follows the encoder: the classifier's pooling and heads, ``pooling=``, or nothing.

    Args:
        x: encoded tokens ``[batch, tokens, hidden]``.
        include_top: end with the heads (``classification_top``).
        pooling: without the heads, ``headless_pool``'s mode, or None for the tokens.
        num_prefix_tokens: the tokens before the patches.
        options: as ``pool``, ``headless_pool`` and ``classification_top``, with
            ``num_classes``.

    Returns:
        The model's output.
    """
    if include_top:
        pooled = pool(x, options["classifier"], num_prefix_tokens, options)
        return classification_top(x, pooled, options["num_classes"], options)
    return x if pooling is None else headless_pool(x, pooling, num_prefix_tokens, options)


def headless_pool(x, mode: str, num_prefix_tokens: int, options: dict):
    """A headless model's pooling (``pooling=``): ``pool``, then ``fc_norm`` if the model has it.

    Plain ``pooling=`` pools every token, as keras_vit always has; where the
    source pools the patch tokens alone (timm's ``fc_norm`` models,
    ``classifier="gap"`` with a class token) the prefix tokens are left out.

    Args:
        x: encoded tokens ``[batch, tokens, hidden]``.
        mode: as ``pool``.
        num_prefix_tokens: the tokens before the patches.
        options: as ``pool``, with ``fc_norm``, ``classifier`` and ``class_token``.

    Returns:
        ``[batch, hidden]``.
    """
    gap_token = options["classifier"] == "gap" and options["class_token"]
    pooled = pool(x, mode, num_prefix_tokens if options["fc_norm"] or gap_token else 0, options)
    if options["fc_norm"]:  # timm's forward_head(pre_logits=True)
        pooled = layer_norm("fc_norm", None, options["layer_norm_epsilon"])(pooled)
    return pooled


def classification_top(x, pooled, num_classes: int, options: dict):
    """``[fc_norm] → pre_logits → head``, and for a distilled model ``head_dist``.

    Args:
        x: encoded tokens ``[batch, tokens, hidden]`` (for the distillation token).
        pooled: the pooled vector ``[batch, hidden]``.
        num_classes: size of the heads.
        options: ``fc_norm``, ``layer_norm_epsilon``, ``representation_size``,
            ``classifier_activation``, ``distilled``, ``distillation_output``.

    Returns:
        The logits; for a distilled model the mean of both heads (timm's
        inference rule), or with ``distillation_output="both"`` the list
        ``[head, head_dist]`` (for distillation training).
    """
    if options["fc_norm"]:
        pooled = layer_norm("fc_norm", None, options["layer_norm_epsilon"])(pooled)
    if options["representation_size"]:
        pooled = keras.layers.Dense(
            options["representation_size"],
            activation="tanh",
            kernel_initializer="lecun_normal",
            name="pre_logits",
        )(pooled)
    else:
        pooled = keras.layers.Identity(name="pre_logits")(pooled)
    activation = options["classifier_activation"]
    if not options["distilled"]:
        return _dense_head(num_classes, activation, "head")(pooled)
    dist = TokenPooling("token", token_index=1, name="pool_dist")(x)
    both = options["distillation_output"] == "both"
    heads = [
        _dense_head(num_classes, activation if both else None, name)(inputs)
        for name, inputs in (("head", pooled), ("head_dist", dist))
    ]
    if both:
        return heads
    logits = keras.layers.Average(name="logits")(heads)
    return (
        keras.layers.Activation(activation, name="probabilities")(logits) if activation else logits
    )


def _dense_head(num_classes: int, activation: str | None, name: str) -> keras.layers.Dense:
    return keras.layers.Dense(
        num_classes, kernel_initializer="zeros", activation=activation, name=name
    )
