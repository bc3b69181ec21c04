"""Installs keras_vit, with the top-level ``kernels/`` folder as ``keras_vit.kernels``
and ``triton_repo/`` (its Python-backend ``model.py``) as ``keras_vit.triton_repo``.

A top-level package named ``kernels`` would collide with an existing PyPI project,
hence the ``package_dir`` mapping.
"""

from setuptools import find_packages, setup

packages = find_packages(include=["keras_vit", "keras_vit.*"]) + [
    "keras_vit.kernels",
    "keras_vit.triton_repo",
]

setup(
    name="keras-vit",
    version="0.1.0",
    description="Vision Transformer, hybrid and BiT ResNet-v2 for Keras 3 with the official weights",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=packages,
    # triton_repo/ is the default Triton model repository; its model.py (the
    # Python-backend model) is copied into every exported version.
    package_dir={"keras_vit.kernels": "kernels", "keras_vit.triton_repo": "triton_repo"},
    package_data={"keras_vit": ["data/*.txt"], "keras_vit.triton_repo": ["model.py"]},
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.5",
        "numpy",
        # scipy.ndimage.zoom is what the official loader resizes position embeddings with.
        "scipy",
        # timm / Hugging Face checkpoints are .safetensors files; no pickle involved.
        "safetensors",
        "tensorboard",
        # The embedded dataset of the main job (handwritten digits) ships with scikit-learn.
        "scikit-learn",
        # keras-vit analyze writes its figures (attention maps, plots) as PNG.
        "matplotlib",
    ],
    extras_require={
        # tensorflow-datasets imports importlib_resources when it downloads, without declaring it.
        "data": ["tensorflow-datasets", "importlib_resources"],
        # nvidia-pytriton 0.7 ships Triton 2.51 (Python backend, CPU); older releases
        # resolve with numpy 2, which their Python backend cannot exchange BYTES with.
        # tf2onnx: `export --format onnx` (the converter Keras's own ONNX export calls;
        # 1.16 pinned protobuf 3.20, which TensorFlow 2.21 refuses); onnx: saves the graph
        # and names its batch axis; onnxruntime: runs model.onnx in the Triton Python
        # backend without TensorFlow, and in the parity tests.
        "serve": [
            "tritonclient[all]",
            "nvidia-pytriton>=0.7,<0.8",
            "tf2onnx>=1.17",
            "onnx>=1.16",
            "onnxruntime>=1.17",
        ],
        # Keras's JAX backend. JAX after 0.6 needs numpy >= 2, and the Triton Python
        # backend of the serve extra needs numpy < 2: 0.6 is the newest JAX that lives
        # in one virtualenv with serving (keras_vit itself also runs on numpy 2).
        "jax": ["jax[cpu]>=0.6,<0.7"],
        # Keras's PyTorch backend; scaled_dot_product_attention's scale= arrived in 2.1.
        # Kept out of the test set-up: its Linux wheels pull in the CUDA libraries.
        "torch": ["torch>=2.1"],
        # pytest-xdist: `make test` runs two workers, one file each at a time (2 cores; much
        # of the suite waits on its own subprocesses and servers).
        "test": ["pytest", "pytest-timeout", "pytest-xdist", "ruff"],
    },
    entry_points={"console_scripts": ["keras-vit=keras_vit.cli:main"]},
)
