"""Patch embedding as reshape + one matmul, fused with the class token and position embeddings.

Equal to the official strided convolution with a ``[p, p, channels, hidden]``
kernel; ``patch_embed_reference`` is that convolution.

Example:
    >>> import numpy as np
    >>> from keras_vit.kernels import patch_embed, patch_embed_reference
    >>> rng = np.random.default_rng(0)
    >>> images = rng.normal(size=(2, 8, 12, 3)).astype("float32")
    >>> kernel, bias = rng.normal(size=(4, 4, 3, 5)).astype("float32"), np.zeros(5, "float32")
    >>> fused, ref = patch_embed(images, kernel, bias), patch_embed_reference(images, kernel, bias)
    >>> bool(np.allclose(np.asarray(fused), np.asarray(ref), atol=1e-5))
    True
"""

from __future__ import annotations

from keras import ops

from keras_vit.kernels.dispatch import Tensor, backend_kernels


def patch_embed_reference(
    images: Tensor,
    kernel: Tensor,
    bias: Tensor,
    cls_token: Tensor | None = None,
    pos_embedding: Tensor | None = None,
) -> Tensor:
    """The official formulation: a strided VALID convolution, then flatten (keras.ops).

    Args:
        images: ``[batch, height, width, channels]``.
        kernel: ``[p, p, channels, hidden]``.
        bias: ``[hidden]``.
        cls_token: optional ``[1, 1, hidden]``, prepended.
        pos_embedding: optional ``[1, tokens, hidden]``, added.

    Returns:
        ``[batch, tokens, hidden]``.
    """
    images = ops.convert_to_tensor(images)
    patch = kernel.shape[0]
    x = ops.conv(images, ops.cast(kernel, images.dtype), strides=patch, padding="valid") + bias
    x = ops.reshape(x, (ops.shape(x)[0], -1, kernel.shape[-1]))
    if cls_token is not None:
        x = ops.concatenate(
            [ops.broadcast_to(cls_token, (ops.shape(x)[0], 1, x.shape[-1])), x], axis=1
        )
    return x if pos_embedding is None else x + pos_embedding


def patch_embed(
    images: Tensor,
    kernel: Tensor,
    bias: Tensor,
    cls_token: Tensor | None = None,
    pos_embedding: Tensor | None = None,
) -> Tensor:
    """Patchify as reshape + one matmul (compiled per backend).

    Args:
        images: ``[batch, height, width, channels]``; height and width divisible
            by the patch size.
        kernel: ``[p, p, channels, hidden]`` (the official ``embedding/kernel``).
        bias: ``[hidden]``.
        cls_token: optional ``[1, 1, hidden]``, prepended.
        pos_embedding: optional ``[1, tokens, hidden]``, added.

    Returns:
        ``[batch, tokens, hidden]``.

    Raises:
        ValueError: when a known image side is not divisible by the patch size.
    """
    p = kernel.shape[0]
    if any(size is not None and size % p for size in images.shape[1:3]):
        raise ValueError(
            f"image size {images.shape[1]}x{images.shape[2]} is not divisible by the patch size {p}"
        )
    return backend_kernels().patch_embed(images, kernel, bias, cls_token, pos_embedding)
