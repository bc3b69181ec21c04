"""Model construction, arguments, serialization and training behaviour."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vit
from keras_vit import layers
from keras_vit.layers.mlp import gelu, gelu_dense
from keras_vit.layers.norm_dense import layer_norm_dense
from keras_vit.models import ResNetV2, ViT

from .conftest import TINY

SMALL = dict(TINY, image_size=32, num_layers=1)


def images(shape=(2, 32, 32, 3), seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype("float32")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(image_size=65), "image size 65x65 is not divisible by the patch size 16"),
        (dict(image_size=(32, 40)), "image size 32x40 is not divisible"),
        (dict(image_size=0), "image_size must be a positive int"),
        (dict(classifier="mean"), "classifier must be one of"),
        (dict(pooling="avg"), "pooling applies only with include_top=False"),
        (dict(include_top=False, pooling="mean"), "pooling must be one of"),
        (dict(classifier="gap", include_top=False, pooling="token"), 'pooling="token" needs'),
        (dict(num_classes=0), "num_classes must be a positive int"),
        (dict(num_heads=3), "not divisible by num_heads 3"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ViT(**dict(SMALL, **kwargs))


@pytest.mark.parametrize(
    "build",
    [lambda **kw: ViT(**dict(SMALL, **kw)), lambda **kw: ResNetV2(layers=(1,), width=0.5, **kw)],
    ids=["vit", "bit"],
)
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(image_size=(32, 32, 3)), "image_size must be a positive int or a"),
        (dict(image_size=32, num_classes=0), "num_classes must be a positive int; got 0"),
        (dict(image_size=32, pooling="avg"), "pooling applies only with include_top=False"),
        (dict(image_size=32, include_top=False, pooling="mean"), "pooling must be one of"),
    ],
)
def test_builders_share_the_argument_checks(build, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build(**kwargs)


@pytest.fixture(scope="module")
def small():
    return ViT(**SMALL)


@pytest.mark.parametrize("shape", [(2, 32, 32, 1), (2, 32, 32), (2, 16, 16, 3)])
def test_wrong_input_shapes_fail_clearly(small, shape):
    with pytest.raises(ValueError, match="shape|incompatible|rank"):
        small(np.zeros(shape, "float32"))


def test_fresh_head_is_zero(small):
    assert np.all(small.predict(images(), verbose=0) == 0)


def test_non_square_images():
    model = ViT(**dict(SMALL, image_size=(32, 48)))
    assert model.get_layer("Transformer").posembed_input.pos_embedding.shape == (1, 7, 64)
    assert model.predict(images((1, 32, 48, 3)), verbose=0).shape == (1, 10)


def _randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.normal(size=w.shape).astype("float32") * 0.1)
    return model


def test_gap_normalises_every_token_then_averages():
    model = _randomize(ViT(**dict(SMALL, classifier="gap")))
    assert "cls" not in [layer.name for layer in model.layers]
    x = images()
    tokens = keras.Model(model.input, model.get_layer("Transformer").output).predict(x, verbose=0)
    head = model.get_layer("head")
    expected = tokens.mean(axis=1) @ np.array(head.kernel) + np.array(head.bias)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)


def test_representation_layer_is_dense_tanh():
    model = _randomize(ViT(**dict(SMALL, representation_size=16)))
    features = keras.Model(model.input, model.get_layer("pre_logits").output).predict(
        images(), verbose=0
    )
    assert features.shape == (2, 16) and np.abs(features).max() <= 1.0


@pytest.mark.parametrize(
    "pooling, shape", [(None, (2, 5, 64)), ("token", (2, 64)), ("avg", (2, 64)), ("max", (2, 64))]
)
def test_headless_outputs(pooling, shape):
    model = ViT(**SMALL, include_top=False, pooling=pooling)
    assert model.predict(images(), verbose=0).shape == shape


def test_classifier_activation():
    model = _randomize(ViT(**SMALL, classifier_activation="softmax"))
    np.testing.assert_allclose(model.predict(images(), verbose=0).sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("config", [dict(), dict(classifier="gap"), dict(representation_size=32)])
def test_every_weight_gets_a_gradient(config):
    model = _randomize(ViT(**dict(SMALL, dropout_rate=0.1, attention_dropout_rate=0.1, **config)))
    x, y = images(), np.array([1, 3])
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
    grads = tape.gradient(loss, model.trainable_weights)
    for weight, grad in zip(model.trainable_weights, grads):
        assert grad is not None, weight.path
        grad = np.array(grad)
        assert np.all(np.isfinite(grad)), weight.path
        assert np.any(grad != 0), weight.path


def test_dropout_only_in_training():
    model = _randomize(ViT(**dict(SMALL, dropout_rate=0.5)))
    x = images()
    np.testing.assert_array_equal(model(x, training=False), model(x, training=False))
    assert not np.allclose(model(x, training=True), model(x, training=False))


@pytest.mark.parametrize("dtype, rtol", [("float32", 1e-5), ("bfloat16", 2e-2)])
def test_tanh_gelu_gradient_recomputed_from_its_input_equals_keras(dtype, rtol):
    x = tf.constant(np.random.default_rng(0).normal(0, 3, (4, 257)), dtype)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours, theirs = gelu(x, approximate=True), keras.activations.gelu(x, approximate=True)
    np.testing.assert_array_equal(ours, theirs)
    ours, theirs = tape.gradient(ours, x), tape.gradient(theirs, x)
    assert ours.dtype == x.dtype
    np.testing.assert_allclose(tf.cast(ours, "float32"), tf.cast(theirs, "float32"), rtol, rtol)


@pytest.mark.parametrize("approximate", [True, False])
def test_mlp_gradient_recomputing_gelu_equals_the_layers(approximate):
    block = layers.MlpBlock(16, approximate_gelu=approximate)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(0, 2, (2, 5, 8)), "float32")
    block.build(x.shape)
    for weight in block.weights:
        weight.assign(rng.normal(0, 0.5, weight.shape).astype("float32"))
    assert block._recomputes_gelu(True) and not block._recomputes_gelu(False)
    assert not layers.MlpBlock(16, dropout_rate=0.1)._recomputes_gelu(True)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours = block(x, training=True)
        hidden = keras.activations.gelu(block.dense_0(x), approximate=approximate)
        theirs = block.dense_1(hidden)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)
    cotangent = tf.constant(rng.normal(size=ours.shape), "float32")
    sources = [x, *block.trainable_weights]
    for a, b in zip(
        tape.gradient(ours, sources, cotangent), tape.gradient(theirs, sources, cotangent)
    ):
        assert a is not None
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(np.abs(b).max()))
    with pytest.raises(ValueError, match="x has 8 features, the kernel 16 rows"):
        gelu_dense(x, block.dense_1.kernel, block.dense_1.bias, approximate)


@pytest.mark.parametrize(
    "qkv_bias, policy, tolerance, jit",
    [
        (True, "float32", 1e-5, False),
        (False, "float32", 1e-5, False),
        (True, "float32", 1e-5, True),
        (True, "float64", 1e-12, False),
        (True, "mixed_bfloat16", 2e-2, False),
    ],
)
def test_block_gradient_recomputing_layer_norm_equals_the_layers(
    qkv_bias, policy, tolerance, jit, monkeypatch
):
    calls = []
    spy = lambda *args: calls.append(1) or layer_norm_dense(*args)  # noqa: E731
    monkeypatch.setattr("keras_vit.layers.block.layer_norm_dense", spy)
    block = layers.Encoder1DBlock(16, 2, qkv_bias=qkv_bias, dtype=policy)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(0, 2, (2, 5, 8)), "float32")
    block.build(x.shape)
    for weight in block.weights:
        weight.assign(rng.normal(0, 0.5, weight.shape).astype("float32"))
    cotangent = tf.constant(rng.normal(size=x.shape), "float64")

    def outputs_and_gradients(x, cotangent, layer_by_layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            if layer_by_layer:
                inputs = tf.cast(x, block.compute_dtype)
                out = inputs + block.attention(block.norm_0(inputs), training=True)
                out = out + block.mlp(block.norm_2(out), training=True)
            else:
                out = block(x, training=True)
            assert out.dtype == block.compute_dtype
            out = tf.cast(out, "float64")
        return out, tape.gradient(out, [x, *block.trainable_weights], cotangent)

    if jit:  # XLA, the batch unknown when traced
        traced = tf.function(lambda x, c: outputs_and_gradients(x, c, False), jit_compile=True)
        spec = tf.TensorSpec([None, 5, 8], "float32"), tf.TensorSpec([None, 5, 8], "float64")
        ours = traced.get_concrete_function(*spec)(x, cotangent)
    else:
        ours = outputs_and_gradients(x, cotangent, False)
    assert calls, "a training step on TensorFlow runs layer_norm_dense"
    theirs = outputs_and_gradients(x, cotangent, True)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=tolerance, atol=tolerance)
    for a, b in zip(ours[1], theirs[1]):
        assert a is not None
        # key/bias has a zero gradient (softmax ignores a shift of every logit):
        # both are rounding noise there, hence the absolute floor.
        scale = max(float(np.abs(b).max()), 1.0)
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance * scale)
    kernels = [block.attention.query.kernel]
    with pytest.raises(ValueError, match="x has 4 features, a kernel 8 rows"):
        layer_norm_dense(x[..., :4], x[0, 0, :4], x[0, 0, :4], 1e-6, kernels, [None])


LAYERS = [
    layers.DenseGeneral((2, 4), in_axes=1, name="query"),
    layers.MultiHeadDotProductAttention(
        num_heads=2, attention_dropout_rate=0.1, attention_impl="reference"
    ),
    layers.PatchEmbedding(hidden_size=8, patch_size=4, attention_impl="reference"),
    layers.MlpBlock(mlp_dim=16, dropout_rate=0.1, approximate_gelu=False),
    layers.Encoder1DBlock(mlp_dim=16, num_heads=2, dropout_rate=0.1, attention_dropout_rate=0.2),
    layers.Encoder(
        num_layers=2, mlp_dim=16, num_heads=2, approximate_gelu=False, attention_block_size=64
    ),
    layers.AddPositionEmbs(),
    layers.ClassToken(),
    layers.TokenPooling("gap"),
]


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: type(layer).__name__)
def test_layer_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    registered = keras.saving.get_registered_name(type(layer))
    assert registered == f"keras_vit>{type(layer).__name__}"


def test_keras_file_round_trip(tmp_path):
    model = _randomize(ViT(**dict(SMALL, representation_size=16, approximate_gelu=False)))
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    x = images()
    np.testing.assert_array_equal(restored.predict(x, verbose=0), model.predict(x, verbose=0))
    assert (
        restored.get_layer("Transformer").get_config()
        == model.get_layer("Transformer").get_config()
    )


def test_preprocess_input_and_decode_predictions():
    pixels = np.array([[0, 127.5, 255]], "float32")
    np.testing.assert_allclose(keras_vit.preprocess_input(pixels), [[-1.0, 0.0, 1.0]])
    np.testing.assert_allclose(keras_vit.preprocess_input(tf.constant(pixels)), [[-1.0, 0.0, 1.0]])
    logits = np.zeros((1, 1000), "float32")
    logits[0, 1], logits[0, 0] = 5.0, 3.0
    top = keras_vit.decode_predictions(logits, top=2)
    assert top == [[(1, "goldfish", 5.0), (0, "tench", 3.0)]]
    with pytest.raises(ValueError, match=r"\[batch, 1000\]"):
        keras_vit.decode_predictions(np.zeros((1, 10)))
