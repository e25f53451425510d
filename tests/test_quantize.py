"""quantize on the tiny trained model: every variant converts, loads, runs and is measured."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ai_edge_litert.interpreter import Interpreter
from conftest import VARIANTS, error_line, quick_copy, stage, update_params

from clothing.commands.cli import main
from clothing.models.classifier import load_classifier


@pytest.fixture()
def copy(trained: Path, tmp_path: Path) -> Path:
    return quick_copy(trained, tmp_path / "project")


def tensor_types(path: Path) -> dict[str, set]:
    interpreter = Interpreter(model_path=str(path))
    details = interpreter.get_tensor_details()
    weights = {d["dtype"] for d in details if len(d["shape"]) == 4 and "conv" in d["name"].lower()}
    return {
        "weights": weights,
        "input": {d["dtype"] for d in interpreter.get_input_details()},
        "output": {d["dtype"] for d in interpreter.get_output_details()},
    }


def test_every_variant_converts_loads_runs_and_is_measured(quantized: Path) -> None:
    table = json.loads((quantized / "metrics/quantize.json").read_text())
    assert list(table) == ["keras", *VARIANTS]
    # The tiny model separates its classes with confidence near 1: every variant must agree with it.
    for name, row in table.items():
        assert row["agreement_with_keras"] == 1.0, name
        assert row["accuracy"] == table["keras"]["accuracy"] == 1.0, name
    assert table["int8"]["size_mb"] < table["float16"]["size_mb"] < table["float32"]["size_mb"]
    timing = json.loads((quantized / "metrics/timing/quantize.json").read_text())
    assert timing["cpu"]["usable_cores"] >= 1 and list(timing["variants"]) == ["keras", *VARIANTS]
    for name, speed in timing["variants"].items():
        assert 0 < speed["latency_1_thread"]["median_ms"] <= speed["latency_1_thread"]["p90_ms"], name
    photos = sorted((quantized / "data/raw/images").glob("*-0[0-2].jpg"))
    reference = load_classifier(quantized / "models/model.keras").predict_files(photos)
    for variant, tolerance in {"float32": 1e-5, "float16": 0.01, "dynamic_int8": 0.05, "int8": 0.1}.items():
        probabilities = load_classifier(quantized / f"models/tflite/model_{variant}.tflite").predict_files(photos)
        np.testing.assert_allclose(probabilities, reference, atol=tolerance, err_msg=variant)
        assert (probabilities.argmax(axis=1) == reference.argmax(axis=1)).all(), variant
    csv_header = (quantized / "metrics/quantize.csv").read_text().splitlines()[0]
    assert csv_header == "variant,accuracy,macro_f1,agreement_with_keras,size_mb"


def test_predict_agrees_with_quantize_for_every_file_and_variant(quantized: Path, tmp_path: Path) -> None:
    measured = pd.read_csv(quantized / "metrics/quantize/predictions.csv", dtype=str)
    assert list(measured.columns) == ["image", "actual", "keras", *VARIANTS]
    files = [str(quantized / f"data/raw/images/{image}.jpg") for image in measured["image"]]
    for variant in VARIANTS:
        output = tmp_path / f"{variant}.csv"
        model = quantized / f"models/tflite/model_{variant}.tflite"
        assert main(["predict", *files, "--model", str(model), "--format", "csv", "--output", str(output)]) == 0
        top1 = pd.read_csv(output).query("rank == 1")
        assert top1["class"].tolist() == measured[variant].tolist(), variant


def test_full_integer_model_holds_int8_weights(copy: Path) -> None:
    update_params(copy, {"quantize": {"variants": ["float32", "int8"]}})
    stage(copy, "quantize")
    assert tensor_types(copy / "models/tflite/model_float32.tflite")["weights"] == {np.float32}
    int8 = tensor_types(copy / "models/tflite/model_int8.tflite")
    assert int8["weights"] == {np.int8}
    assert int8["input"] == {np.float32}  # int8_io is off by default


def test_int8_inputs_and_outputs_by_param(copy: Path, quantized: Path) -> None:
    update_params(copy, {"quantize": {"variants": ["int8"], "int8_io": True}})
    stage(copy, "quantize")
    types = tensor_types(copy / "models/tflite/model_int8.tflite")
    assert types["input"] == types["output"] == {np.int8}
    assert json.loads((copy / "metrics/quantize.json").read_text())["int8"]["agreement_with_keras"] == 1.0
    # The same int8 network with float ends: a wrong scale or zero point at either end would show.
    images = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    int8_ends = load_classifier(copy / "models/tflite/model_int8.tflite").predict(images)
    float_ends = load_classifier(quantized / "models/tflite/model_int8.tflite").predict(images)
    np.testing.assert_allclose(int8_ends, float_ends, atol=2 / 256)


def test_missing_and_corrupt_model_are_clear_errors(copy: Path) -> None:
    (copy / "models/model.keras").unlink()
    assert error_line(stage(copy, "quantize", check=False)) == "error: models/model.keras: no such model file"
    (copy / "models/model.keras").write_bytes(b"\x00" * 100)
    assert "cannot load model" in error_line(stage(copy, "quantize", check=False))


def test_unknown_variant_is_a_param_error(copy: Path) -> None:
    update_params(copy, {"quantize": {"variants": ["int4"]}})
    line = error_line(stage(copy, "quantize", check=False))
    assert line.startswith("error: params.yaml: quantize.variants.0: Input should be 'float32'")


def test_empty_representative_sample_is_a_clear_error(copy: Path) -> None:
    train = copy / "data/split/train.csv"
    train.chmod(0o644)
    train.write_text(train.read_text().splitlines()[0] + "\n")
    line = error_line(stage(copy, "quantize", check=False))
    assert line == "error: the representative sample is empty (data/split/train.csv has no rows)"
