"""Forward and backward over every variant of the table at small image sizes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vit import models
from keras_vit.variants import BIT_VARIANTS, HYBRID_VARIANTS, VIT_VARIANTS, display_name

# Twice the effective patch (or the 32x stride of BiT): a 2x2 grid at least.
SMALL_SIZES = {v: 2 * p for v, (_, p) in VIT_VARIANTS.items()}
SMALL_SIZES.update({"R+Ti/16": 64, "R26+S/32": 64, "R26+B/32": 64, "R50+B/16": 32, "R50+L/32": 64})
SMALL_SIZES.update({v: 64 for v in BIT_VARIANTS})


def test_every_variant_has_a_small_size():
    assert set(SMALL_SIZES) == {*VIT_VARIANTS, *HYBRID_VARIANTS, *BIT_VARIANTS}


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(SMALL_SIZES))
def test_forward_backward(variant):
    size = SMALL_SIZES[variant]
    model = models.create_model(display_name(variant), image_size=size, num_classes=3)
    rng = np.random.default_rng(0)
    # Zero-initialised weights (the head, the hybrid's last GroupNorm scales) would
    # block every gradient below them; give them small values.
    for weight in model.weights:
        if not np.any(np.array(weight)):
            weight.assign(rng.normal(size=weight.shape).astype("float32") * 0.02)
    x = rng.uniform(-1, 1, (2, size, size, 3)).astype("float32")
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = keras.losses.sparse_categorical_crossentropy(
            np.array([0, 2]), logits, from_logits=True
        )
    assert logits.shape == (2, 3) and np.all(np.isfinite(logits))
    grads = tape.gradient(loss, model.trainable_weights)
    for weight, grad in zip(model.trainable_weights, grads):
        assert grad is not None, weight.path
        assert np.all(np.isfinite(grad)), weight.path
        assert np.any(np.array(grad) != 0), weight.path
    del model, grads
    keras.backend.clear_session()
