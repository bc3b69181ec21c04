"""Triton ``config.pbtxt`` for an exported model, validated with Triton's own protobuf.

Example:
    >>> text = python_backend_config("vit", (224, 224), 1000, "uint8", max_batch_size=8)
    >>> "backend: \\"python\\"" in text and "label_filename: \\"labels.txt\\"" in text
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from google.protobuf import text_format

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import ModelConfig

IMAGE_INPUTS = ("uint8", "jpeg")
BACKENDS = ("python", "tensorflow")
KINDS = ("KIND_CPU", "KIND_GPU")
# How long Triton holds a request to combine it with others into one batch.
QUEUE_DELAY_US = 2000


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
dynamic_batching {{ max_queue_delay_microseconds: {QUEUE_DELAY_US} }}
instance_group [ {{ kind: {kind} count: {instances} }} ]
"""
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
