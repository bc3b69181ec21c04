"""The same models on JAX (and PyTorch where it is installed) as on TensorFlow.

The Keras backend is fixed per process, so each check runs in a subprocess with
``KERAS_BACKEND`` set and TensorFlow made unimportable: a model built, run,
analysed and trained; and the backend-sensitive tests of this suite (kernel
parity in float32 and bfloat16, forward and gradients; the official and timm
fixture logits of ViT, hybrid and BiT, through the checkpoint loaders) rerun
unchanged under the other backend. On TensorFlow, keras_vit turns on its oneDNN
kernels unless told otherwise.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Kernel parity: every kernel forward and backward, float32 and bfloat16; the
# fixture logits of the three families. A subset of the parametrizations keeps
# the added time small; the same tests run in full on TensorFlow.
BACKEND_SENSITIVE = [
    "tests/test_kernels.py::test_fused_attention_forward_and_gradients",
    "tests/test_kernels.py::test_blockwise_path_matches[16]",
    "tests/test_kernels.py::test_masks",
    "tests/test_kernels.py::test_large_logits_stay_finite",
    "tests/test_kernels.py::test_returned_weights_and_dropout",
    "tests/test_kernels.py::test_encoder_block_matches_the_layers[None-True-float32]",
    "tests/test_kernels.py::test_encoder_block_matches_the_layers[None-True-bfloat16]",
    "tests/test_kernels.py::test_encoder_block_matches_the_layers[8-False-bfloat16]",
    "tests/test_kernels.py::test_patch_embed_matches_the_strided_convolution",
    "tests/test_kernels.py::test_jax_padded_attention_matches",
    "tests/test_kernels.py::test_jax_encoder_padded_once_matches",
    "tests/test_kernels.py::test_jax_gpu_products_stay_within_the_bfloat16_bound",
    "tests/test_parity.py::test_official_logits",
    "tests/test_parity.py::test_official_pre_logits_and_tokens",
    "tests/test_parity.py::test_timm_logits",
    "tests/test_resnet.py::test_official_hybrid_logits",
    "tests/test_resnet.py::test_timm_bit_logits_and_stages",
]

# TensorFlow made unimportable: any import of it raises ImportError.
BLOCK_TENSORFLOW = 'import sys; sys.modules["tensorflow"] = None; '

# Imports keras_vit, builds, runs (eagerly, predict), analyses and trains a model.
NO_TENSORFLOW = BLOCK_TENSORFLOW + textwrap.dedent(
    """
    import numpy as np, keras
    import keras_vit
    from keras_vit.analysis import attention_weights
    model = keras_vit.models.create_model("ViT-Mu/16", image_size=32, num_classes=3)
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    eager = keras.ops.convert_to_numpy(model(x))
    logits = model.predict(x, verbose=0)
    weights = attention_weights(model, x)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    loss = model.fit(x, np.arange(4) % 3, batch_size=2, epochs=1, verbose=0).history["loss"]
    finite = all(np.isfinite(o).all() for o in [eager, logits, *weights, loss])
    loaded = [m for m, v in sys.modules.items() if m.split(".")[0] == "tensorflow" and v]
    print("RESULT", keras.backend.backend(), finite, bool(loaded))
    """
)


def _run(backend: str, script: str, timeout: int) -> subprocess.CompletedProcess:
    """``python -c script`` from the project root with ``KERAS_BACKEND=backend``."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def _require(backend: str) -> None:
    module = {"jax": "jax", "torch": "torch"}[backend]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install keras-vit[{backend}])")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_runs_without_tensorflow(backend):
    _require(backend)
    result = _run(backend, NO_TENSORFLOW, timeout=600)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT")]
    assert lines, result.stderr[-3000:]
    assert lines[0].split()[1:] == [backend, "True", "False"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_backend_sensitive_tests_pass(backend):
    """The parity tests, on ``backend`` with TensorFlow unimportable."""
    _require(backend)
    pytest_args = ["-q", "-p", "no:cacheprovider", *BACKEND_SENSITIVE]
    script = BLOCK_TENSORFLOW + f"import pytest; sys.exit(pytest.main({pytest_args!r}))"
    result = _run(backend, script, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:]


@pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"), reason="oneDNN is turned on on x86 only"
)
def test_tensorflow_gets_onednn_unless_told_otherwise():
    """``import keras_vit`` before TensorFlow turns its oneDNN kernels on; an explicit 0 stays."""
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    # TensorFlow's own answer (a private module: there is no public one).
    mkl = "from tensorflow.python.util import _pywrap_util_port as p; print(p.IsMklEnabled())"
    setting = "import os; print(os.environ['TF_ENABLE_ONEDNN_OPTS'])"
    for script, environ, expected in (
        (f"import keras_vit; {mkl}", env, "True"),
        (f"import keras_vit; {setting}", {**env, "TF_ENABLE_ONEDNN_OPTS": "0"}, "0"),
    ):
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=environ, cwd=ROOT
        )
        assert result.stdout.split() == [expected], result.stderr[-3000:]
