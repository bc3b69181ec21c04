"""The variant table: names, constructors and exact parameter counts."""

import keras
import pytest

from keras_vit import models
from keras_vit.variants import VIT_VARIANTS, parse_vit_name

# Parameter counts at 224 px with 1000 classes, as the official models_test.py lists them.
PARAM_COUNTS = {
    "Ti/16": 5_717_416,
    "S/16": 22_050_664,
    "S/32": 22_878_952,
    "B/8": 86_576_872,
    "B/16": 86_567_656,
    "B/32": 88_224_232,
    "L/16": 304_326_632,
    "L/32": 306_535_400,
    "H/14": 632_045_800,
}


def test_every_variant_has_a_count():
    assert set(VIT_VARIANTS) == set(PARAM_COUNTS)


@pytest.mark.parametrize("variant", sorted(PARAM_COUNTS))
def test_parameter_count(variant):
    model = models.create_model(f"ViT-{variant}")
    assert model.count_params() == PARAM_COUNTS[variant]
    assert model.output_shape == (None, 1000)
    del model
    keras.backend.clear_session()


@pytest.mark.parametrize("variant", sorted(VIT_VARIANTS))
def test_named_constructor_exists(variant):
    constructor = getattr(models, "ViT_" + variant.replace("/", ""))
    assert constructor.__name__ == "ViT_" + variant.replace("/", "")
    assert variant in constructor.__doc__


def test_named_constructor_builds_its_variant():
    model = models.ViT_Ti16(image_size=32, num_classes=3)
    assert model.get_layer("Transformer").get_config()["num_heads"] == 3
    assert model.get_layer("embedding").kernel.shape == (16, 16, 3, 192)


def test_gap_variant_without_representation():
    # 'ViT-B_16-gap-norep' of the official table: no class token.
    model = models.create_model("ViT-B/16", classifier="gap")
    assert model.count_params() == 86_566_120


def test_parse_names():
    assert parse_vit_name("B/16") == parse_vit_name("ViT-B/16")
    assert parse_vit_name("ViT-L/32")["num_layers"] == 24
    assert parse_vit_name("Mu/8")["patch_size"] == 8


@pytest.mark.parametrize("name", ["ViT-X/16", "B16", "ViT-B/", "resnet50"])
def test_unknown_variant_names_the_problem(name):
    with pytest.raises(ValueError, match="Unknown ViT variant"):
        models.create_model(name)
