"""train and evaluate on the tiny dataset: tiny images, no ImageNet weights, one or two epochs."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import CLASSES, TINY_TRAIN, error_line, run, stage, update_params

from clothing.backbones import build_backbone, cut_points, split_at, split_at_fraction, weights_used
from clothing.errors import PipelineError
from clothing.files import sha256_file
from clothing.tf import keras

EVAL_KEYS = {
    *("accuracy", "top3_accuracy", "ece"),
    *("macro_f1", "weighted_f1", "macro_precision", "weighted_recall"),
}
MOBILENET_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


@pytest.fixture()
def tiny(project: Path) -> Path:
    update_params(project, {"train": TINY_TRAIN, "evaluate": {"tta_flip": True, "gallery_size": 4}})
    run(project, "dvc", "init", "--no-scm", "-q")
    return project


def tiny_mobilenet() -> keras.Model:
    return keras.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=False, weights=None)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_train_and_evaluate_run_through_dvc(tiny: Path) -> None:
    run(tiny, "dvc", "repro", "evaluate")
    info = read_json(tiny / "models/model.json")
    assert info == {"classes": sorted(CLASSES), "backbone": "baseline_cnn", "image_size": 32}
    trained = read_json(tiny / "metrics/train.json")
    assert 1 <= trained["best_epoch"] <= 3
    assert 0 <= trained["val_accuracy"] <= 1
    assert trained["weights"] is None  # random weights: no file
    assert set(trained["wall_seconds"]) == {"decode", "frozen_features", "head", "fine_tune", "total"}
    curve = pd.read_csv(tiny / "metrics/train/plots/metrics/eval/accuracy.tsv", sep="\t")
    assert list(curve["step"]) == [0, 1, 2]

    evaluated = read_json(tiny / "metrics/eval.json")
    assert evaluated["test_images"] == 3
    assert set(evaluated) >= EVAL_KEYS and set(evaluated["tta_flip"]) >= EVAL_KEYS
    assert all(0 <= evaluated[key] <= 1 for key in EVAL_KEYS)
    assert evaluated["top3_accuracy"] == 1.0  # three classes: the truth is always in the top 3
    table = pd.read_csv(tiny / "metrics/eval/per_class.csv")
    assert list(table["class"]) == sorted(CLASSES) and table["support"].sum() == 3
    predictions = pd.read_csv(tiny / "metrics/eval/predictions.csv")
    assert len(predictions) == 3 and set(predictions["predicted"]) <= set(CLASSES)
    for png in ("confusion_normalized", "reliability", "confident_mistakes"):
        assert (tiny / f"metrics/eval/{png}.png").read_bytes()[:4] == b"\x89PNG"
    assert_batch_norm_learned(tiny / "models/model.keras")
    assert not [name for name in saved_weight_names(tiny / "models/model.keras") if "optimizer" in name]


def test_random_weights_train_everything_from_the_head_phase(tiny: Path) -> None:
    update_params(tiny, {"train": {"fine_tune": {**TINY_TRAIN["fine_tune"], "epochs": 0}}})
    run(tiny, "dvc", "repro", "train")
    assert read_json(tiny / "metrics/train.json")["epochs_run"] == 1
    assert_batch_norm_learned(tiny / "models/model.keras")


def assert_batch_norm_learned(model: Path) -> None:
    """From random weights, batch norm learns: its statistics leave their initial 0 and 1."""
    for moving_mean, moving_variance in batch_norm_statistics(model):
        assert np.abs(moving_mean).max() > 1e-3 and np.abs(moving_variance - 1).max() > 1e-3


def test_rerun_gives_identical_metrics(tiny: Path) -> None:
    def metrics() -> tuple[dict, dict]:
        trained = read_json(tiny / "metrics/train.json")
        trained.pop("wall_seconds")
        return trained, read_json(tiny / "metrics/eval.json")

    run(tiny, "dvc", "repro", "evaluate")
    first = metrics()
    run(tiny, "dvc", "repro", "--force", "--single-item", "train")
    run(tiny, "dvc", "repro", "--force", "--single-item", "evaluate")
    assert metrics() == first


def test_transfer_from_a_weights_file_fine_tunes_the_top(tiny: Path, tmp_path: Path) -> None:
    weights = tmp_path / "mobilenet.h5"
    tiny_mobilenet().save_weights(weights)
    update_params(tiny, {"train": {"backbone": "mobilenet_v2", "weights": str(weights)}})
    run(tiny, "dvc", "repro", "evaluate")
    trained = read_json(tiny / "metrics/train.json")
    assert trained["frozen_layers"] > 0 and trained["trainable_layers"] > 0
    assert read_json(tiny / "models/model.json")["backbone"] == "mobilenet_v2"
    assert trained["weights"] == {"file": str(weights), "sha256": sha256_file(weights)}
    # Pretrained batch norm keeps the file's statistics, in the frozen bottom and the tuned top.
    original = tiny_mobilenet()
    original.load_weights(weights)
    pretrained = batch_norm_statistics(original)
    trained_statistics = batch_norm_statistics(tiny / "models/model.keras")
    assert len(trained_statistics) == len(pretrained) > 0
    for mine, theirs in zip(trained_statistics, pretrained, strict=True):
        np.testing.assert_array_equal(mine, theirs)


def saved_weight_names(model: Path) -> list[str]:
    """Every dataset name in a ``.keras`` file's weights."""
    with zipfile.ZipFile(model) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5"))) as weights:
        names: list[str] = []
        weights.visit(names.append)
    return names


