"""Exporting a model as ONNX: uint8 pixels in, ``logits`` and ``probabilities`` out.

The graph takes uint8 ``[batch, H, W, 3]`` (input ``images``, the batch axis
named ``batch``), scales it with ``preprocess_input`` inside the graph as the
SavedModel's ``serving_default`` does, and returns ``logits`` and
``probabilities`` ``[batch, classes]``. It is converted with ``tf2onnx``
directly: Keras 3's ``model.export(format="onnx")`` runs the same converter on
the TensorFlow backend and gave the same graph (ViT-B/16: 1,065 nodes of the
same operators, 346.6 MB, onnxruntime latency equal within the noise of a
loaded machine), but needs a wrapper model (called once) to hold the scaling
and the softmax, and patches numpy for tf2onnx while it runs.

The fused XLA kernels (``attention_impl="fused"``) are compiled functions that
no ONNX converter reads, so the graph is traced from a twin of the model built
with ``attention_impl="reference"`` (the same computation layer by layer)
carrying the same weights.

tf2onnx writes each Keras LayerNormalization as 12 nodes (its two means as
GlobalAveragePool), a form that onnxruntime does not fuse; ``fuse_layer_norms``
rewrites each as one ``LayerNormalization`` node (opset 17), onnxruntime's one-pass
kernel. Measured on 2 loaded cores: ViT-B/16's LayerNorms took 69 ms of a batch-1
run before, 10 ms after (onnxruntime's profiler; its MatMuls take the rest of
about 1.5 s), which end to end is within the machine's noise; a tiny ViT
(ViT-Mu/16 at 32) ran in 0.6 ms instead of 1.0 ms.

Example:
    >>> import tempfile
    >>> import numpy as np
    >>> import onnxruntime
    >>> from keras_vit.models import create_model
    >>> model = create_model("ViT-Mu/16", image_size=32, num_classes=3)
    >>> path = write_onnx(model, os.path.join(tempfile.mkdtemp(), "model.onnx"))
    >>> session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    >>> [(i.name, i.shape, i.type) for i in session.get_inputs()]
    [('images', ['batch', 32, 32, 3], 'tensor(uint8)')]
    >>> [(o.name, o.shape) for o in session.get_outputs()]
    [('logits', ['batch', 3]), ('probabilities', ['batch', 3])]
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import keras
import numpy as np

from keras_vit.imagenet import preprocess_input

if TYPE_CHECKING:  # onnx is an optional dependency (the "serve" extra)
    import onnx

# Opset 17 has LayerNormalization and is read by every onnxruntime of the last
# three years (1.12+), Triton 22.07+ included.
OPSET = 17
BATCH = "batch"


def reference_twin(model: keras.Model) -> keras.Model:
    """The model with every ``attention_impl="fused"`` layer rebuilt as ``"reference"``.

    Args:
        model: a keras_vit model (functional).

    Returns:
        ``model`` itself when no layer is fused; otherwise a clone with the same
        weights whose layers compute without the XLA-compiled kernels.
    """
    fused = [layer for layer in model.layers if getattr(layer, "attention_impl", "") == "fused"]
    if not fused:
        return model

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        if config.get("attention_impl") == "fused":
            config["attention_impl"] = "reference"
        return layer.__class__.from_config(config)

    twin = keras.models.clone_model(model, clone_function=clone)
    twin.set_weights(model.get_weights())
    return twin


def _name_batch_axis(proto) -> None:
    """Gives the first axis of every graph input and output the one name ``batch``."""
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH


def write_onnx(model: keras.Model, path: str | os.PathLike, opset: int = OPSET) -> str:
    """Converts ``model`` (float images in [-1, 1] to logits) to an ONNX file.

    Args:
        model: a keras_vit classifier in float32.
        path: the ``.onnx`` file to write (its folder must exist).
        opset: the ONNX opset, 17 or later.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: for an opset below 17 or a model whose weights are not float32.
    """
    import tensorflow as tf
    import tf2onnx

    if opset < OPSET:
        raise ValueError(f"opset must be {OPSET} or later; got {opset}")
    if model.dtype_policy.compute_dtype != "float32":
        raise ValueError(
            f"ONNX export needs a float32 model; got {model.dtype_policy.compute_dtype}"
        )
    twin = reference_twin(model)
    height, width = model.input_shape[1:3]
    spec = tf.TensorSpec([None, height, width, 3], tf.uint8, name="images")

    @tf.function(input_signature=[spec])
    def outputs(images: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = twin(preprocess_input(images), training=False)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

    proto, _ = tf2onnx.convert.from_function(outputs, input_signature=[spec], opset=opset)
    _name_batch_axis(proto)
    fuse_layer_norms(proto)
    import onnx

    onnx.save(proto, str(path))
    return str(path)


class _NotLayerNormError(Exception):
    """The nodes met are not a LayerNorm of the form tf2onnx writes."""


class _Producers:
    """Which node makes each tensor of a graph, its constants and its tensors' shapes."""

    def __init__(self, proto: onnx.ModelProto):
        import onnx

        graph = onnx.shape_inference.infer_shapes(proto).graph
        values = (*graph.input, *graph.value_info, *graph.output)
        self.shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}
        self.node = {name: node for node in proto.graph.node for name in node.output}
        self.constants = {tensor.name: tensor for tensor in proto.graph.initializer}

    def made_by(self, name: str, op_type: str) -> onnx.NodeProto:
        """The node of ``op_type`` that makes ``name``."""
        node = self.node.get(name)
        if node is None or node.op_type != op_type:
            raise _NotLayerNormError
        return node

    def pair(self, node: onnx.NodeProto, op_type: str, constant: bool = False) -> tuple:
        """A commutative two-input ``node`` as (the ``op_type`` node making one input, the other)."""
        for first, second in (node.input, reversed(node.input)):
            made = self.node.get(first)
            if made is not None and made.op_type == op_type:
                if not constant or second in self.constants:
                    return made, second
        raise _NotLayerNormError

    def array(self, name: str) -> np.ndarray:
        """The value of a constant."""
        from onnx import numpy_helper

        return numpy_helper.to_array(self.constants[name])


