"""Time per block: the blocks partition the layers, truncated models count what the blocks count, times add up."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import error_line, quick_copy, stage, stage_module, update_params

from clothing.analysis.block_time import block_ends, blocks_of, prefix, tflite_invokes, time_blocks
from clothing.analysis.complexity import count, totals
from clothing.files import read_table
from clothing.models.conversion import convert
from clothing.models.networks import build_backbone, split_at_fraction
from clothing.tf import keras

MOBILENET_BLOCKS = ["stem", *(f"block_{k}" for k in range(17)), "head"]


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory: pytest.TempPathFactory) -> keras.Model:
    """A MobileNetV2 classifier as train builds it (frozen bottom, nested top and head), saved and loaded back."""
    frozen, top = split_at_fraction(build_backbone("mobilenet_v2", 96), 0.42)
    head = stage_module("train").classifier_head(top, 3, 0.2)
    path = tmp_path_factory.mktemp("model") / "model.keras"
    keras.Model(frozen.input, head(frozen.output)).save(path)
    return keras.models.load_model(path, compile=False)


def contiguous(blocks: list[str]) -> bool:
    runs = [block for i, block in enumerate(blocks) if i == 0 or blocks[i - 1] != block]
    return len(runs) == len(set(runs))


def test_mobilenets_blocks_are_its_17_inverted_residuals_the_stem_and_the_head(mobilenet: keras.Model) -> None:
    rows = count(mobilenet)
    blocks = blocks_of(rows)
    assert len(blocks) == len(rows) and contiguous(blocks)  # every layer in one block, each block in one piece
    assert list(dict.fromkeys(blocks)) == MOBILENET_BLOCKS
    assert rows[blocks.index("head")].name.endswith("Conv_1") and blocks[-1] == "head"  # the classifier too


def test_a_network_without_named_blocks_is_grouped_by_resolution() -> None:
    blocks = blocks_of(count(build_backbone("baseline_cnn", 32)))
    assert list(dict.fromkeys(blocks)) == ["stage_16x16", "stage_8x8", "stage_4x4", "stage_2x2", "stage_1x1"]
    assert contiguous(blocks)


def test_each_truncated_model_counts_the_macs_of_the_blocks_before_its_cut(mobilenet: keras.Model) -> None:
    """The counter, run on each truncated model, agrees with the blocks' MACs summed up to the cut."""
    rows = count(mobilenet)
    blocks = blocks_of(rows)
    macs = {block: sum(r.macs for r, b in zip(rows, blocks, strict=True) if b == block) for block in MOBILENET_BLOCKS}
    cumulative = np.cumsum([macs[block] for block in MOBILENET_BLOCKS])
    for (block, last_layer), expected in zip(block_ends(rows, blocks), cumulative, strict=True):
        assert totals(count(prefix(mobilenet, last_layer)))["macs"] == expected, block
    assert totals(rows)["macs"] == cumulative[-1]


def three_block_network() -> keras.Model:
    """Blocks named as MobileNetV2 names them, each with enough work to time: four conversions, not nineteen."""
    layers = keras.layers
    inputs = keras.Input((96, 96, 3))
    x = layers.ReLU(name="stem_relu")(layers.Conv2D(32, 3, strides=2, padding="same", name="stem_conv")(inputs))
    for k, (filters, stride) in enumerate([(48, 2), (48, 1), (96, 2)], start=1):
        x = layers.Conv2D(filters, 3, strides=stride, padding="same", name=f"block_{k}_conv")(x)
        x = layers.ReLU(name=f"block_{k}_relu")(x)
    x = layers.GlobalAveragePooling2D()(layers.Conv2D(640, 1, name="Conv_1")(x))
    return keras.Model(inputs, layers.Dense(3, activation="softmax")(x))


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_block_times_are_positive_and_add_up_to_the_whole_model(variant: str) -> None:
    network = three_block_network()
    rows = count(network)
    blocks = blocks_of(rows)
    calibration = np.random.default_rng(0).uniform(-1, 1, (8, 96, 96, 3)).astype(np.float32)
    convert_variant = lambda model: convert(model, variant, calibration, int8_io=True)  # noqa: E731
    invokes = tflite_invokes(network, block_ends(rows, blocks), convert_variant, calibration[0])
    timed = time_blocks(invokes, warmup=5, runs=30, rounds=5)
    assert list(timed.block_ms.index) == ["stem", "block_1", "block_2", "block_3", "head"]
    assert (timed.block_ms["ms"] > 0).all(), timed.block_ms
    assert timed.adds_up(), (timed.block_ms["ms"].sum(), timed.whole_ms, timed.tolerance_ms())


def test_the_stage_writes_a_table_whose_blocks_hold_every_mac(trained: Path, tmp_path: Path) -> None:
    project = quick_copy(trained, tmp_path / "project")
    update_params(project, {"block_time": {"representative_size": 4, "warmup_runs": 1, "runs": 3, "rounds": 2}})
    stage(project, "analyze_complexity")
    stage(project, "block_time")
    table = read_table(project / "metrics/complexity/block_time.csv")
    assert table["macs"].astype(int).sum() == json.loads((project / "metrics/complexity.json").read_text())["macs"]
    assert {"float32_ms", "int8_ms", "int8_speedup", "mac_share", "int8_share"} <= set(table.columns)
    report = (project / "metrics/complexity/block_time.md").read_text()
    assert "Most MACs: **" in report and "Most int8 time: **" in report
    timing = json.loads((project / "metrics/timing/block_time.json").read_text())
    assert set(timing) == {"cpu", "float32", "int8"} and timing["cpu"]["model"]


@pytest.mark.parametrize(
    ("variants", "message"),
    [([], "List should have at least 1 item"), (["int8", "int8"], "name each variant once")],
)
def test_no_variant_or_one_named_twice_is_a_param_error(
    trained: Path, tmp_path: Path, variants: list[str], message: str
) -> None:
    project = quick_copy(trained, tmp_path / "project")
    update_params(project, {"block_time": {"variants": variants}})
    line = error_line(stage(project, "block_time", check=False))
    assert line.startswith("error: params.yaml: block_time.variants") and message in line, line
    assert not (project / "metrics/complexity/block_time.csv").exists()
