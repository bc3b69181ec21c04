"""Fused kernels against their reference implementations, on the current Keras backend.

Backend-agnostic (``tests/backend_grads.py`` differentiates on each backend):
``tests/test_backends.py`` reruns these under JAX and PyTorch.

Float32: the fused path and the reference agree within 1e-5 relative error
(max|fused - reference| / max|reference|), outputs and gradients.

Bfloat16: both paths round differently, and their difference on an x86 CPU
without native bfloat16 arithmetic reaches 2e-2 while each stays within 1.6e-2
of the exact result (with it, as AVX512-BF16 gives TensorFlow's oneDNN kernels,
the reference's matmuls round once, as the fused block's do). So each is
compared with the float32 computation on the same (bfloat16-rounded) inputs: the
fused path must be within 2e-2 of it and no less accurate than the reference
path (at most 1.5x its error).
"""

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras import ops

from keras_vit.kernels import (
    attention_reference,
    attention_weights,
    encoder_block,
    fused_attention,
    patch_embed,
    patch_embed_reference,
)
from keras_vit.layers import Encoder1DBlock
from keras_vit.models import ViT

from .backend_grads import as_f32 as _f32
from .backend_grads import value_and_grads, with_weights
from .conftest import relative_error

TOLERANCE = {"float32": 1e-5, "bfloat16": 2e-2}
BF16_VS_REFERENCE = 1.5


def tensors(*shapes, dtype="float32", scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return [ops.cast((rng.normal(size=s) * scale).astype("float32"), dtype) for s in shapes]


def assert_close(actual, expected, dtype):
    actual, expected = _f32(actual), _f32(expected)
    if not np.any(expected):  # e.g. the q/k gradients of a single token: exactly zero
        assert np.abs(actual).max() <= TOLERANCE[dtype]
    else:
        assert relative_error(actual, expected) <= TOLERANCE[dtype]


def assert_as_accurate(fused, reference, exact):
    """Bfloat16: ``fused`` within the bound of ``exact`` (float32) and no worse than ``reference``."""
    fused, reference, exact = _f32(fused), _f32(reference), _f32(exact)
    if not np.any(exact):
        assert np.abs(fused).max() <= TOLERANCE["bfloat16"]
        return
    error = relative_error(fused, exact)
    assert error <= TOLERANCE["bfloat16"]
    assert error <= BF16_VS_REFERENCE * max(relative_error(reference, exact), 1e-3)


SHAPES = [(2, 17, 3, 8), (1, 1, 1, 4), (1, 50, 5, 7), (3, 197, 12, 64)]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fused_attention_forward_and_gradients(shape, dtype):
    inputs = tensors(shape, shape, shape, dtype=dtype)
    fused, fused_grads = value_and_grads(lambda q, k, v: fused_attention(q, k, v), inputs)
    ref, ref_grads = value_and_grads(lambda q, k, v: attention_reference(q, k, v), inputs)
    assert keras.backend.standardize_dtype(fused.dtype) == dtype
    assert keras.backend.standardize_dtype(ref.dtype) == dtype
    if dtype == "float32":
        for a, b in zip([fused, *fused_grads], [ref, *ref_grads]):
            assert_close(a, b, dtype)
        return
    exact_inputs = [ops.cast(x, "float32") for x in inputs]
    exact, exact_grads = value_and_grads(attention_reference, exact_inputs)
    for a, b, c in zip([fused, *fused_grads], [ref, *ref_grads], [exact, *exact_grads]):
        assert_as_accurate(a, b, c)


@pytest.mark.parametrize("block_size", [4, 16, 50, 64])
def test_blockwise_path_matches(block_size):
    inputs = tensors(*[(2, 50, 3, 8)] * 3)
    blockwise, grads = value_and_grads(
        lambda q, k, v: fused_attention(q, k, v, block_size=block_size), inputs
    )
    ref, ref_grads = value_and_grads(lambda q, k, v: attention_reference(q, k, v), inputs)
    assert_close(blockwise, ref, "float32")
    for a, b in zip(grads, ref_grads):
        assert_close(a, b, "float32")
    with pytest.raises(ValueError, match="blockwise path takes no mask"):
        fused_attention(*inputs, block_size=4, return_weights=True)


def test_masks():
    q, k, v = tensors(*[(2, 6, 2, 4)] * 3)
    mask = (np.random.default_rng(3).random((2, 1, 6, 6)) > 0.4) | np.eye(6, dtype=bool)
    mask = ops.convert_to_tensor(mask)
    fused, weights = fused_attention(q, k, v, mask=mask, return_weights=True)
    assert_close(fused, attention_reference(q, k, v, mask=mask), "float32")
    weights, mask = _f32(weights), ops.convert_to_numpy(mask)
    np.testing.assert_array_equal(weights[np.broadcast_to(~mask, weights.shape)], 0.0)


def assert_masked_attention_matches_the_reference(inputs, mask):
    mask = ops.convert_to_tensor(mask)
    fused, grads = value_and_grads(lambda q, k, v: fused_attention(q, k, v, mask=mask), inputs)
    ref, ref_grads = value_and_grads(
        lambda q, k, v: attention_reference(q, k, v, mask=mask), inputs
    )
    for a, b in zip([fused, *grads], [ref, *ref_grads]):
        assert_close(a, b, "float32")


def test_masked_outputs_and_gradients():
    mask = (np.random.default_rng(3).random((2, 1, 6, 6)) > 0.4) | np.eye(6, dtype=bool)
    assert_masked_attention_matches_the_reference(tensors(*[(2, 6, 2, 4)] * 3, seed=1), mask)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="a row with every key masked follows each backend's own convention",
)
def test_a_fully_masked_row_gets_the_references_gradients():
    mask = np.ones((2, 1, 5, 5), bool)
    mask[0, 0, 2] = False  # query 2 of the first image attends to nothing
    assert_masked_attention_matches_the_reference(tensors(*[(2, 5, 2, 4)] * 3, seed=2), mask)


