"""Triton Python-backend model serving a keras_vit SavedModel or ONNX model.

``keras_vit.serving.export`` copies this file into each version directory
(``<repo>/<name>/<version>/model.py``) beside ``model.savedmodel/`` or
``model.onnx``; which of the two is there decides the engine. Each model instance
loads the model once; each dynamic batch of requests runs as one call.

- ``model.onnx``: run with onnxruntime. TensorFlow is never imported in the
  instance process (its stub logs which of the two modules it holds, from
  ``sys.modules``, once the model is loaded).
- ``model.savedmodel``: its serving signature in TensorFlow. A request whose
  image cannot be decoded gets its own error response, and the other requests of
  the batch are answered. Batches are padded to a few bucket sizes (1, 2, then
  multiples of 4 up to max_batch_size), each run once at load: the fused XLA
  kernels compile once per batch shape, and unpadded dynamic batches of every
  size would each pay a compilation while serving (measured: concurrency-4
  throughput 0.81x in-process without buckets).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class OnnxEngine:
    """``model.onnx`` in an onnxruntime session (any batch size, nothing to compile).

    Args:
        path: the ONNX file.
        output_names: the outputs to return.
        gpu: use the CUDA execution provider where onnxruntime has it.
    """

    bad_input: tuple[type[Exception], ...] = ()  # Triton checks dtype and shape first

    def __init__(self, path: str, output_names: list[str], gpu: bool):
        import onnxruntime

        # onnxruntime's defaults otherwise (ORT_ENABLE_ALL, one intra-op thread per core,
        # sequential): ViT-B/16 was not measurably faster with spinning threads off, and
        # 30-100x slower on a small ViT in the parallel execution mode.
        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if gpu and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = onnxruntime.InferenceSession(path, options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = output_names

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The outputs of one batch."""
        values = self.session.run(self.output_names, {self.input_name: batch})
        return dict(zip(self.output_names, values))


class SavedModelEngine:
    """A SavedModel signature in TensorFlow, with its batch buckets compiled at load.

    Args:
        path: the SavedModel folder.
        config: the model's configuration (``args["model_config"]``, parsed).
        output_names: the outputs to return.
    """

    def __init__(self, path: str, config: dict, output_names: list[str]):
        import tensorflow as tf

        self.tf, self.output_names = tf, output_names
        self.bad_input = (tf.errors.InvalidArgumentError,)
        uint8 = config["input"][0]["name"] == "images"
        signature = "serving_default" if uint8 else "serve_bytes"
        self.function = tf.saved_model.load(path).signatures[signature]
        largest = max(1, int(config["max_batch_size"]))
        self.buckets = sorted({1, 2, largest, *range(4, largest, 4)})
        if uint8:
            example = np.zeros([int(d) for d in config["input"][0]["dims"]], np.uint8)
        else:
            example = np.array(tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)).numpy(), np.object_)
        for size in self.buckets:  # compile every bucket now, not while serving
            self.run(np.stack([example] * size))

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The outputs of one batch, padded to its bucket."""
        size = len(batch)
        bucket = next((b for b in self.buckets if b >= size), size)
        if bucket > size:
            batch = np.concatenate([batch, np.repeat(batch[:1], bucket - size, axis=0)])
        outputs = self.function(self.tf.constant(batch))
        return {name: outputs[name].numpy()[:size] for name in self.output_names}


class TritonPythonModel:
    """The model Triton's Python backend instantiates once per model instance."""

    def initialize(self, args: dict[str, str]) -> None:
        """Loads the model (ONNX or SavedModel) of this version.

        Args:
            args: Triton's arguments (``model_config`` JSON, ``model_repository``,
                ``model_version``, ``model_instance_kind``, ...).
        """
        config = json.loads(args["model_config"])
        folder = os.path.join(args["model_repository"], args["model_version"])
        self.input_name = config["input"][0]["name"]
        output_names = [output["name"] for output in config["output"]]
        onnx_path = os.path.join(folder, "model.onnx")
        if os.path.exists(onnx_path):
            gpu = args.get("model_instance_kind") == "GPU"
            self.engine = OnnxEngine(onnx_path, output_names, gpu)
        else:
            path = os.path.join(folder, "model.savedmodel")
            self.engine = SavedModelEngine(path, config, output_names)
        loaded = {name: name in sys.modules for name in ("onnxruntime", "tensorflow")}
        pb_utils.Logger.log_info(
            f"keras_vit model {config['name']} (pid {os.getpid()}) loaded {type(self.engine).__name__}; "
            f"modules: {json.dumps(loaded, sort_keys=True)}"
        )

    def execute(
        self, requests: list[pb_utils.InferenceRequest]
    ) -> list[pb_utils.InferenceResponse]:
        """Answers one dynamic batch of requests with one call of the model.

        Args:
            requests: the batch's requests.

        Returns:
            One response per request, in order; an error response for a request
            whose image cannot be decoded.
        """
        inputs = [
            pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests
        ]
        sizes = [len(x) for x in inputs]
        try:
            outputs = self.engine.run(np.concatenate(inputs))
        except self.engine.bad_input:
            return [self._single(x) for x in inputs]  # isolate the undecodable image(s)
        responses, start = [], 0
        for size in sizes:
            tensors = [pb_utils.Tensor(n, v[start : start + size]) for n, v in outputs.items()]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses

    def _single(self, batch: np.ndarray) -> pb_utils.InferenceResponse:
        try:
            outputs = self.engine.run(batch)
        except self.engine.bad_input as error:
            message = f"cannot decode image: {error.message.splitlines()[0]}"
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
            )
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(n, v) for n, v in outputs.items()]
        )
