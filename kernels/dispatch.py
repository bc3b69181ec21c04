"""The one switch between the backends' kernels: ``keras.backend.backend()``.

Each backend has one module with the same four functions (``attention``,
``encoder_block``, ``encoder``, ``patch_embed``), imported on first use so that
a backend's library is imported only when its kernels run:

- TensorFlow: ``keras_vit.kernels._tf``, XLA-compiled ``tf.function`` kernels;
- JAX: ``keras_vit.kernels._jax``, ``jax.jit`` functions, attention through
  ``jax.nn.dot_product_attention`` (cuDNN flash attention on GPUs);
- PyTorch: ``keras_vit.kernels._torch``, attention through
  ``torch.nn.functional.scaled_dot_product_attention``.

Example:
    >>> from keras_vit.kernels.dispatch import backend_kernels
    >>> callable(backend_kernels().attention)
    True
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import keras

# A backend tensor or anything convertible to one (numpy arrays included).
Tensor = Any

BACKEND_MODULES = {
    "tensorflow": "keras_vit.kernels._tf",
    "jax": "keras_vit.kernels._jax",
    "torch": "keras_vit.kernels._torch",
}


def backend_kernels() -> ModuleType:
    """The kernel module of the current Keras backend.

    Returns:
        The module (imported on first use).

    Raises:
        NotImplementedError: on a backend without kernels (use
            ``attention_impl="reference"`` there).
    """
    backend = keras.backend.backend()
    if backend not in BACKEND_MODULES:
        raise NotImplementedError(
            f"keras_vit's fused kernels run on {sorted(BACKEND_MODULES)}, not on the "
            f"{backend!r} backend: build the model with attention_impl='reference'."
        )
    return importlib.import_module(BACKEND_MODULES[backend])


def check_seed(seed: Tensor | None, *rates: float, kernel: str) -> None:
    """Refuses active dropout without a seed.

    Args:
        seed: the caller's int32 ``[2]`` seed, or None.
        *rates: the kernel's dropout rates.
        kernel: the kernel's name, for the error message.

    Raises:
        ValueError: when a rate is set and ``seed`` is None.
    """
    if any(rates) and seed is None:
        raise ValueError(f"{kernel} needs a seed when dropout is active")