def _match_layer_norm(scaled: str, shift: str, graph: _Producers) -> tuple:
    """``scaled + shift`` as tf2onnx's form of ``keras.ops.layer_normalization``.

    The form, over the last axis of a rank-3 ``x`` (which GlobalAveragePool averages)::

        mean = GAP(x); variance = GAP((x - mean) * (x - mean))
        inv = Reciprocal(Sqrt(variance + epsilon)) * gamma
        scaled = x * inv; shift = Neg(mean) * inv [+ beta]

    Returns:
        The names of x, gamma, beta (None without one) and epsilon.

    Raises:
        _NotLayerNormError: for any other graph.
    """
    times_x, beta = graph.made_by(scaled, "Mul"), None
    if shift in graph.node and graph.node[shift].op_type == "Add":
        times_neg, beta = graph.pair(graph.node[shift], "Mul", constant=True)
    else:
        times_neg = graph.made_by(shift, "Mul")
    neg, inv = graph.pair(times_neg, "Neg")
    if inv not in times_x.input:
        raise _NotLayerNormError
    x = times_x.input[1] if times_x.input[0] == inv else times_x.input[0]
    mean = graph.made_by(neg.input[0], "GlobalAveragePool")
    reciprocal, gamma = graph.pair(graph.made_by(inv, "Mul"), "Reciprocal", constant=True)
    sqrt = graph.made_by(reciprocal.input[0], "Sqrt")
    variance, epsilon = graph.pair(graph.made_by(sqrt.input[0], "Add"), "GlobalAveragePool", True)
    square = graph.made_by(variance.input[0], "Mul")
    centred = graph.made_by(square.input[0], "Sub")
    if (
        square.input[0] != square.input[1]
        or list(centred.input) != [x, mean.output[0]]
        or mean.input[0] != x
        or len(graph.shapes.get(x, ())) != 3
    ):
        raise _NotLayerNormError
    return x, gamma, beta, epsilon


def _layer_norm_node(
    node: onnx.NodeProto, graph: _Producers, constants: list[onnx.TensorProto]
) -> onnx.NodeProto:
    """The LayerNormalization node that replaces ``node``, or ``node`` where it ends no LayerNorm.

    Its scale and bias (1-D, the normalized axis's size) are appended to ``constants``.
    """
    from onnx import helper, numpy_helper

    for scaled, shift in (node.input, reversed(node.input)) if node.op_type == "Add" else ():
        try:
            x, gamma, beta, epsilon = _match_layer_norm(scaled, shift, graph)
        except _NotLayerNormError:
            continue
        size, scale, epsilon = graph.shapes[x][-1], graph.array(gamma), graph.array(epsilon)
        bias = np.zeros_like(scale) if beta is None else graph.array(beta)
        if not size or (scale.size, bias.size, epsilon.size) != (size, size, 1):
            continue
        names = [f"{node.name}/LayerNormalization/{part}" for part in ("scale", "bias")]
        constants += [
            numpy_helper.from_array(v.reshape(-1), n) for v, n in zip((scale, bias), names)
        ]
        return helper.make_node(
            "LayerNormalization",
            [x, *names],
            list(node.output),
            name=f"{node.name}/LayerNormalization",
            axis=-1,
            epsilon=float(epsilon.reshape(-1)[0]),
        )
    return node


def _reads(node: onnx.NodeProto) -> list[str]:
    """The tensors ``node`` reads, those of its subgraphs (If, Loop, Scan) included."""
    names = list(node.input)
    for attribute in node.attribute:
        for graph in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
            names += [name for inner in graph.node for name in _reads(inner)]
    return names


def fuse_layer_norms(proto: onnx.ModelProto) -> int:
    """Rewrites each LayerNorm of tf2onnx's form as one ``LayerNormalization`` node.

    onnxruntime recognizes neither this form nor its GlobalAveragePool means, so
    without the rewrite each LayerNorm runs as a dozen small kernels instead of its
    one-pass LayerNormalization kernel. Nodes and constants that nothing reads
    any more are then removed.

    Args:
        proto: a model from ``tf2onnx`` with opset 17 or later; changed in place.

    Returns:
        The number of LayerNorms rewritten.
    """
    graph, constants = _Producers(proto), []
    nodes = [_layer_norm_node(node, graph, constants) for node in proto.graph.node]
    needed, kept = {value.name for value in proto.graph.output}, []
    for node in reversed(nodes):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(_reads(node))
    del proto.graph.node[:]
    proto.graph.node.extend(reversed(kept))
    initializers = [t for t in (*proto.graph.initializer, *constants) if t.name in needed]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(initializers)
    return len(constants) // 2  # a scale and a bias for each