def test_large_logits_stay_finite():
    q, k, v = tensors(*[(1, 9, 2, 16)] * 3, scale=300.0)
    fused, grads = value_and_grads(lambda q, k, v: fused_attention(q, k, v), [q, k, v])
    assert all(np.all(np.isfinite(_f32(t))) for t in [fused, *grads])
    assert_close(fused, attention_reference(q, k, v), "float32")
    blockwise = fused_attention(q, k, v, block_size=4)
    assert np.all(np.isfinite(_f32(blockwise)))


def test_returned_weights_and_dropout():
    q, k, v = tensors(*[(2, 10, 2, 4)] * 3)
    _, weights = fused_attention(q, k, v, return_weights=True)
    assert_close(weights, attention_weights(q, k), "float32")
    np.testing.assert_allclose(_f32(weights).sum(-1), 1.0, rtol=1e-6)
    seed = ops.convert_to_tensor(np.array([1, 2], "int32"))
    a = _f32(fused_attention(q, k, v, dropout_rate=0.5, seed=seed))
    np.testing.assert_array_equal(a, _f32(fused_attention(q, k, v, dropout_rate=0.5, seed=seed)))
    assert not np.allclose(a, _f32(fused_attention(q, k, v)))
    with pytest.raises(ValueError, match="needs a seed"):
        fused_attention(q, k, v, dropout_rate=0.1)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="the padding of JAX's cuDNN path")
@pytest.mark.parametrize("tokens", [197, 5, 16])
def test_jax_padded_attention_matches(tokens):
    """The cuDNN path's token padding with masked keys, run with XLA's implementation."""
    from keras_vit.kernels import _jax

    platform = _jax.jax.default_backend()  # the rule of attention_implementation's auto choice
    expected = {"gpu": "cudnn", "cpu": "plain"}.get(platform, "xla")
    assert _jax.attention_implementation("bfloat16", 64) == expected
    inputs = tensors(*[(2, tokens, 3, 8)] * 3)
    padded, grads = value_and_grads(
        lambda q, k, v: _jax.dot_product_attention(q, k, v, pad_to=_jax.CUDNN_PAD), inputs
    )
    ref, ref_grads = value_and_grads(lambda q, k, v: attention_reference(q, k, v), inputs)
    assert tuple(padded.shape) == (2, tokens, 3, 8)
    for a, b in zip([padded, *grads], [ref, *ref_grads]):
        assert_close(a, b, "float32")


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX's cuDNN path")
def test_jax_cudnn_path_with_a_mask_falls_back_to_xla():
    """cuDNN refuses 197 unpadded tokens, and a mask is not padded: XLA computes it."""
    from keras_vit.kernels import _jax

    inputs = tensors(*[(2, 197, 3, 8)] * 3)
    mask = np.random.default_rng(0).uniform(size=(1, 1, 197, 197)) > 0.3
    out = _jax.dot_product_attention(*inputs, mask=mask, implementation="cudnn", pad_to=8)
    ref, _ = _jax.dense_attention(*inputs, mask, 0.0, None)
    assert_close(out, ref, "float32")


