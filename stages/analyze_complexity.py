"""analyze-complexity: models/model.keras -> metrics/complexity.json and metrics/complexity/.

Per-layer parameters, MACs, FLOPs and receptive field from clothing.analysis.complexity, the
total cross-checked against keras-flops (tf.profiler) on the model's frozen graph, and
the MACs of cheaper variants (smaller input, narrower network), each built and counted.
What pruning saves is measured, not counted here: a runtime skips zeros or it does not.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from clothing.analysis.complexity import LayerCost, count, totals
from clothing.analysis.plots import plt, save_png
from clothing.analysis.profiler import flops_by_op_type, keras_flops_total
from clothing.errors import run_stage
from clothing.files import atomic_file, write_csv, write_json
from clothing.models.classifier import load_classifier
from clothing.models.networks import build_backbone
from clothing.tf import keras

MODEL = Path("models/model.keras")
OUT = Path("metrics/complexity")
CONV_DENSE_OPS = ("Conv2D", "DepthwiseConv2dNative", "MatMul")


def main() -> None:
    classifier = load_classifier(MODEL)
    model, info = classifier.keras_model, classifier.info
    rows = count(model)
    table = pd.DataFrame([row.row() for row in rows])
    total = totals(rows)

    profiled = flops_by_op_type(model)
    keras_flops = keras_flops_total(model)
    profiled_conv_dense = sum(profiled.get(op, 0) for op in CONV_DENSE_OPS)
    top = table.nlargest(10, "macs")[["name", "type", "macs"]].assign(
        share=lambda t: (t["macs"] / total["macs"]).round(4)
    )
    summary = {
        "input_size": info.image_size,
        **total,
        "receptive_field": receptive_fields(rows, info.image_size),
        "top10_layers_by_macs": top.to_dict(orient="records"),
        "keras_flops": {
            "total_flops": keras_flops,
            "ours_total_flops": total["flops"],
            "conv_dense_flops": profiled_conv_dense,
            "ours_conv_dense_flops": total["conv_dense_flops"],
            "conv_dense_difference": round(abs(profiled_conv_dense / total["conv_dense_flops"] - 1), 6),
            "by_op_type": profiled,
        },
        "variants": variants(rows, info.backbone, info.image_size, len(info.classes)),
    }
    write_json("metrics/complexity.json", summary)
    write_csv(OUT / "layers.csv", table)
    plot_macs(table, OUT / "macs_per_layer.png")
    with atomic_file(OUT / "report.md") as tmp:
        tmp.write_text(report(summary, table))
    print(f"analyze-complexity: {total['macs'] / 1e6:.1f} MMACs, {total['params'] / 1e6:.2f} M params")


def receptive_fields(rows: list[LayerCost], image_size: int) -> dict:
    """At the last convolution, and at the last layer of each spatial resolution."""
    convs = [r for r in rows if r.kernel and "Conv" in r.type]
    stages: dict[str, dict] = {}
    for row in rows:
        shape = row.output_shape.strip("()").split(", ")
        if len(shape) == 3 and row.type != "ZeroPadding2D":  # padding is not a resolution stage
            stages[f"{shape[0]}x{shape[1]}"] = {"layer": row.name, "size": row.rf_size, "jump": row.rf_jump}
    last = convs[-1]
    return {
        "last_conv": {"layer": last.name, "size": last.rf_size, "jump": last.rf_jump, "start": last.rf_start},
        "last_conv_vs_input": round(last.rf_size / image_size, 3),
        "by_resolution": stages,
    }


def variants(rows: list[LayerCost], backbone: str, size: int, n_classes: int) -> dict:
    """MACs of cheaper versions of this classifier, each built and counted, not estimated."""

    def macs_of(backbone_model: keras.Model) -> int:
        features = keras.layers.GlobalAveragePooling2D()(backbone_model.output)
        head = keras.layers.Dense(n_classes)(features)
        return totals(count(keras.Model(backbone_model.input, head)))["macs"]

    result = {"as_trained": totals(rows)["macs"]}
    for smaller in (size * 3 // 4, size // 2):  # Keras' applications need at least 32 pixels
        if smaller >= 32:
            result[f"input_{smaller}"] = macs_of(build_backbone(backbone, smaller))
    if backbone == "mobilenet_v2":
        for alpha in (0.75, 0.5, 0.35):
            result[f"width_{alpha}"] = macs_of(build_backbone(backbone, size, alpha=alpha))
    return result


def plot_macs(table: pd.DataFrame, path: Path) -> None:
    costly = table[table["macs"] > 0].reset_index(drop=True)
    figure, axes = plt.subplots(figsize=(14, 5))
    axes.bar(range(len(costly)), costly["macs"] / 1e6)
    axes.set_xticks(range(len(costly)), [name.split("/")[-1] for name in costly["name"]], rotation=90, fontsize=6)
    axes.set(ylabel="MMACs", title=f"MACs per layer (total {costly['macs'].sum() / 1e6:.1f} MMACs)")
    save_png(figure, path)


def report(summary: dict, table: pd.DataFrame) -> str:
    check = summary["keras_flops"]
    rf = summary["receptive_field"]
    lines = [
        "# Model complexity",
        "",
        f"Input {summary['input_size']}x{summary['input_size']}: **{summary['macs'] / 1e6:.1f} MMACs**, "
        f"{summary['flops'] / 1e6:.1f} MFLOPs, {summary['params'] / 1e6:.2f} M parameters.",
        "",
        "Convention: MACs are the multiply-accumulates of convolutions and dense layers; FLOPs are 2 x MACs "
        f"for those ({summary['conv_dense_flops'] / 1e6:.1f} M) plus the other layers' element-wise operations "
        f"({summary['elementwise_ops'] / 1e6:.1f} M: bias, batch norm = 2/element, activations, adds, pooling).",
        "",
        "## Cross-check with keras-flops (tf.profiler, frozen graph)",
        "",
        "| | ours | keras-flops |",
        "|---|---|---|",
        f"| conv + dense FLOPs | {check['ours_conv_dense_flops']:,} | {check['conv_dense_flops']:,} |",
        f"| total FLOPs | {check['ours_total_flops']:,} | {check['total_flops']:,} |",
        "",
        f"Conv/dense agree to {check['conv_dense_difference']:.4%}. The totals differ only in element-wise "
        "operations: tf.profiler counts FusedBatchNormV3 as 2/element plus a few per channel and AddV2 as "
        "1/element, but has no statistics for Relu6, Softmax or Mean, and the frozen graph has no separate "
        f"bias adds where layers fused them. Its op types: {check['by_op_type']}.",
        "",
        "## Where the compute goes",
        "",
        "| layer | type | MMACs | share |",
        "|---|---|---|---|",
        *[
            f"| {t['name']} | {t['type']} | {t['macs'] / 1e6:.1f} | {t['share']:.1%} |"
            for t in summary["top10_layers_by_macs"]
        ],
        "",
        "MACs by layer type: "
        + ", ".join(
            f"{k} {v / 1e6:.1f} M" for k, v in table.groupby("type")["macs"].sum().loc[lambda s: s > 0].items()
        ),
        "",
        "## Receptive field",
        "",
        f"At the last convolution ({rf['last_conv']['layer']}): {rf['last_conv']['size']:.0f} pixels "
        f"({rf['last_conv_vs_input']:.2f} x the input), effective stride {rf['last_conv']['jump']:.0f}.",
        "",
        "| resolution | last layer | receptive field | jump |",
        "|---|---|---|---|",
        *[f"| {res} | {v['layer']} | {v['size']:.0f} | {v['jump']:.0f} |" for res, v in rf["by_resolution"].items()],
        "",
        "## What would cut MACs (each variant built and counted)",
        "",
        "| variant | MMACs | vs. as trained |",
        "|---|---|---|",
        *[
            f"| {name} | {macs / 1e6:.1f} | {macs / summary['variants']['as_trained']:.0%} |"
            for name, macs in summary["variants"].items()
        ],
        "",
        "Quantization (see the quantize stage) keeps the MAC count but makes each one an int8 operation with "
        "4x smaller weights. Magnitude pruning is not listed: zeroed weights save MACs only on a runtime that "
        "skips them, so what it saves is a measurement of such a runtime, not a count.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    run_stage(main)
