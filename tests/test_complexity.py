"""The complexity counter on hand-computed models, standard backbones, and keras-flops."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_TRAIN, run, update_params

from clothing.analysis.complexity import count, totals
from clothing.analysis.profiler import flops_by_op_type, import_keras_flops, keras_flops_total
from clothing.models.efficientnet_lite import VARIANTS, efficientnet_lite
from clothing.tf import keras

L = keras.layers


def by_name(model: keras.Model) -> dict:
    return {row.name: row for row in count(model)}


def test_stride_two_conv_stack() -> None:
    x = keras.Input((32, 32, 3))
    y = L.Conv2D(8, 3, strides=2, padding="same", name="c1")(x)
    y = L.Conv2D(16, 3, strides=2, padding="same", name="c2")(y)
    rows = by_name(keras.Model(x, y))
    assert rows["c1"].macs == 16 * 16 * 8 * (3 * 3 * 3)
    assert rows["c2"].macs == 8 * 8 * 16 * (3 * 3 * 8)
    assert (rows["c1"].rf_size, rows["c1"].rf_jump, rows["c1"].rf_start) == (3, 2, 1.5)
    assert (rows["c2"].rf_size, rows["c2"].rf_jump, rows["c2"].rf_start) == (7, 4, 3.5)
    assert rows["c2"].flops == 2 * rows["c2"].macs + 8 * 8 * 16  # the bias add


def test_residual_add_keeps_the_larger_field() -> None:
    x = keras.Input((16, 16, 4))
    a = L.Conv2D(4, 3, padding="same", use_bias=False)(x)
    b = L.Conv2D(4, 3, padding="same", use_bias=False)(a)
    y = L.Add(name="add")([x, b])
    rows = count(keras.Model(x, y))
    assert totals(rows)["macs"] == 2 * 16 * 16 * 4 * (3 * 3 * 4)
    add = rows[-1]
    assert (add.rf_size, add.elementwise_ops) == (5, 16 * 16 * 4)


def test_depthwise_separable_block() -> None:
    x = keras.Input((8, 8, 16))
    d = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    p = L.Conv2D(32, 1, use_bias=False, name="pw")(d)
    s = L.SeparableConv2D(32, 3, padding="same", use_bias=False, name="sep")(x)
    rows = by_name(keras.Model(x, [p, s]))
    assert rows["dw"].macs == 8 * 8 * 16 * 9
    assert rows["pw"].macs == 8 * 8 * 32 * 16
    assert rows["sep"].macs == rows["dw"].macs + rows["pw"].macs
    assert rows["dw"].groups == 16 and rows["sep"].rf_size == 3


def test_grouped_and_dilated_convolutions() -> None:
    x = keras.Input((16, 16, 8))
    g = L.Conv2D(8, 3, groups=4, padding="same", name="grouped")(x)
    d1 = L.Conv2D(1, 3, dilation_rate=2, name="dilated1")(g)
    d2 = L.Conv2D(1, 3, dilation_rate=2, name="dilated2")(d1)
    rows = by_name(keras.Model(x, d2))
    assert rows["grouped"].macs == 16 * 16 * 8 * (3 * 3 * 8 // 4)
    # A 3x3 kernel at dilation 2 spans 5 pixels: 16 -> 12 outputs, field +4.
    assert rows["dilated1"].macs == 12 * 12 * 1 * (3 * 3 * 8) and rows["dilated1"].rf_size == 3 + 4
    assert rows["dilated2"].rf_size == 3 + 4 + 4 and rows["dilated2"].dilation == "2x2"


def test_squeeze_excitation_and_preprocessing() -> None:
    x = keras.Input((8, 8, 16))
    r = L.Rescaling(1 / 127.5, offset=-1, name="rescale")(x)
    squeeze = L.GlobalAveragePooling2D(keepdims=True, name="squeeze")(r)
    excite = L.Conv2D(16, 1, activation="sigmoid", name="excite")(squeeze)
    y = L.Multiply(name="scale")([r, excite])
    rows = by_name(keras.Model(x, y))
    assert rows["rescale"].elementwise_ops == 2 * 8 * 8 * 16
    assert rows["squeeze"].rf_size == 8 and rows["scale"].rf_size == 8
    assert rows["excite"].macs == 16 * 16


def test_nested_models_are_flattened_with_qualified_names() -> None:
    inner = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, name="conv")], name="backbone")
    x = keras.Input((8, 8, 3))
    y = L.Dense(2, name="out")(L.GlobalAveragePooling2D()(inner(x)))
    rows = by_name(keras.Model(x, y))
    assert rows["backbone/conv"].macs == 6 * 6 * 4 * 27
    assert rows["out"].macs == 4 * 2


def test_vgg16_receptive_field_at_block5_pool_is_212() -> None:
    model = keras.applications.VGG16(input_shape=(224, 224, 3), include_top=False, weights=None)
    assert by_name(model)["block5_pool"].rf_size == 212


def test_resnet50_macs_match_the_published_figure() -> None:
    model = keras.applications.ResNet50(input_shape=(224, 224, 3), include_top=False, weights=None)
    assert totals(count(model))["macs"] == pytest.approx(3.86e9, rel=0.01)


def test_plain_keras_flops_import_fails_on_this_tensorflow() -> None:
    # The upstream bug our import works around; if this starts passing, the workaround can go.
    code = "import clothing.tf, keras_flops"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0 and "Registering two statistical functions" in result.stderr


def test_keras_flops_counts_what_hand_arithmetic_says() -> None:
    """keras-flops (tf.profiler) and our counter against the same hand-derived figures."""
    assert hasattr(import_keras_flops(), "get_flops")
    x = keras.Input((32, 32, 3))
    y = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(x)
    y = L.Conv2D(16, 3, padding="same", use_bias=False)(y)
    y = L.GlobalAveragePooling2D()(y)
    model = keras.Model(x, L.Dense(5, use_bias=False)(y))
    macs = 16 * 16 * 8 * (3 * 3 * 3) + 16 * 16 * 16 * (3 * 3 * 8) + 16 * 5
    assert totals(count(model))["macs"] == macs
    # tf.profiler: 2 per multiply-accumulate, and 1 per input element of the global mean.
    assert keras_flops_total(model) == 2 * macs + 16 * 16 * 16
    assert sum(flops_by_op_type(model).values()) == 2 * macs + 16 * 16 * 16


@pytest.mark.parametrize(("alpha", "published_mmacs"), [(1.0, 300), (0.75, 209), (0.5, 97), (0.35, 59)])
def test_mobilenet_v2_widths_match_the_published_macs(alpha: float, published_mmacs: int) -> None:
    """Sandler et al. (2018), Keras' MobileNetV2 table: MACs at 224 px with the 1000-class top."""
    model = keras.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=alpha, include_top=True, weights=None)
    assert totals(count(model))["macs"] / 1e6 == pytest.approx(published_mmacs, rel=0.01)


