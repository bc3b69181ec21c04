"""Files made to hurt: pixel bombs, forged checkpoints, NaN weights, and plain-open file modes.

Every case is a real file on disk; memory is measured (tracemalloc in this
process, the peak RSS of a child process), not timed.
"""

import json
import os
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
import tensorflow as tf

from keras_vit import cli
from keras_vit.checkpoints import CheckpointError, load_npz, load_timm, save_npz
from keras_vit.images import MAX_IMAGE_PIXELS, decode_image, load_pixels
from keras_vit.models import create_model, from_checkpoint
from keras_vit.models import weights as named_weights

BOMB_SIDE = 20_000


def write_png(path, width: int, height: int) -> None:
    """A single-colour greyscale PNG, its zero rows deflated as they are made (no big buffer)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    deflate, row = zlib.compressobj(9), b"\0" * (width + 1)
    rows = b"".join([deflate.compress(row) for _ in range(height)] + [deflate.flush()])
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows))
        f.write(chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny model's checkpoint, a small PNG, the 20000 x 20000 PNG, a text file."""
    folder = tmp_path_factory.mktemp("bad")
    model = create_model("ViT-Mu/16", image_size=32, num_classes=10)
    save_npz(model, folder / "mu.npz")
    (folder / "cat.png").write_bytes(tf.io.encode_png(np.zeros((40, 50, 3), np.uint8)).numpy())
    write_png(folder / "bomb.png", BOMB_SIDE, BOMB_SIDE)
    (folder / "notes.png").write_text("not an image\n")
    return {path.name: str(path) for path in folder.iterdir()} | {"dir": str(folder)}


def cli_run(capsys, *args):
    status = cli.main([str(arg) for arg in args])
    return status, capsys.readouterr().err


# --- 9: images that declare more pixels than MAX_IMAGE_PIXELS -----------------------------


