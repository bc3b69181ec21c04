"""Compute kernels of keras_vit, installed as ``keras_vit.kernels``.

Each kernel is a pure function of tensors (no captured variables), so it can be
wrapped by XLA and used under ``tf.distribute``.
"""

from keras_vit.kernels.attention import attention_weights, dot_product_attention

__all__ = ["attention_weights", "dot_product_attention"]
