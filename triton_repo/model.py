"""Triton Python-backend model serving a keras_vit SavedModel.

``keras_vit.serving.export`` copies this file into each version directory
(``<repo>/<name>/<version>/model.py``) beside ``model.savedmodel/``. Each model
instance loads the SavedModel once; each dynamic batch of requests runs as one
call of its serving signature. A request whose image cannot be decoded gets its
own error response, and the other requests of the batch are answered.
"""

import json
import os

import numpy as np
import tensorflow as tf
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        directory = os.path.join(
            args["model_repository"], args["model_version"], "model.savedmodel"
        )
        self.input_name = config["input"][0]["name"]
        self.output_names = [output["name"] for output in config["output"]]
        signature = "serving_default" if self.input_name == "images" else "serve_bytes"
        self.function = tf.saved_model.load(directory).signatures[signature]

    def _run(self, batch):
        outputs = self.function(tf.constant(batch))
        return {name: outputs[name].numpy() for name in self.output_names}

    def execute(self, requests):
        inputs = [
            pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests
        ]
        sizes = [len(x) for x in inputs]
        try:
            outputs = self._run(np.concatenate(inputs))
        except tf.errors.InvalidArgumentError:
            return [self._single(x) for x in inputs]  # isolate the undecodable image(s)
        responses, start = [], 0
        for size in sizes:
            tensors = [pb_utils.Tensor(n, v[start : start + size]) for n, v in outputs.items()]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses

    def _single(self, batch):
        try:
            outputs = self._run(batch)
        except tf.errors.InvalidArgumentError as error:
            message = f"cannot decode image: {error.message.splitlines()[0]}"
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
            )
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(n, v) for n, v in outputs.items()]
        )
