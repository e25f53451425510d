"""TFLite metadata: quantize writes it into every variant, predict reads it, MediaPipe runs the file as it is."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, VARIANTS, plain_tflite

from clothing.errors import PipelineError
from clothing.files import read_table
from clothing.models.backbones import BACKBONES
from clothing.models.classifier import info_path, load_classifier
from clothing.models.tflite_metadata import Metadata, normalization, read_metadata, write_metadata

MEDIAPIPE_PYTHON = REPO / ".venv-mediapipe/bin/python"


@pytest.mark.parametrize("backbone", sorted(set(BACKBONES) - {"resnet50"}))
def test_normalization_reproduces_each_backbones_preprocessing(backbone: str) -> None:
    preprocess = BACKBONES[backbone].preprocess
    mean, std = normalization(preprocess)
    images = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3))
    np.testing.assert_allclose((images - np.array(mean)) / np.array(std), preprocess(images), rtol=1e-6, atol=1e-6)


def test_a_preprocessing_metadata_cannot_say_is_one_clear_error() -> None:
    with pytest.raises(PipelineError, match="caffe: not a per-channel"):
        normalization(BACKBONES["resnet50"].preprocess)  # RGB -> BGR


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_carries_labels_and_normalisation(quantized: Path, variant: str) -> None:
    model = quantized / f"models/tflite/model_{variant}.tflite"
    info = json.loads(info_path(model).read_text())
    described = read_metadata(model)
    assert described is not None and described.classes == info["classes"]
    assert (described.mean, described.std) == normalization(BACKBONES[info["backbone"]].preprocess)


def test_a_tflite_with_metadata_needs_no_classes_file(quantized: Path, tmp_path: Path) -> None:
    alone = tmp_path / "alone.tflite"
    shutil.copy(quantized / "models/tflite/model_int8.tflite", alone)
    photos = [quantized / p for p in read_table(quantized / "data/split/test.csv")["path"]]
    with_file = load_classifier(quantized / "models/tflite/model_int8.tflite").predict_files(photos)
    by_metadata = load_classifier(alone)
    assert by_metadata.info.classes == ["Pants", "Shoes", "T-Shirt"] and by_metadata.info.image_size == 32
    np.testing.assert_allclose(by_metadata.predict_files(photos), with_file, atol=1e-6)


def test_a_tflite_without_metadata_reads_as_none(tmp_path: Path) -> None:
    assert read_metadata(plain_tflite(tmp_path / "plain.tflite", (4,))) is None


def test_mediapipe_image_classifier_runs_the_file_as_it_is(quantized: Path) -> None:
    """MediaPipe reads only the .tflite; its top-1 must be predict's for every test photo."""
    assert MEDIAPIPE_PYTHON.is_file(), "MediaPipe's environment is missing: run `make mediapipe`"
    model = quantized / "models/tflite/model_int8.tflite"
    photos = [str(quantized / p) for p in read_table(quantized / "data/split/test.csv")["path"]]
    script = REPO / "tools/mediapipe_classify.py"
    answered = subprocess.run([MEDIAPIPE_PYTHON, script, model, *photos], capture_output=True, text=True)
    assert answered.returncode == 0, answered.stderr
    mediapipe_top1 = [record["predictions"][0]["class"] for record in json.loads(answered.stdout)]
    ours = load_classifier(model)
    assert mediapipe_top1 == ours.info.top1(ours.predict_files(photos))


def test_writing_and_reading_metadata_loads_no_native_code_of_tflite_support(tmp_path: Path) -> None:
    """Its native modules link libusb-1.0, which a fresh Debian machine lacks: quantize must not need them."""
    model = plain_tflite(tmp_path / "plain.tflite", (4,))
    script = (
        "import sys; from pathlib import Path\n"
        "from clothing.models.tflite_metadata import Metadata, read_metadata, write_metadata\n"
        f"write_metadata(Path({str(model)!r}), Metadata(['a', 'b'], [127.5], [127.5]))\n"
        f"assert read_metadata(Path({str(model)!r})).classes == ['a', 'b']\n"
        "print([line.split()[-1] for line in open('/proc/self/maps') if 'tensorflow_lite_support' in line])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_metadata_written_twice_replaces_itself(tmp_path: Path) -> None:
    """The same labels give the same bytes, so a rerun of quantize leaves its hashes in dvc.lock as they were."""
    model = plain_tflite(tmp_path / "plain.tflite", (4,))
    write_metadata(model, Metadata(["x", "y"], [0.0], [1.0]))
    once = model.read_bytes()
    write_metadata(model, Metadata(["x", "y"], [0.0], [1.0]))
    assert model.read_bytes() == once
    assert read_metadata(model) == Metadata(["x", "y"], [0.0], [1.0])