def _block_outputs(dtype, approximate, block_size, fused):
    """Output, input gradient and weight gradients of one encoder block, fixed weights."""
    layer = Encoder1DBlock(
        48, 3, approximate_gelu=approximate, attention_impl="reference", dtype=dtype
    )
    x = tensors((2, 21, 24), dtype="bfloat16")[0]  # bfloat16-exact values in every dtype
    x = ops.cast(x, dtype)
    layer.build(x.shape)
    rng = np.random.default_rng(0)
    for w in layer.weights:
        w.assign(ops.cast(ops.cast(rng.normal(size=w.shape) * 0.3, "bfloat16"), dtype))

    def run(x):
        if fused:
            return encoder_block(x, layer.fused_params(x.dtype), approximate, block_size=block_size)
        return layer(x)

    variables = [w.value for w in layer.trainable_weights]
    out, grads = value_and_grads(with_weights(layer, run), [x, *variables], seed=2)
    names = [w.path for w in layer.trainable_weights]
    return [_f32(out), *map(_f32, grads)], names


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("approximate", [True, False])
@pytest.mark.parametrize("block_size", [None, 8])
def test_encoder_block_matches_the_layers(dtype, approximate, block_size):
    fused, names = _block_outputs(dtype, approximate, block_size, fused=True)
    reference, _ = _block_outputs(dtype, approximate, block_size, fused=False)
    exact = _block_outputs("float32", approximate, block_size, fused=False)[0]
    # Weight gradients relative to the largest of the block: the key bias's exact
    # gradient is zero (softmax ignores a shift shared by all keys), so its own
    # scale is noise.
    scale = max(np.abs(g).max() for g in reference[2:])
    for i, (a, b, c) in enumerate(zip(fused, reference, exact)):
        what = ["output", "input gradient", *names][i]
        norm = np.abs(b).max() if i < 2 else scale
        if dtype == "float32":
            assert np.abs(a - b).max() <= TOLERANCE[dtype] * norm, what
        else:
            error = np.abs(a - c).max() / norm
            assert error <= TOLERANCE[dtype], what
            assert error <= BF16_VS_REFERENCE * max(np.abs(b - c).max() / norm, 1e-3), what


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="the JAX kernels' GPU products")
def test_jax_gpu_products_stay_within_the_bfloat16_bound(monkeypatch):
    """The block with bfloat16 matmul products, as on a GPU (run here on a CPU)."""
    from keras_vit.kernels import _jax

    dtypes = []
    monkeypatch.setattr(_jax, "_product_dtype", lambda x: dtypes.append(x.dtype) or x.dtype)
    _jax._block.clear_cache()  # traced afresh with the products, and again after
    try:
        fused, names = _block_outputs("bfloat16", True, None, fused=True)
    finally:
        _jax._block.clear_cache()
    assert dtypes and {str(d) for d in dtypes} == {"bfloat16"}
    exact = _block_outputs("float32", True, None, fused=False)[0]
    scale = max(np.abs(g).max() for g in exact[2:])  # see the test above
    for i, (a, c) in enumerate(zip(fused, exact)):
        norm = np.abs(c).max() if i < 2 else scale
        what = ["output", "input gradient", *names][i]
        assert np.abs(a - c).max() / norm <= TOLERANCE["bfloat16"], what


