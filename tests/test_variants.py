"""The variant table: names, constructors and exact parameter counts."""

import keras
import pytest

from keras_vit import models
from keras_vit.models.registry import constructor_name
from keras_vit.variants import ALL_VARIANTS, display_name, parse_model_name

# Parameter counts at 224 px with 1000 classes. ViT and hybrids: as the official
# models_test.py lists them. BiT: R50x1 as timm reports it exactly (25,549,352);
# the others agree with timm's published sizes (217.32M, 44.54M, 387.93M,
# 236.34M, 936.53M).
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
    "R+Ti/16": 6_337_704,
    "R26+S/32": 36_431_912,
    "R26+B/32": 101_383_976,
    "R50+B/16": 98_659_112,
    "R50+L/32": 328_994_856,
    "R50x1": 25_549_352,
    "R50x3": 217_319_080,
    "R101x1": 44_541_480,
    "R101x3": 387_934_888,
    "R152x2": 236_335_208,
    "R152x4": 936_533_224,
}


def shapes_only(name, **kwargs):
    """The model with its variables' shapes but no values: drawing the initial values is
    nearly all of the time of a billion-parameter build, and a count needs only shapes.
    ``keras.backend.clear_session()`` drops the uninitialized variables afterwards."""
    with keras.StatelessScope(initialize_variables=False):
        return models.create_model(name, **kwargs)


def test_every_variant_has_a_count():
    assert set(ALL_VARIANTS) == set(PARAM_COUNTS)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_parameter_count(variant):
    model = shapes_only(display_name(variant))
    assert model.count_params() == PARAM_COUNTS[variant]
    assert model.output_shape == (None, 1000)
    del model
    keras.backend.clear_session()


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_named_constructor_is_exported(variant):
    constructor = getattr(models, constructor_name(variant))
    assert constructor is models.VARIANT_CONSTRUCTORS[constructor.__name__]
    assert display_name(variant) in constructor.__doc__


def test_named_constructors_build_their_variant():
    model = models.ViT_Ti16(image_size=32, num_classes=3)
    assert model.get_layer("Transformer").get_config()["num_heads"] == 3
    assert model.get_layer("embedding").kernel.shape == (16, 16, 3, 192)
    hybrid = models.R_ViT_Ti16(image_size=64, num_classes=3)
    assert hybrid.get_layer("embedding").kernel.shape == (8, 8, 64, 192)


def test_gap_variant_without_representation():
    # 'ViT-B_16-gap-norep' of the official table: no class token.
    model = shapes_only("ViT-B/16", classifier="gap")
    assert model.count_params() == 86_566_120
    del model
    keras.backend.clear_session()


def test_parse_names():
    assert parse_model_name("B/16") == parse_model_name("ViT-B/16")
    assert parse_model_name("ViT-L/32")[2]["num_layers"] == 24
    assert parse_model_name("Mu/8")[2]["patch_size"] == 8
    assert parse_model_name("R50+B/16") == parse_model_name("R50+ViT-B/16")
    assert parse_model_name("R+ViT-Ti/16")[2]["resnet_layers"] == ()
    assert parse_model_name("BiT-R101x3") == (
        "bit",
        "R101x3",
        {"layers": (3, 4, 23, 3), "width": 3},
    )


@pytest.mark.parametrize(
    "name", ["ViT-X/16", "B16", "ViT-B/", "resnet50", "R50+ViT-B/32", "BiT-R50x2", None]
)
def test_unknown_variant_names_the_problem(name):
    with pytest.raises(ValueError, match="Unknown model variant"):
        models.create_model(name)
