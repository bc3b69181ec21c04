"""Compute kernels of keras_vit, installed as ``keras_vit.kernels``.

Each kernel is a pure function of tensors (no captured variables), compiled per
backend behind one dispatch on ``keras.backend.backend()``
(``keras_vit.kernels.dispatch``: XLA-compiled ``tf.function`` on TensorFlow, ``jax.jit``
on JAX, ``scaled_dot_product_attention`` on PyTorch); each has a plain
``keras.ops`` reference implementation beside it, and the models switch between
them with ``attention_impl="fused"|"reference"``. Importing this package imports
no backend library: a backend's kernels load on their first call.
"""

from keras_vit.kernels.attention import attention_reference, attention_weights, fused_attention
from keras_vit.kernels.encoder_block import PARAM_NAMES, encoder, encoder_block
from keras_vit.kernels.patch_embed import patch_embed, patch_embed_reference

__all__ = [
    "PARAM_NAMES",
    "attention_reference",
    "attention_weights",
    "encoder",
    "encoder_block",
    "fused_attention",
    "patch_embed",
    "patch_embed_reference",
]