@pytest.mark.parametrize("size", [(32, 48), (16, 16)])
def test_patch_embed_matches_the_strided_convolution(size):
    images, kernel, bias, cls, posemb = tensors(
        (2, *size, 3), (8, 8, 3, 10), (10,), (1, 1, 10), (1, 1 + size[0] * size[1] // 64, 10)
    )
    fused, grads = value_and_grads(patch_embed, [images, kernel, bias, cls, posemb])
    ref, ref_grads = value_and_grads(patch_embed_reference, [images, kernel, bias, cls, posemb])
    assert_close(fused, ref, "float32")
    for a, b in zip(grads, ref_grads):
        assert_close(a, b, "float32")
    with pytest.raises(ValueError, match="not divisible by the patch size 8"):
        patch_embed(ops.zeros((1, 20, 16, 3)), kernel, bias)


SWITCH_CONFIG = dict(
    image_size=32,
    patch_size=8,
    hidden_size=48,
    num_layers=2,
    num_heads=3,
    mlp_dim=96,
    num_classes=7,
)


def assert_model_switch() -> None:
    """The fused and reference ViTs, same weights: outputs and weight gradients agree."""
    fused, reference = ViT(**SWITCH_CONFIG), ViT(**SWITCH_CONFIG, attention_impl="reference")
    rng = np.random.default_rng(0)
    for a, b in zip(fused.weights, reference.weights):
        value = rng.normal(size=a.shape) * 0.2
        a.assign(value)
        b.assign(value)
    x = tensors((2, 32, 32, 3))[0]
    outputs, gradients = [], []
    for model in (fused, reference):
        variables = [w.value for w in model.trainable_weights]
        out, grads = value_and_grads(with_weights(model, model), [x, *variables])
        outputs.append(out)
        gradients.append([_f32(g) for g in grads[1:]])
    assert_close(outputs[0], outputs[1], "float32")
    scale = max(np.abs(g).max() for g in gradients[1])  # see the block test
    for a, b, w in zip(*gradients, fused.trainable_weights):
        assert np.abs(a - b).max() <= 1e-5 * scale, w.path


def test_model_switch_gives_the_same_outputs_and_gradients():
    assert_model_switch()
    with pytest.raises(ValueError, match="attention_impl must be one of"):
        ViT(**SWITCH_CONFIG, attention_impl="flash")


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="the JAX encoder's one padding")
def test_jax_encoder_padded_once_matches(monkeypatch):
    """The encoder kernel padding its 17 tokens to 24 once, as for cuDNN (XLA's attention here)."""
    from keras_vit.kernels import _jax

    padding = []

    def pad_for_cudnn(x, blocks, options):
        padding.append(-x.shape[1] % _jax.CUDNN_PAD)
        return padding[-1]

    monkeypatch.setattr(_jax, "_cudnn_padding", pad_for_cudnn)
    _jax._encoder.clear_cache()  # traced afresh with the padding, and again after
    try:
        assert_model_switch()
    finally:
        _jax._encoder.clear_cache()
    assert padding and set(padding) == {7}


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.distribute is TensorFlow's")
def test_fused_kernels_under_mirrored_strategy():
    """Two logical CPU devices; the fused model's replicated step equals the single-device one."""
    script = textwrap.dedent(
        """
        import os
        os.environ["KERAS_BACKEND"] = "tensorflow"
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from keras_vit.models import ViT
        config = dict(image_size=32, patch_size=8, hidden_size=32, num_layers=1, num_heads=2, mlp_dim=64, num_classes=5)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            model = ViT(**config)
        rng = np.random.default_rng(0)
        for w in model.weights:
            w.assign(rng.normal(size=w.shape).astype("float32") * 0.2)
        x = tf.constant(rng.normal(size=(4, 32, 32, 3)), tf.float32)

        def step(images):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(model(images, training=True) ** 2)
            return tape.gradient(loss, model.trainable_variables)

        dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(x).unbatch().batch(4))
        replicated = strategy.run(tf.function(step), args=(next(iter(dataset)),))
        summed = [strategy.reduce("SUM", g, axis=None) for g in replicated]
        single = step(x)
        scale = max(float(tf.reduce_max(tf.abs(b))) for b in single)
        error = max(float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(summed, single)) / scale
        print("REPLICAS", strategy.num_replicas_in_sync, "ERROR", error)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    line = [x for x in result.stdout.splitlines() if x.startswith("REPLICAS")]
    assert line, result.stderr[-3000:]
    _, replicas, _, error = line[0].split()
    assert int(replicas) == 2 and float(error) <= 1e-5


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's XLA functions")
def test_tf_kernels_are_inlined_where_xla_compiles_the_caller():
    """Called from a jit-compiled function the kernel is traced into it, not nested."""
    import tensorflow as tf

    from keras_vit.kernels import _tf

    compiled = _tf._attention.compiled
    q, k, v = (tf.random.stateless_normal([1, 11, 3, 5], seed=[i, 0]) for i in range(3))
    before = compiled.experimental_get_tracing_count()
    outer = tf.function(lambda q, k, v: fused_attention(q, k, v), jit_compile=True)(q, k, v)
    assert compiled.experimental_get_tracing_count() == before  # inlined
    plain = tf.function(lambda q, k, v: fused_attention(q, k, v))(q, k, v)
    assert compiled.experimental_get_tracing_count() == before + 1  # the compiled kernel
    reference = attention_reference(q, k, v)
    assert relative_error(outer, reference) < TOLERANCE["float32"]
    assert relative_error(plain, reference) < TOLERANCE["float32"]
