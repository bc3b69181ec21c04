"""Shared test set-up: backend, fixture files, tiny models built once per session."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
import pytest  # noqa: E402

from keras_vit.variants import parse_model_name  # noqa: E402

if TYPE_CHECKING:
    import keras

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"

# The tiny config of the reference fixtures (see ../shared/fixtures/README.md): the
# Mu variant at 64 px with 10 classes.
TINY = dict(parse_model_name("ViT-Mu/16")[2], image_size=64, num_classes=10)


def fixture_path(name: str) -> Path:
    """A reference fixture, or a skip (a failure under CI=true) when it is absent.

    Args:
        name: the file name in ``../shared/fixtures``.

    Returns:
        Its path.
    """
    path = FIXTURES / name
    if not path.exists():
        message = f"reference fixture {path} is absent"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (required under CI=true)")
        pytest.skip(message)
    return path


def load_fixture(name: str) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` reference fixture (see ``fixture_path``).

    Args:
        name: the file name in ``../shared/fixtures``.

    Returns:
        Array name -> array.
    """
    with np.load(fixture_path(name), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def relative_error(actual: npt.ArrayLike, expected: npt.ArrayLike) -> float:
    """The parity metric of this suite.

    Args:
        actual: ours.
        expected: the reference.

    Returns:
        max |actual - expected| / max |expected|, in float64.
    """
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


# The files that take longest (subprocesses, servers, full-size variants), longest first.
# `make test` runs pytest-xdist with --dist loadfile --no-loadscope-reorder: each worker
# takes the next whole file in collection order, so these start first and the files
# left for the end are short ones (under a minute each), which the two workers share
# out evenly. The other files keep their alphabetical order. The order follows the
# per-file times of `pytest --durations=0` on 2 cores.
SLOWEST_FILES = (
    "test_distributed.py",
    "test_training_jax.py",
    "test_registry.py",
    "test_kernels.py",
    "test_serving_faults.py",
    "test_training.py",
    "test_serving.py",
    "test_serving_onnx.py",
    "test_backends.py",
    "test_checkpoint_families.py",
    "test_gpu_benchmark.py",
    "test_data.py",
    "test_training_faults.py",
    "test_paper_claims.py",
    "test_finetune_cli.py",
    "test_resnet.py",
    "test_variants.py",
    "test_docs.py",
    "test_from_checkpoint.py",
    "test_bad_files.py",
)


def pytest_configure(config: pytest.Config) -> None:
    """Gives the tests' subprocesses Ctrl-C back when the run itself was started with it ignored,
    and one XLA compilation cache to every process of the run.

    A shell starts a background job (``pytest &``) with SIGINT ignored, every child
    inherits that, and Python leaves an ignored SIGINT ignored: the serving tests'
    ``keras-vit serve`` then never sees the Ctrl-C they send. A handler, unlike
    SIG_IGN, is reset to the default in a child at exec.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    _share_compiled_programs(config)


def _share_compiled_programs(config: pytest.Config) -> None:
    """TensorFlow's and JAX's persistent XLA caches in one folder for the whole run.

    Many tests start training processes that compile the same tiny steps again;
    with the cache only the first compiles (about 4 s saved per later TensorFlow
    process on 2 cores). The first process of the run (xdist's controller, whose
    environment its workers and their subprocesses inherit) makes the folder and
    removes it at the end. Entries are written atomically and loaded only when
    their whole HLO module matches (TensorFlow) or their key, a hash of module,
    options and versions, does (JAX).
    """
    if "KERAS_VIT_TEST_XLA_CACHE" in os.environ:
        return
    folder = tempfile.mkdtemp(prefix="keras-vit-xla-cache-")
    os.environ["KERAS_VIT_TEST_XLA_CACHE"] = folder
    flags = os.environ.get("TF_XLA_FLAGS", "")
    os.environ["TF_XLA_FLAGS"] = f"{flags} --tf_xla_persistent_cache_directory={folder}/tf"
    os.environ["JAX_COMPILATION_CACHE_DIR"] = f"{folder}/jax"
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Runs the files of ``SLOWEST_FILES`` first, in that order (a stable sort)."""
    rank = {name: i for i, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def official_vit() -> tuple[keras.Model, dict[str, np.ndarray]]:
    """The tiny official ViT with the fixture's weights, and its reference outputs.

    Returns:
        ``(model, the arrays of official_tiny_vit.io.npz)``.
    """
    from keras_vit.checkpoints import load_npz
    from keras_vit.models import ViT

    model = ViT(**TINY)
    load_npz(model, fixture_path("official_tiny_vit.params.npz"))
    return model, load_fixture("official_tiny_vit.io.npz")


def read_scalars(folder: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """The scalars of a TensorBoard log folder.

    Args:
        folder: the folder of event files.

    Returns:
        Tag -> ``[(step, value)]`` in the order written.
    """
    import tensorflow as tf

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(folder).iterdir()):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "scalars":
                    number = float(tf.make_ndarray(value.tensor))
                    scalars.setdefault(value.tag, []).append((event.step, number))
    return scalars


def assert_training_logs(out: Path, final_step: int) -> dict[str, list[tuple[int, float]]]:
    """Checks a finished run's TensorBoard scalars and returns the training ones.

    Every training tag is there, its steps run in order to ``final_step``, the
    loss fell, and one evaluation was logged at ``final_step``.
    """
    train = read_scalars(out / "logs" / "train")
    for tag in ("loss", "accuracy", "learning_rate", "images_per_second", "grad_norm"):
        assert tag in train, tag
    steps = [s for s, _ in train["loss"]]
    assert steps == sorted(steps) and steps[-1] == final_step
    assert train["loss"][-1][1] < train["loss"][0][1]
    assert [s for s, _ in read_scalars(out / "logs" / "eval")["accuracy"]] == [final_step]
    return train
