"""The command line: one way to name a model for every command, and a quiet start."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from keras_vit import cli
from keras_vit.checkpoints import save_npz
from keras_vit.models import create_model

# What TensorFlow, Abseil and gRPC write from C++: "I0000 00:00:..." lines and their kin.
FRAMEWORK_LINE = re.compile(
    r"^[IWEF]\d{4} |absl::InitializeLog|oneDNN|cuda|cuInit|TensorFlow binary"
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Tiny ViTs as .keras files and .npz checkpoints, a PNG and a broken JPEG.

    ``mu``: an ImageNet head (what a variant name gives); ``digits``: 10 classes.
    """
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    for name, num_classes in (("mu", 1000), ("digits", 10)):
        model = create_model("ViT-Mu/16", image_size=32, num_classes=num_classes)
        for w in model.weights:
            w.assign(rng.normal(size=w.shape).astype("float32") * 0.05)
        model.save(folder / f"{name}.keras")
        save_npz(model, folder / f"{name}.npz")
    image = tf.io.encode_png(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).numpy()
    (folder / "cat.png").write_bytes(image)
    (folder / "bad.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return {path.name: str(path) for path in folder.iterdir()}


def run(capsys, *args):
    """``keras-vit ARGS`` in this process: (exit status, stdout, stderr)."""
    status = cli.main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_classify_takes_a_model_in_three_forms(files, capsys):
    image = files["cat.png"]
    variant = ["--model", "ViT-Mu/16", "--image-size", 32, "--weights", files["mu.npz"]]
    outputs = [
        run(capsys, "classify", image, *model, "--top", 2)
        for model in (variant, ["--model", files["mu.keras"]], ["--model", files["mu.npz"]])
    ]
    status, out, _ = outputs[0]
    assert status == 0 and out.startswith(image + ": ") and out.count("(") == 2
    # The same weights in each form; the checkpoint form reads the architecture off the file.
    assert outputs[1] == outputs[2] == outputs[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["bad.jpg", "--model", "mu.keras"], "cannot read image"),
        (["cat.png", "--model", "ViT-Z/16"], "Unknown model variant"),
        (["cat.png", "--model", "mu.keras", "--weights", "mu.npz"], "--weights goes with"),
        (["cat.png", "--model", "mu.keras", "--image-size", "64"], "--image-size cannot"),
    ],
)
def test_classify_errors(files, capsys, args, message):
    status, _, err = run(capsys, "classify", *[files.get(arg, arg) for arg in args])
    assert status == 2 and message in err


def test_evaluate_and_export_take_files(files, capsys, tmp_path):
    for model in (files["digits.keras"], files["digits.npz"]):
        status, out, err = run(capsys, "evaluate", "--model", model, "--batch-size", 360)
        assert status == 0, err
        assert out.startswith("digits test: 360 images, top-1 accuracy ")
    status, out, err = run(
        capsys, "export", "--model", files["digits.npz"], "--repo", tmp_path, "--name", "digits"
    )
    assert status == 0, err
    assert out == f"exported {tmp_path / 'digits' / '1'}\n"


def test_verbose_flag_before_or_after_the_command(capsys):
    for args in (["-v", "models"], ["models", "--verbose"]):
        status, out, _ = run(capsys, *args)
        assert status == 0 and out.startswith("ViT-")


def test_the_command_line_is_quiet(files):
    """A real process: no framework line before (or after) ours, as a newcomer's shell has it."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    command = [sys.executable, "-m", "keras_vit.cli", "classify", files["cat.png"]]
    result = subprocess.run(
        [*command, "--model", files["digits.keras"]],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].startswith(files["cat.png"] + ": class "), result.stdout
    assert not [line for line in lines if FRAMEWORK_LINE.search(line)]
