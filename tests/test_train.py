"""train and evaluate on the tiny dataset: tiny images, no ImageNet weights, one or two epochs."""

from __future__ import annotations

import io
import json
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import CLASSES, QUICK, TINY_TRAIN, error_line, run, stage, stage_module, update_params

from clothing.data.augment import AugmentParams, augmented
from clothing.errors import PipelineError
from clothing.files import sha256_file
from clothing.models.backbones import BACKBONES
from clothing.models.classifier import ModelInfo, save_classifier
from clothing.models.networks import cut_points, split_at, split_at_fraction
from clothing.models.pruning import is_prunable
from clothing.tf import keras

MODEL = "models/model.keras"

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
    assert trained["weights"] is None  # random weights: no file
    # The classes differ by colour: a model that learned anything gets every photo right. A
    # shuffled class order, a train/predict preprocessing mismatch or a lost best epoch would not.
    assert trained["val_accuracy"] == 1.0
    timing = read_json(tiny / "metrics/timing/train.json")
    assert set(timing["wall_seconds"]) == {"decode", "frozen_features", "head", "fine_tune", "total"}
    assert timing["peak_memory_mb"] > 100 and timing["cpu"]["usable_cores"] >= 1
    curve = pd.read_csv(tiny / "metrics/train/plots/metrics/eval/accuracy.tsv", sep="\t")
    epochs = TINY_TRAIN["head"]["epochs"] + TINY_TRAIN["fine_tune"]["epochs"]
    assert list(curve["step"]) == list(range(trained["epochs_run"])) == list(range(epochs))
    assert curve["accuracy"].max() == trained["val_accuracy"]
    assert trained["best_epoch"] == curve["accuracy"].idxmax() + 1  # the first epoch at the best

    evaluated = read_json(tiny / "metrics/eval.json")
    assert evaluated["test_images"] == 3
    assert set(evaluated) >= EVAL_KEYS and set(evaluated["tta_flip"]) >= EVAL_KEYS
    assert evaluated["accuracy"] == evaluated["macro_f1"] == 1.0
    table = pd.read_csv(tiny / "metrics/eval/per_class.csv")
    assert list(table["class"]) == sorted(CLASSES) and table["support"].sum() == 3
    predictions = pd.read_csv(tiny / "metrics/eval/predictions.csv")
    assert (predictions["predicted"] == predictions["actual"]).all()
    coverage = pd.read_csv(tiny / "metrics/eval/coverage.csv")
    assert coverage["coverage"].iloc[0] == 1.0 and coverage["coverage"].is_monotonic_decreasing
    for png in ("confusion_normalized", "reliability", "confident_mistakes"):
        assert (tiny / f"metrics/eval/{png}.png").read_bytes()[:4] == b"\x89PNG"
    assert_batch_norm_learned(tiny / "models/model.keras")
    assert not [name for name in saved_weight_names(tiny / "models/model.keras") if "optimizer" in name]


def test_random_weights_train_everything_from_the_head_phase(tiny: Path) -> None:
    update_params(tiny, {"train": {"fine_tune": {**TINY_TRAIN["fine_tune"], "epochs": 0}}})
    run(tiny, "dvc", "repro", "train")
    assert read_json(tiny / "metrics/train.json")["epochs_run"] == 1  # counted, not read from params
    assert_batch_norm_learned(tiny / "models/model.keras")


def assert_batch_norm_learned(model: Path) -> None:
    """From random weights, batch norm learns: its statistics leave their initial 0 and 1."""
    for moving_mean, moving_variance in batch_norm_statistics(model):
        assert np.abs(moving_mean).max() > 1e-3 and np.abs(moving_variance - 1).max() > 1e-3


def test_rerun_gives_identical_metrics(tiny: Path) -> None:
    def metrics() -> tuple[dict, dict]:
        return read_json(tiny / "metrics/train.json"), read_json(tiny / "metrics/eval.json")

    def model_hash() -> str:
        (out,) = [
            o for o in yaml.safe_load((tiny / "dvc.lock").read_text())["stages"]["train"]["outs"] if o["path"] == MODEL
        ]
        return out["md5"]

    run(tiny, "dvc", "repro", "evaluate")
    first, first_model = metrics(), model_hash()
    run(tiny, "dvc", "repro", "--force", "--single-item", "train")
    run(tiny, "dvc", "repro", "--force", "--single-item", "evaluate")
    assert metrics() == first
    assert model_hash() == first_model  # the same bytes: dvc.lock keeps the committed hash
    assert run(tiny, "dvc", "status", "--quiet", "evaluate", check=False).returncode == 0


