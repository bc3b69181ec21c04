"""Triton ``config.pbtxt`` for an exported model, validated with Triton's own protobuf.

``python_backend_config``: the SavedModel (or, with ``warmup``, the ONNX model run
by onnxruntime) inside Triton's Python backend. ``onnx_config``: Triton's own
ONNX Runtime backend (``platform: "onnxruntime_onnx"``), CPU or GPU, with the
TensorRT or CUDA execution provider as an option.

Example:
    >>> text = python_backend_config("vit", (224, 224), 1000, "uint8", max_batch_size=8)
    >>> "backend: \\"python\\"" in text and "label_filename: \\"labels.txt\\"" in text
    True
    >>> config = validate(onnx_config("vit", (224, 224), 1000, 16, kind="KIND_GPU", accelerator="tensorrt"))
    >>> config.platform, list(config.dynamic_batching.preferred_batch_size)
    ('onnxruntime_onnx', [4, 8, 16])
    >>> config.optimization.execution_accelerators.gpu_execution_accelerator[0].name
    'tensorrt'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from google.protobuf import text_format

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import ModelConfig

IMAGE_INPUTS = ("uint8", "jpeg")
BACKENDS = ("python", "tensorflow")
KINDS = ("KIND_CPU", "KIND_GPU")
ACCELERATORS = ("none", "tensorrt", "cuda")
# configs/<name>.pbtxt of an ONNX export: the Python backend (tritonserver --model-config-name).
PYTHON_CONFIG = "python"
# How long Triton holds a request to combine it with others into one batch.
QUEUE_DELAY_US = 2000
# GPU execution providers of Triton's ONNX Runtime backend: TensorRT builds an
# engine per input shape (cached on disk so that a restart does not rebuild it);
# the CUDA provider's settings are those the backend documents.
GPU_ACCELERATORS = {
    "tensorrt": (
        'name: "tensorrt" parameters { key: "precision_mode" value: "FP16" } '
        'parameters { key: "max_workspace_size_bytes" value: "1073741824" } '
        'parameters { key: "trt_engine_cache_enable" value: "1" } '
        'parameters { key: "trt_engine_cache_path" value: "/tmp/keras_vit_trt_cache" }'
    ),
    "cuda": (
        'name: "cuda" parameters { key: "cudnn_conv_use_max_workspace" value: "1" } '
        'parameters { key: "use_ep_level_unified_stream" value: "1" }'
    ),
}


def _input(image_input: str, image_size: tuple[int, int]) -> str:
    if image_input == "uint8":
        return f'input [ {{ name: "images" data_type: TYPE_UINT8 dims: [ {image_size[0]}, {image_size[1]}, 3 ] }} ]'
    return 'input [ { name: "image_bytes" data_type: TYPE_STRING dims: [ 1 ] reshape: { shape: [ ] } } ]'


def python_backend_config(
    name: str,
    image_size: tuple[int, int],
    num_classes: int,
    image_input: str = "uint8",
    max_batch_size: int = 32,
    instances: int = 1,
    kind: str = "KIND_CPU",
    backend: str = "python",
    warmup: bool = False,
) -> str:
    """The text of ``config.pbtxt``, checked by parsing it as ``inference.ModelConfig``.

    Args:
        name: the model name in the repository.
        image_size: ``(height, width)`` of the model input.
        num_classes: length of the ``logits`` and ``probabilities`` outputs.
        image_input: ``"uint8"`` (images ``[N, H, W, 3]``) or ``"jpeg"`` (encoded bytes).
        max_batch_size: the largest batch Triton forms or accepts.
        instances: model instances (each loads the SavedModel once).
        kind: ``"KIND_CPU"`` or ``"KIND_GPU"``.
        backend: ``"python"`` (``model.py`` beside the SavedModel) or
            ``"tensorflow"`` (Triton's TensorFlow backend, shipped in containers
            up to the 25.02 release).
        warmup: add preferred batch sizes and a warm-up request at load (the
            ONNX model's configurations; the SavedModel's ``model.py`` compiles
            its batch buckets itself).

    Returns:
        The validated text.

    Raises:
        ValueError: for an unknown option or a configuration Triton would reject.
    """
    for value, allowed, what in (
        (image_input, IMAGE_INPUTS, "image_input"),
        (backend, BACKENDS, "backend"),
        (kind, KINDS, "kind"),
    ):
        if value not in allowed:
            raise ValueError(f"{what} must be one of {allowed}; got {value!r}")
    if max_batch_size < 1 or instances < 1:
        raise ValueError("max_batch_size and instances must be at least 1")
    if backend == "tensorflow":
        signature = "serving_default" if image_input == "uint8" else "serve_bytes"
        engine = (
            'platform: "tensorflow_savedmodel"\ndefault_model_filename: "model.savedmodel"\n'
            + (
                f'parameters: {{ key: "TF_SIGNATURE_DEF" value: {{ string_value: "{signature}" }} }}'
            )
        )
    else:
        engine = 'backend: "python"'
    text = f"""name: "{name}"
{engine}
max_batch_size: {max_batch_size}
{_input(image_input, image_size)}
output [
  {{ name: "logits" data_type: TYPE_FP32 dims: [ {num_classes} ] }},
  {{ name: "probabilities" data_type: TYPE_FP32 dims: [ {num_classes} ] label_filename: "labels.txt" }}
]
dynamic_batching {{ {_preferred(max_batch_size) if warmup else ""}max_queue_delay_microseconds: {QUEUE_DELAY_US} }}
instance_group [ {{ kind: {kind} count: {instances} }} ]
"""
    if warmup:
        text += _warmup(image_size)
    validate(text)
    return text


def _preferred(max_batch_size: int) -> str:
    """Preferred batch sizes: powers of two from 4 up to the largest batch."""
    sizes = [size for size in (4, 8, 16, 32, 64, 128) if size <= max_batch_size]
    return f"preferred_batch_size: {sizes or [max_batch_size]} "


def _warmup(image_size: tuple[int, int]) -> str:
    """One all-zeros request of one image, run at load before the model is READY."""
    dims = f"[ {image_size[0]}, {image_size[1]}, 3 ]"
    return (
        'model_warmup [ { name: "zeros" batch_size: 1 inputs { key: "images" value: '
        f"{{ data_type: TYPE_UINT8 dims: {dims} zero_data: true }} }} }} ]\n"
    )


def onnx_config(
    name: str,
    image_size: tuple[int, int],
    num_classes: int,
    max_batch_size: int = 32,
    instances: int = 1,
    kind: str = "KIND_CPU",
    accelerator: str = "none",
) -> str:
    """``config.pbtxt`` for Triton's ONNX Runtime backend (``model.onnx``, uint8 input).

    Args:
        name: the model name in the repository.
        image_size: ``(height, width)`` of the model input.
        num_classes: length of the ``logits`` and ``probabilities`` outputs.
        max_batch_size: the largest batch Triton forms or accepts.
        instances: model instances.
        kind: ``"KIND_CPU"`` or ``"KIND_GPU"``.
        accelerator: ``"none"``, or on ``KIND_GPU`` the ``"tensorrt"`` or
            ``"cuda"`` execution provider (``optimization.execution_accelerators``).

    Returns:
        The validated text.

    Raises:
        ValueError: for an unknown option, an accelerator without ``KIND_GPU``, or
            a configuration Triton would reject.
    """
    if accelerator not in ACCELERATORS:
        raise ValueError(f"accelerator must be one of {ACCELERATORS}; got {accelerator!r}")
    if accelerator != "none" and kind != "KIND_GPU":
        raise ValueError(f"accelerator {accelerator!r} needs kind KIND_GPU; got {kind}")
    text = python_backend_config(
        name, image_size, num_classes, "uint8", max_batch_size, instances, kind, warmup=True
    ).replace(
        'backend: "python"', 'platform: "onnxruntime_onnx"\ndefault_model_filename: "model.onnx"'
    )
    if accelerator != "none":
        text += (
            "optimization { execution_accelerators { gpu_execution_accelerator: "
            f"[ {{ {GPU_ACCELERATORS[accelerator]} }} ] }} }}\n"
        )
    validate(text)
    return text


def validate(text: str) -> ModelConfig:
    """Parses ``text`` with the ``ModelConfig`` protobuf that tritonclient ships.

    Args:
        text: a ``config.pbtxt``.

    Returns:
        The parsed ``inference.ModelConfig`` message.

    Raises:
        ValueError: with the parser's message, for text Triton would reject.
    """
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as error:
        raise ValueError(f"invalid Triton model configuration: {error}") from None