LITE_PUBLISHED_MOPS = [("efficientnet_lite0", 407), ("efficientnet_lite1", 631), ("efficientnet_lite2", 899)]


@pytest.mark.parametrize(("backbone", "published_mops"), LITE_PUBLISHED_MOPS)
def test_efficientnet_lite_matches_the_published_op_counts(backbone: str, published_mops: int) -> None:
    """Google's EfficientNet-Lite table (tensorflow/tpu, efficientnet/lite) at each native size, 1000-class top.

    Its "FLOPs" are MACs plus the elementwise ops (batch norm, ReLU6, adds): our MACs alone are
    5 % fewer (385, 600 and 860 M), where MobileNetV2's published table counts MACs only.
    """
    size = VARIANTS[backbone][2]
    cost = totals(count(efficientnet_lite(backbone, (size, size, 3), include_top=True)))
    assert (cost["macs"] + cost["elementwise_ops"]) / 1e6 == pytest.approx(published_mops, rel=0.01)


def test_analyze_complexity_stage_through_dvc(project: Path) -> None:
    update_params(project, {"train": TINY_TRAIN | {"backbone": "mobilenet_v2", "image_size": 64}})
    run(project, "dvc", "init", "--no-scm", "-q")
    run(project, "dvc", "repro", "analyze_complexity")
    summary = json.loads((project / "metrics/complexity.json").read_text())
    assert summary["keras_flops"]["conv_dense_difference"] < 0.01
    variants = summary["variants"]
    assert set(variants) == {"as_trained", "input_48", "input_32", "width_0.75", "width_0.5", "width_0.35"}
    assert summary["macs"] == variants["as_trained"]
    # Each variant is the backbone rebuilt: the same counter on a MobileNetV2 built by hand here.
    slim = keras.applications.MobileNetV2(input_shape=(64, 64, 3), alpha=0.5, include_top=False, weights=None)
    head = L.Dense(3)(L.GlobalAveragePooling2D()(slim.output))
    assert variants["width_0.5"] == totals(count(keras.Model(slim.input, head)))["macs"]
    assert len(summary["top10_layers_by_macs"]) == 10
    layers = (project / "metrics/complexity/layers.csv").read_text().splitlines()
    assert layers[0].startswith("name,type,input_shape,output_shape,kernel,stride,dilation")
    report = (project / "metrics/complexity/report.md").read_text()
    assert "## Receptive field" in report and "keras-flops" in report
