"""Data sources on real files: an image folder and a TFDS dataset prepared offline."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_vit import preprocess_input
from keras_vit.data import DataError, eval_dataset, load_digits, load_source
from keras_vit.data.augment import NO_AUGMENTATION
from keras_vit.training import RunOptions, fit, get_recipe

# A small ViT for 24x24 images (6x6 patches of 4 pixels), trained briefly.
SHAPES_RECIPE = dataclasses.replace(
    get_recipe("digits"), image_size=24, batch_size=16, steps=60, warmup_steps=5
)


def _image(label: int, rng) -> np.ndarray:
    """Class 0: a dark image with a bright vertical bar; class 1: with a horizontal bar."""
    image = rng.integers(0, 60, (24, 24, 3)).astype(np.uint8)
    position = rng.integers(4, 20)
    if label == 0:
        image[:, position - 2 : position + 2] = 230
    else:
        image[position - 2 : position + 2, :] = 230
    return image


def _write_images(folder, per_class: int, seed: int, formats=("png", "jpg")) -> None:
    rng = np.random.default_rng(seed)
    for label, name in enumerate(("vertical", "horizontal")):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            fmt = formats[i % len(formats)]
            pixels = _image(label, rng)
            data = (
                tf.io.encode_png(pixels) if fmt == "png" else tf.io.encode_jpeg(pixels, quality=95)
            )
            (folder / name / f"{i}.{fmt}").write_bytes(data.numpy())


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    _write_images(root / "train", 40, seed=0)
    _write_images(root / "test", 10, seed=1)
    (root / "train" / "vertical" / "notes.png").write_text("not an image")
    (root / "test" / "horizontal" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 50)
    return root


def test_image_folder_trains_and_counts_what_it_skips(folder, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="keras_vit"):
        source = load_source(str(folder))
    assert source.class_names == ("horizontal", "vertical")
    assert "skipped 1 of 81 files that are not JPEG/PNG/GIF/BMP images" in caplog.text
    assert source.split("train").num_examples == 80
    recipe = dataclasses.replace(SHAPES_RECIPE, dataset=str(folder))
    result = fit(recipe, RunOptions(str(tmp_path), verbose=0))
    assert result.accuracy >= 0.9
    # The undecodable test file is dropped (and logged), not counted as a mistake.
    images = sum(float(w.numpy().sum()) for _, _, w in eval_dataset(source, "test", 24, 8))
    assert images == 20


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="has no train/ folder"):
        load_source(str(tmp_path))
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="has no class folders"):
        load_source(str(tmp_path))
    (tmp_path / "train" / "cat").mkdir()
    (tmp_path / "train" / "cat" / "a.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match="no readable images in"):
        load_source(str(tmp_path))
    _write_images(tmp_path / "fresh" / "train", 2, seed=0)
    _write_images(tmp_path / "fresh" / "test", 2, seed=0)
    (tmp_path / "fresh" / "test" / "dog").mkdir()
    with pytest.raises(DataError, match="has classes that train/ lacks: dog"):
        load_source(str(tmp_path / "fresh"))


def test_image_folder_needs_two_trained_classes(tmp_path, caplog):
    """One class trains to a perfect "held-out accuracy"; an untrained test class is a guess."""
    _write_images(tmp_path / "train", 2, seed=0)
    _write_images(tmp_path / "test", 2, seed=1)
    for split in ("train", "test"):
        for path in (tmp_path / split / "horizontal").iterdir():
            path.unlink()  # an empty class folder is no class
    with pytest.raises(DataError, match=r"training images of one class only \(vertical\)"):
        load_source(str(tmp_path))
    (tmp_path / "train" / "horizontal").rename(tmp_path / "train" / "diagonal")
    _write_images(tmp_path / "more" / "train", 2, seed=2)
    (tmp_path / "more" / "train" / "horizontal").rename(tmp_path / "train" / "horizontal")
    png = next((tmp_path / "test" / "vertical").glob("*.png"))
    (tmp_path / "test" / "diagonal").mkdir()
    (tmp_path / "test" / "diagonal" / "0.png").write_bytes(png.read_bytes())
    with pytest.raises(
        DataError, match="has images of classes with no training images.*: diagonal"
    ):
        load_source(str(tmp_path))
    (tmp_path / "test" / "diagonal" / "0.png").unlink()
    with caplog.at_level("WARNING", logger="keras_vit"):
        source = load_source(str(tmp_path))
    assert source.class_names == ("diagonal", "horizontal", "vertical")
    assert "train/ classes with no images (never learned): ['diagonal']" in caplog.text


def test_digits_forms_agree():
    (model_inputs, _), _ = load_digits()
    (values, _), _ = load_digits(form="pixels")
    (files, _), _ = load_digits(form="uint8")
    np.testing.assert_array_equal(model_inputs, preprocess_input(values))
    assert files.dtype == np.uint8 and np.abs(files - values).max() <= 0.5
    with pytest.raises(ValueError, match="form must be one of"):
        load_digits(form="png")


class KerasVitTestShapes(tfds.core.GeneratorBasedBuilder):
    """A TFDS dataset made from local image files (no download): bars, two classes."""

    VERSION = tfds.core.Version("1.0.0")
    SOURCE = None  # the folder of images, set by the test

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(24, 24, 3)),
                    "label": tfds.features.ClassLabel(names=["vertical", "horizontal"]),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {s: self._generate_examples(self.SOURCE / s) for s in ("train", "test")}

    def _generate_examples(self, folder):
        for label, name in enumerate(("vertical", "horizontal")):
            for path in sorted((folder / name).iterdir()):
                yield f"{name}/{path.name}", {"image": str(path), "label": label}


def test_tfds_by_name_offline(tmp_path):
    files = tmp_path / "files"
    _write_images(files / "train", 40, seed=0, formats=("png",))
    _write_images(files / "test", 10, seed=1, formats=("png",))
    KerasVitTestShapes.SOURCE = files
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(DataError, match="is not prepared"):
        load_source("keras_vit_test_shapes", data_dir=data_dir, download=False)
    source = load_source("tfds:keras_vit_test_shapes", data_dir=data_dir)
    assert (source.kind, source.num_classes, source.split("train").num_examples) == (
        "encoded",
        2,
        80,
    )
    assert source.split("train[:25%]").num_examples == 20
    recipe = dataclasses.replace(
        SHAPES_RECIPE, dataset="keras_vit_test_shapes", augmentation=NO_AUGMENTATION
    )
    result = fit(
        recipe, RunOptions(str(tmp_path / "run"), data_dir=data_dir, download=False, verbose=0)
    )
    assert result.accuracy >= 0.9