def batch_norm_statistics(model: keras.Model | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(moving mean, moving variance) of every batch norm layer, nested models included, in order."""
    if isinstance(model, Path):
        model = keras.models.load_model(model, compile=False)
    statistics = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            statistics += batch_norm_statistics(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            statistics.append((layer.moving_mean.numpy(), layer.moving_variance.numpy()))
    return statistics


def test_unknown_backbone_is_one_clear_error(tiny: Path) -> None:
    run(tiny, "dvc", "repro", "split")
    update_params(tiny, {"train": {"backbone": "vgg99"}})
    line = error_line(stage(tiny, "train", check=False))
    assert line.startswith("error: params.yaml: train.backbone: Input should be 'mobilenet_v2'")


def test_missing_weights_file_is_one_clear_error(tiny: Path) -> None:
    run(tiny, "dvc", "repro", "split")
    update_params(tiny, {"train": {"backbone": "mobilenet_v2", "weights": "nowhere/weights.h5"}})
    line = error_line(stage(tiny, "train", check=False))
    assert line == "error: train.weights: no such file: nowhere/weights.h5"
    assert not (tiny / "models").exists()


@pytest.fixture()
def empty_keras_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keras' cache is looked at first: keep this machine's own copies out of the test."""
    monkeypatch.setattr("clothing.backbones.KERAS_CACHE", tmp_path / "home/.keras/models")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # and Keras' own download looks there too


@pytest.mark.usefixtures("empty_keras_cache")
def test_imagenet_weights_missing_offline_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(PipelineError) as caught:
        build_backbone("efficientnet_b0", 32, "imagenet", [str(tmp_path / "mirror")])
    message = str(caught.value)
    assert "ImageNet weights for efficientnet_b0 not found" in message
    assert str(tmp_path / "mirror/keras/models/efficientnetb0_notop.h5") in message


@pytest.mark.usefixtures("empty_keras_cache")
def test_imagenet_weights_come_from_a_mirror(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "keras/models").mkdir(parents=True)
    original = tiny_mobilenet()
    original.save_weights(mirror / "keras/models" / MOBILENET_FILE)
    mirrors = [str(tmp_path / "empty"), str(mirror)]
    loaded = build_backbone("mobilenet_v2", 32, "imagenet", mirrors)
    assert weights_used("mobilenet_v2", "imagenet", mirrors) == mirror / "keras/models" / MOBILENET_FILE
    for mine, theirs in zip(loaded.get_weights(), original.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_baseline_has_no_imagenet_weights() -> None:
    with pytest.raises(PipelineError, match="baseline_cnn has no ImageNet weights"):
        build_backbone("baseline_cnn", 32, "imagenet", [])


def test_split_backbone_computes_the_same_function() -> None:
    model = tiny_mobilenet()
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    for cut in ("block_12_add", "block_13_expand", "out_relu"):
        frozen, top = split_at(model, cut)
        np.testing.assert_allclose(top(frozen(images)), model(images), atol=1e-5)
    # Inside a residual block the network cannot be cut: the skip connection crosses.
    assert "block_12_project_BN" not in cut_points(model)
    frozen, top = split_at_fraction(model, 0.2)
    assert 0.1 < (len(top.layers) - 1) / len(model.layers) < 0.3
