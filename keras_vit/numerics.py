"""Numerical constants copied from the source code of the checkpoints, defined once.

The lowest module of the package (no imports), so that the kernels and the
layers read the same value.
"""

# flax.linen.LayerNorm's default epsilon: the official code (vision_transformer)
# uses it, and timm's ViT sets the same ``eps=1e-6`` (PyTorch's default is 1e-5).
LAYER_NORM_EPSILON = 1e-6
