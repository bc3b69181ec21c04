"""The command line's model commands (training has its own tests)."""

import numpy as np

from keras_vit import cli
from keras_vit.models import create_model


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