def test_classify_refuses_a_pixel_bomb_in_bounded_memory(files):
    """A child ``keras-vit classify`` on the 20000 x 20000 PNG (7.2 GB peak before the check)."""
    assert os.path.getsize(files["bomb.png"]) < 2_000_000
    script = textwrap.dedent(
        """
        import resource, subprocess, sys
        result = subprocess.run(sys.argv[1:], capture_output=True, text=True)
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(result.returncode, peak_kib)
        print(result.stderr, end="")
        """
    )
    command = [sys.executable, "-m", "keras_vit.cli", "classify", files["bomb.png"]]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a shell has it
    result = subprocess.run(
        [sys.executable, "-c", script, *command, "--model", files["mu.npz"]],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    status, peak_kib = (int(n) for n in result.stdout.splitlines()[0].split())
    errors = result.stdout.splitlines()[1:]
    assert status == 2 and len(errors) == 1, result.stdout
    assert "20000 x 20000" in errors[0] and f"{MAX_IMAGE_PIXELS:,}" in errors[0]
    assert files["bomb.png"] in errors[0]
    assert peak_kib < 2.5 * 2**20, f"peak RSS {peak_kib / 2**20:.2f} GiB"


def test_the_graph_decode_and_the_serving_signature_refuse_a_pixel_bomb(files, tmp_path):
    from keras_vit.serving import serving_archive

    data = tf.io.read_file(files["bomb.png"])
    with pytest.raises(tf.errors.InvalidArgumentError, match="MAX_IMAGE_PIXELS"):
        tf.function(decode_image)(data)
    model = create_model("ViT-Mu/16", image_size=32, num_classes=10)
    serving_archive(model).write_out(str(tmp_path / "saved"), verbose=False)
    archive = tf.saved_model.load(str(tmp_path / "saved"))
    good = tf.io.read_file(files["cat.png"])
    assert archive.serve_bytes(tf.stack([good]))["probabilities"].shape == (1, 10)
    with pytest.raises(tf.errors.InvalidArgumentError, match="MAX_IMAGE_PIXELS"):
        archive.serve_bytes(tf.stack([good, data]))


def test_the_data_pipeline_drops_a_pixel_bomb(files):
    from keras_vit.data import Source, Split, eval_dataset

    paths = np.array([files["cat.png"], files["bomb.png"], files["cat.png"]])
    split = Split(lambda: tf.data.Dataset.from_tensor_slices((paths, np.zeros(3, np.int64))), 3)
    source = Source("bombs", ("a", "b"), {"test": split}, "path")
    weights = [w for _, _, w in eval_dataset(source, "test", image_size=16, batch_size=4)]
    assert float(tf.reduce_sum(tf.concat(weights, 0))) == 2.0  # two good images, bomb dropped


@pytest.mark.parametrize(
    "name, message",
    [("dir", "it is a folder"), ("missing.png", "no such file"), ("notes.png", "Unknown image")],
)
def test_classify_gives_one_line_for_a_bad_path(files, capsys, name, message):
    path = files.get(name, os.path.join(files["dir"], name))
    status, err = cli_run(capsys, "classify", path, "--model", files["mu.npz"])
    assert status == 2 and message in err and len(err.splitlines()) == 1, err
    assert load_pixels(files["cat.png"], (8, 8)).shape == (8, 8, 3)


def test_classify_offline_names_the_download_and_the_way_around(capsys, monkeypatch, tmp_path):
    named = named_weights.NamedWeights("http://127.0.0.1:9/vit/Ti_16.npz", 1000, 224)
    monkeypatch.setitem(named_weights.NAMED_WEIGHTS["Ti/16"], "augreg_in21k_ft_in1k", named)
    monkeypatch.setattr(named_weights, "CACHE_DIR", str(tmp_path))
    status, err = cli_run(capsys, "classify", "x.png", "--model", "ViT-Ti/16")
    assert status == 2 and len(err.splitlines()) == 1, err
    assert "cannot download Ti_16.npz from http://127.0.0.1:9/vit/Ti_16.npz" in err
    assert "--weights FILE" in err and str(tmp_path) in err


# --- 10: checkpoints whose headers declare more than they hold or may hold ------------------


def npz_member(archive: zipfile.ZipFile, key: str, shape, data_bytes: int = 0) -> None:
    """Writes ``key.npy`` declaring float32 ``shape``, followed by ``data_bytes`` zero bytes."""
    with archive.open(key + ".npy", "w", force_zip64=True) as member:
        np.lib.format.write_array_header_1_0(
            member, {"descr": "<f4", "fortran_order": False, "shape": shape}
        )
        chunk = bytes(2**24)
        for start in range(0, data_bytes, len(chunk)):
            member.write(chunk[: min(len(chunk), data_bytes - start)])


@pytest.fixture(scope="module")
def forged(tmp_path_factory):
    """A 4 TiB declaration with no data, and a deflated 2 GiB array (a few MB on disk)."""
    folder = tmp_path_factory.mktemp("forged")
    with zipfile.ZipFile(folder / "tib.npz", "w") as archive:
        npz_member(archive, "embedding/kernel", (2**20, 2**20))
    with zipfile.ZipFile(folder / "inflate.npz", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        npz_member(z, "embedding/kernel", (2**29,), data_bytes=2**31)
    return folder


def test_a_forged_npz_is_refused_from_its_header(forged):
    model = create_model("ViT-Mu/16", image_size=32, num_classes=10)
    before = [w.numpy() for w in model.weights]
    assert os.path.getsize(forged / "tib.npz") < 1000
    for load in (lambda p: load_npz(model, p), from_checkpoint):
        with pytest.raises(CheckpointError, match=r"'embedding/kernel' declares shape \(1048576"):
            load(forged / "tib.npz")
    assert os.path.getsize(forged / "inflate.npz") < 10_000_000
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=r"'embedding/kernel'.*over the limit of"):
            load_npz(model, forged / "inflate.npz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"{peak:,} bytes traced"
    assert all(np.array_equal(w.numpy(), b) for w, b in zip(model.weights, before))


def write_safetensors(path, header: dict, data: bytes) -> None:
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def test_a_forged_safetensors_header_is_refused(tmp_path):
    model = create_model("ViT-Mu/16", image_size=32, num_classes=10)
    huge = {"dtype": "F32", "shape": [2**20, 2**20], "data_offsets": [0, 2**42]}
    write_safetensors(tmp_path / "a.safetensors", {"cls_token": huge}, bytes(16))
    lying = {"dtype": "F32", "shape": [2**20, 2**20], "data_offsets": [0, 16]}
    write_safetensors(tmp_path / "b.safetensors", {"cls_token": lying}, bytes(16))
    for name in ("a", "b"):
        with pytest.raises(CheckpointError, match=r"'cls_token' declares shape \(1048576"):
            load_timm(model, tmp_path / f"{name}.safetensors")


# --- 11: NaN and infinity ----------------------------------------------------------------


def test_non_finite_weights_are_refused_unless_allowed(files, tmp_path):
    with np.load(files["mu.npz"]) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["head/bias"] = np.full_like(arrays["head/bias"], np.nan)
    arrays["cls"] = np.full_like(arrays["cls"], np.inf)
    np.savez(tmp_path / "nan.npz", **arrays)
    model = create_model("ViT-Mu/16", image_size=32, num_classes=10)
    for load in (lambda p, **k: load_npz(model, p, **k), from_checkpoint):
        with pytest.raises(CheckpointError, match=r"NaN or infinity in 2 arrays: .*'head/bias'"):
            load(tmp_path / "nan.npz")
    load_npz(model, tmp_path / "nan.npz", allow_nonfinite=True)
    assert np.isnan(model.get_layer("head").bias.numpy()).all()


# --- 4: files readable as a plain open makes them ---------------------------------------------


def test_export_and_train_files_follow_the_umask(tmp_path):
    """A child process per umask: the export's files and folders, and ``train``'s writers."""
    script = textwrap.dedent(
        """
        import json, os, stat, sys
        from keras_vit.atomic import write_atomic, write_text_atomic
        from keras_vit.checkpoints import save_npz
        from keras_vit.models import create_model
        from keras_vit.serving import export_model
        out, model = sys.argv[1], create_model("ViT-Mu/16", image_size=32, num_classes=3)
        modes = {}
        for mask in (0o022, 0o077):
            os.umask(mask)
            folder = os.path.join(out, oct(mask))
            os.mkdir(folder)
            version = export_model(model, folder, "mu", backend="python")
            write_atomic(os.path.join(folder, "model.keras"), model.save, suffix=".keras")
            save_npz(model, os.path.join(folder, "model.npz"))
            write_text_atomic(os.path.join(folder, "metrics.json"), "{}")
            for root, dirs, names in os.walk(folder):
                for name in dirs + names:
                    path = os.path.join(root, name)
                    modes[os.path.relpath(path, out)] = stat.S_IMODE(os.stat(path).st_mode)
        print(json.dumps(modes))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    modes = json.loads(result.stdout.splitlines()[-1])
    for mask, file_mode, folder_mode in ((0o022, 0o644, 0o755), (0o077, 0o600, 0o700)):
        ours = {k: v for k, v in modes.items() if k.startswith(oct(mask) + os.sep)}
        for name in (
            "mu/config.pbtxt",
            "mu/labels.txt",
            "model.keras",
            "model.npz",
            "metrics.json",
        ):
            assert ours[os.path.join(oct(mask), name)] == file_mode, (name, ours)
        for name in ("mu", "mu/1", "mu/1/model.savedmodel"):
            assert ours[os.path.join(oct(mask), name)] == folder_mode, (name, ours)
        saved = [k for k in ours if "model.savedmodel" in k]
        assert saved and all(ours[k] in (file_mode, folder_mode) for k in saved), ours
        assert not [k for k in ours if os.path.basename(k).startswith(".")], ours
