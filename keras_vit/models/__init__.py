"""Model constructors: ``ViT``, ``create_model`` and one function per variant.

The per-variant functions are generated from ``keras_vit.variants.VIT_VARIANTS``
(a test checks that every variant has its name here).
"""

from keras_vit.models.registry import VARIANT_CONSTRUCTORS, create_model
from keras_vit.models.vit import ViT

ViT_Ti16 = VARIANT_CONSTRUCTORS["ViT_Ti16"]
ViT_S16 = VARIANT_CONSTRUCTORS["ViT_S16"]
ViT_S32 = VARIANT_CONSTRUCTORS["ViT_S32"]
ViT_B8 = VARIANT_CONSTRUCTORS["ViT_B8"]
ViT_B16 = VARIANT_CONSTRUCTORS["ViT_B16"]
ViT_B32 = VARIANT_CONSTRUCTORS["ViT_B32"]
ViT_L16 = VARIANT_CONSTRUCTORS["ViT_L16"]
ViT_L32 = VARIANT_CONSTRUCTORS["ViT_L32"]
ViT_H14 = VARIANT_CONSTRUCTORS["ViT_H14"]

__all__ = ["ViT", "create_model", *VARIANT_CONSTRUCTORS]
