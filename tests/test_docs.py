"""Every docstring example runs."""

import doctest
import importlib
import pkgutil

import pytest

import keras_vit

MODULES = sorted(
    {"keras_vit"}
    | {
        m.name
        for m in pkgutil.walk_packages(keras_vit.__path__, "keras_vit.")
        if "cli" not in m.name and ".jax_" not in m.name  # JAX's: tests/test_training_jax.py
    }
    | {"keras_vit.kernels"}
    | {
        f"keras_vit.kernels.{name}"
        for name in ("attention", "dispatch", "encoder_block", "patch_embed")
    }
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
