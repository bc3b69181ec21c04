"""The main job (training on the embedded digits) and the command line."""

import numpy as np
import pytest

from keras_vit import cli
from keras_vit.checkpoints import load_npz
from keras_vit.models import ViT, create_model
from keras_vit.train import DIGITS_MODEL, train_digits


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits")
    return train_digits(epochs=12, out_dir=str(out), verbose=0), out


def test_a_tiny_vit_learns_the_digits(trained):
    result, _ = trained
    assert result["accuracy"] >= 0.8  # chance is 0.1


def test_outputs_reload(trained):
    import keras

    from keras_vit.datasets import load_digits

    result, out = trained
    _, (x_test, _) = load_digits()
    expected = result["model"].predict(x_test[:8], verbose=0)
    reloaded = keras.saving.load_model(out / "model.keras")
    np.testing.assert_allclose(
        reloaded.predict(x_test[:8], verbose=0), expected, rtol=1e-6, atol=1e-6
    )
    from_npz = ViT(**DIGITS_MODEL)
    load_npz(from_npz, out / "model.npz")
    np.testing.assert_allclose(
        from_npz.predict(x_test[:8], verbose=0), expected, rtol=1e-6, atol=1e-6
    )
    assert list((out / "logs").iterdir())


def test_cli_train_prints_the_accuracy(tmp_path, capsys):
    assert cli.main(["train", "--epochs", "1", "--out", str(tmp_path)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("held-out accuracy: 0.")


def test_cli_classify(tmp_path, capsys):
    import tensorflow as tf

    model = create_model("ViT-Mu/16", num_classes=1000)
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(rng.normal(size=w.shape).astype("float32") * 0.05)
    from keras_vit.checkpoints import save_npz

    save_npz(model, tmp_path / "mu.npz")
    image = tf.io.encode_png(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).numpy()
    (tmp_path / "cat.png").write_bytes(image)
    args = [
        "classify",
        str(tmp_path / "cat.png"),
        "--model",
        "ViT-Mu/16",
        "--weights",
        str(tmp_path / "mu.npz"),
    ]
    assert cli.main([*args, "--top", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(tmp_path / "cat.png") + ": ") and line.count("(") == 2
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    assert cli.main(["classify", str(tmp_path / "bad.jpg"), *args[2:]]) == 2
    assert "cannot read image" in capsys.readouterr().err
    assert cli.main(["classify", str(tmp_path / "cat.png"), "--model", "ViT-Z/16"]) == 2
    assert "Unknown model variant" in capsys.readouterr().err