def test_two_saves_of_one_model_are_the_same_bytes(tmp_path: Path) -> None:
    """Keras writes the time of saving into the file; a second later the same weights must give the same file."""
    model = keras.Sequential([keras.layers.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    info = ModelInfo(["a", "b", "c"], "baseline_cnn", 4)
    save_classifier(model, info, tmp_path / "first/model.keras")
    time.sleep(2.1)  # zip dates count in steps of 2 seconds
    save_classifier(model, info, tmp_path / "second/model.keras")
    assert (tmp_path / "first/model.keras").read_bytes() == (tmp_path / "second/model.keras").read_bytes()
    loaded = keras.models.load_model(tmp_path / "second/model.keras", compile=False)
    np.testing.assert_array_equal(loaded.get_weights()[0], model.get_weights()[0])


def test_another_training_seed_gives_other_augmented_views() -> None:
    images = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3)).astype(np.uint8)
    augment = AugmentParams(enabled=True, views=4, strength=1.0)
    first, again, other = (augmented(images, 2, augment, seed) for seed in (1, 1, 2))
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).mean() > 1


def test_transfer_from_a_weights_file_fine_tunes_the_top(tiny: Path, tmp_path: Path) -> None:
    weights = tmp_path / "mobilenet.h5"
    tiny_mobilenet().save_weights(weights)
    update_params(tiny, {"train": {"backbone": "mobilenet_v2", "weights": str(weights)}})
    run(tiny, "dvc", "repro", "evaluate")
    trained = read_json(tiny / "metrics/train.json")
    assert trained["frozen_layers"] > 0 and trained["trainable_layers"] > 0
    assert read_json(tiny / "models/model.json")["backbone"] == "mobilenet_v2"
    assert trained["weights"] == {"file": "mobilenet.h5", "sha256": sha256_file(weights)}
    # Pretrained batch norm keeps the file's statistics, in the frozen bottom and the tuned top.
    original = tiny_mobilenet()
    original.load_weights(weights)
    pretrained = batch_norm_statistics(original)
    trained_statistics = batch_norm_statistics(tiny / "models/model.keras")
    assert len(trained_statistics) == len(pretrained) > 0
    for mine, theirs in zip(trained_statistics, pretrained, strict=True):
        np.testing.assert_array_equal(mine, theirs)

    # DVC tracks the copy train started from: another file is a change it shows.
    other = tiny_mobilenet()
    other.save_weights(tiny / "models/weights/mobilenet.h5")
    status = run(tiny, "dvc", "status", "--json").stdout
    assert json.loads(status)["train"] == [{"changed deps": {"models/weights": "modified"}}]


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
    for name in ("weights", "train"):
        line = error_line(stage(tiny, name, check=False))
        assert line.startswith("error: params.yaml: train.backbone: unknown backbone 'vgg99', expected one of:")


def test_missing_weights_file_is_one_clear_error(tiny: Path) -> None:
    update_params(tiny, {"train": {"backbone": "mobilenet_v2", "weights": "nowhere/weights.h5"}})
    line = error_line(stage(tiny, "weights", check=False))
    assert line == "error: train.weights: no such file: nowhere/weights.h5"
    assert not (tiny / "models").exists()


@pytest.fixture()
def keras_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Keras cache of the test's own: keep this machine's copies out of it."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home/.keras/models"


def test_imagenet_weights_missing_offline_names_the_places(keras_cache: Path, tmp_path: Path, monkeypatch) -> None:
    nowhere = replace(BACKBONES["efficientnet_b0"], weights_url="http://127.0.0.1:9/efficientnetb0_notop.h5")
    monkeypatch.setitem(BACKBONES, "efficientnet_b0", nowhere)
    with pytest.raises(PipelineError) as caught:
        stage_module("weights").find_weights("efficientnet_b0", "imagenet", [tmp_path / "mirror"])
    message = str(caught.value)
    assert message.startswith("ImageNet weights for efficientnet_b0 not found: looked in ")
    assert str(tmp_path / "mirror/keras/models/efficientnetb0_notop.h5") in message
    assert "the download failed" in message and "\n" not in message


