"""Model constructors: ``ViT``, ``ResNetV2``, ``create_model`` and one function per variant.

The per-variant functions are generated from the tables of ``keras_vit.variants``
(a test checks that each one is exported here).
"""

from keras_vit.models.bit import ResNetV2
from keras_vit.models.from_checkpoint import from_checkpoint
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
R_ViT_Ti16 = VARIANT_CONSTRUCTORS["R_ViT_Ti16"]
R26_ViT_S32 = VARIANT_CONSTRUCTORS["R26_ViT_S32"]
R26_ViT_B32 = VARIANT_CONSTRUCTORS["R26_ViT_B32"]
R50_ViT_B16 = VARIANT_CONSTRUCTORS["R50_ViT_B16"]
R50_ViT_L32 = VARIANT_CONSTRUCTORS["R50_ViT_L32"]
BiT_R50x1 = VARIANT_CONSTRUCTORS["BiT_R50x1"]
BiT_R50x3 = VARIANT_CONSTRUCTORS["BiT_R50x3"]
BiT_R101x1 = VARIANT_CONSTRUCTORS["BiT_R101x1"]
BiT_R101x3 = VARIANT_CONSTRUCTORS["BiT_R101x3"]
BiT_R152x2 = VARIANT_CONSTRUCTORS["BiT_R152x2"]
BiT_R152x4 = VARIANT_CONSTRUCTORS["BiT_R152x4"]

__all__ = ["ResNetV2", "ViT", "create_model", "from_checkpoint", *VARIANT_CONSTRUCTORS]