def test_imagenet_weights_come_from_a_mirror_before_keras_cache(keras_cache: Path, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror/keras/models"
    for folder in (mirror, keras_cache):
        folder.mkdir(parents=True)
        (folder / MOBILENET_FILE).write_bytes(folder.name.encode())
    mirrors = [tmp_path / "empty", tmp_path / "mirror"]
    assert stage_module("weights").find_weights("mobilenet_v2", "imagenet", mirrors) == mirror / MOBILENET_FILE
    # Without a mirror, Keras' own get_file finds its cache (or downloads, online).
    assert stage_module("weights").find_weights("mobilenet_v2", "imagenet", []) == keras_cache / MOBILENET_FILE


def test_baseline_has_no_imagenet_weights() -> None:
    with pytest.raises(PipelineError, match="baseline_cnn has no ImageNet weights"):
        stage_module("weights").find_weights("baseline_cnn", "imagenet", [])


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


def zero_share(layer: keras.layers.Layer) -> float:
    kernel = layer.get_weights()[0]
    return float((kernel == 0).mean())


def test_pruning_zeroes_the_target_share_of_the_fine_tuned_kernels(tiny: Path, tmp_path: Path) -> None:
    weights = tmp_path / "mobilenet.h5"
    tiny_mobilenet().save_weights(weights)
    prune = {"sparsity": 0.5, "epochs": 3, "lr": 0.001}
    update_params(tiny, {"train": {"backbone": "mobilenet_v2", "weights": str(weights), "prune": prune}})
    run(tiny, "dvc", "repro", "evaluate")
    pruned = read_json(tiny / "metrics/train.json")["pruned"]
    assert pruned["prunable_kernels"] == pytest.approx(0.5, abs=0.01)
    assert 0 < pruned["all_weights"] < pruned["prunable_kernels"]  # frozen bottom and depthwise kernels stay dense

    model = keras.models.load_model(tiny / "models/model.keras", compile=False)
    (head,) = [layer for layer in model.layers if isinstance(layer, keras.Model)]  # the fine-tuned part
    (top,) = [layer for layer in head.layers if isinstance(layer, keras.Model)]
    tuned = [layer for layer in [*top.layers, head.get_layer("classes")] if is_prunable(layer)]
    assert tuned and all(zero_share(layer) == pytest.approx(0.5, abs=0.02) for layer in tuned)
    frozen = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert frozen and all(zero_share(layer) < 0.01 for layer in frozen)

    # The zeros survive int8 conversion (weights quantize symmetrically: 0.0 stays 0), so a
    # compressor or a sparse kernel can use them: as many half-zero int8 kernels as pruned layers.
    update_params(tiny, {"quantize": QUICK | {"variants": ["int8"]}})
    stage(tiny, "quantize")
    shares = int8_kernel_zero_shares(tiny / "models/tflite/model_int8.tflite")
    assert sum(share == pytest.approx(0.5, abs=0.05) for share in shares) == len(tuned)
    assert sum(share < 0.05 for share in shares) >= len(frozen)


def int8_kernel_zero_shares(model: Path) -> list[float]:
    """The share of zeros in each int8 weight tensor (rank 2 or more) of a TFLite file."""
    from tensorflow_lite_support.metadata import schema_py_generated as schema_fb

    flat = schema_fb.Model.GetRootAsModel(model.read_bytes(), 0)
    graph, shares = flat.Subgraphs(0), []
    for i in range(graph.TensorsLength()):
        tensor = graph.Tensors(i)
        data = flat.Buffers(tensor.Buffer()).DataAsNumpy()
        if tensor.Type() == schema_fb.TensorType.INT8 and tensor.ShapeLength() >= 2 and not isinstance(data, int):
            shares.append(float((data == 0).mean()))
    return shares


def test_pruning_without_epochs_is_refused() -> None:
    train = stage_module("train")
    with pytest.raises(ValueError, match=r"prune\.sparsity needs prune\.epochs"):
        train.PruneParams(sparsity=0.5, epochs=0, lr=0.001)


def test_fewer_filters_and_clustering_reach_the_saved_model_and_its_count(tiny: Path, tmp_path: Path) -> None:
    weights = tmp_path / "mobilenet.h5"
    tiny_mobilenet().save_weights(weights)
    fine_tune = TINY_TRAIN["fine_tune"] | {"epochs": 2, "keep_filters": 0.5}
    cluster = {"clusters": 8, "epochs": 1, "lr": 0.001}
    update_params(tiny, {"train": {"backbone": "mobilenet_v2", "weights": str(weights), "fine_tune": fine_tune,
                                   "cluster": cluster}})  # fmt: skip
    run(tiny, "dvc", "repro", "evaluate", "analyze_complexity")
    clustered = read_json(tiny / "metrics/train.json")["clustered"]
    assert clustered["kernels"] >= 10 and 2 <= clustered["max_distinct_values"] <= 8

    model = keras.models.load_model(tiny / MODEL, compile=False)
    layers = {layer.name: layer for layer in model.layers} | {
        layer.name: layer for nested in model.layers if isinstance(nested, keras.Model)
        for inner in nested.layers for layer in (inner.layers if isinstance(inner, keras.Model) else [inner])
    }  # fmt: skip
    assert layers["Conv_1"].filters == 640 and layers["block_16_expand"].filters == 480
    assert layers["block_2_expand"].filters == 144  # the frozen bottom keeps every filter
    assert len(np.unique(layers["Conv_1"].get_weights()[0])) <= 8
    complexity = read_json(tiny / "metrics/complexity.json")
    assert complexity["keras_flops"]["conv_dense_difference"] < 0.01


def test_pruning_and_clustering_together_are_refused() -> None:
    train = stage_module("train")
    params = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())["train"]
    params["prune"]["sparsity"], params["cluster"]["clusters"] = 0.5, 16
    with pytest.raises(ValueError, match="set one of them"):
        train.TrainParams(**params)
    with pytest.raises(ValueError, match="2 or more clusters"):
        train.ClusterParams(clusters=1, epochs=1, lr=0.001)
