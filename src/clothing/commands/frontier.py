"""The accuracy / cost frontier: every measured model side by side, timed on one machine in one run.

    python -m clothing.commands.frontier [POINT ...] [--reference POINT]

Each point is a DVC experiment name or a git revision (default: the list in
``FRONTIER_POINTS`` below). For each, the metrics it committed are read (test scores and
their intervals, MACs, parameters, int8 size and accuracy, train time) and its int8
``.tflite`` is taken from the DVC cache by the hash its ``dvc.lock`` records, gzip-compressed
for the download size, and timed for one photo on one thread here, all points in this one
process, so the latencies compare. Each point is also compared with the reference on the
same test photos (:mod:`clothing.commands.compare`): a difference whose 95 % interval includes 0 is
labelled noise. Writes ``metrics/frontier.csv`` and ``metrics/frontier.png``.

    python -m clothing.commands.frontier --add POINT ... [--anchor HEAD]

adds points to the committed frontier when its other models cannot be timed again here
(another kind of CPU, or their models not in this cache). Each new int8 model is timed in
this run beside the anchor's (a point of the table), and its latency on the table's CPU
is *estimated* by the anchor's ratio: the row says so (``int8_ms_estimated``) and keeps
what was measured here (``int8_ms_here``, the anchor's ``anchor_ms_here``, ``cpu``).
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from clothing.analysis.latency import single_image_latency
from clothing.analysis.metrics import BootstrapParams, bootstrap_intervals, bootstrap_params, encoded
from clothing.commands import command_parser
from clothing.commands.compare import paired_comparison, predictions_at
from clothing.commands.experiments import cached_output, file_at
from clothing.errors import PipelineError, exit_code
from clothing.files import read_table, write_csv
from clothing.system import cpu_description

CSV, PNG = Path("metrics/frontier.csv"), Path("metrics/frontier.png")
INT8 = "models/tflite/model_int8.tflite"
# The committed sweep: docs/results.md gives the `dvc exp run` command of each.
FRONTIER_POINTS = [
    # MobileNetV2 at 224 px (the default) to 128 px; the git tag dataset-labels is the
    # default run before the reviewed label corrections, which the sweep also predates.
    *("dataset-labels", "res192", "res160", "res128"),
    "HEAD",  # the default trained on the reviewed labels (data/relabel.csv)
    *("lite0", "lite1", "lite2", "baseline"),  # other backbones
    *("prune50", "prune75"),  # MobileNetV2 224, its fine-tuned part pruned
]


def measure(point: str, reference: pd.DataFrame, bootstrap: BootstrapParams, warmup: int, runs: int) -> dict:
    """One row of the frontier: what ``point`` committed, and its int8 model timed here."""
    scores = json.loads(file_at(point, "metrics/eval.json"))
    complexity = json.loads(file_at(point, "metrics/complexity.json"))
    int8 = json.loads(file_at(point, "metrics/quantize.json"))["int8"]
    timing = json.loads(file_at(point, "metrics/timing/train.json"))
    params = yaml.safe_load(file_at(point, "params.yaml"))["train"]
    model = cached_output(point, INT8)
    answers = predictions_at(point)
    labels, predicted, classes = encoded(answers["actual"], answers["predicted"])
    interval = bootstrap_intervals(labels, predicted, len(classes), bootstrap)["accuracy"]
    versus = paired_comparison(reference, answers, bootstrap)
    size = network_size(complexity, int8)
    return {
        "point": point,
        "backbone": params["backbone"],
        "image_size": params["image_size"],
        "accuracy": scores["accuracy"],
        "accuracy_low": interval["low"],
        "accuracy_high": interval["high"],
        "macro_f1": scores["macro_f1"],
        "weighted_f1": scores["weighted_f1"],
        "macs_m": size["macs_m"],
        "params_m": size["params_m"],
        "int8_accuracy": int8["accuracy"],
        "int8_mb": size["int8_mb"],
        "int8_gzip_mb": round(len(gzip.compress(model.read_bytes(), 9)) / 1e6, 3),
        "int8_ms_1_thread": int8_latency(model, warmup, runs),
        "train_min": round(timing["wall_seconds"]["total"] / 60, 1),
        "sparsity": json.loads(file_at(point, "metrics/train.json")).get("pruned", {}).get("prunable_kernels", 0.0),
        "vs_reference": versus["difference"],
        "vs_reference_low": versus["difference_ci95"][0],
        "vs_reference_high": versus["difference_ci95"][1],
        "vs_reference_noise": versus["difference_ci95"][0] <= 0 <= versus["difference_ci95"][1],
    }


def int8_latency(model: Path, warmup: int, runs: int) -> float:
    """Median milliseconds for one photo on one thread (content does not change an int8 model's time)."""
    from clothing.models.classifier import tflite_forward

    forward, size = tflite_forward(model, threads=1)
    image = np.random.default_rng(0).uniform(-1, 1, (size, size, 3)).astype(np.float32)
    return single_image_latency(forward, image, warmup, runs)["median_ms"]


def pareto(costs: pd.Series, accuracy: pd.Series) -> pd.Series:
    """True where no other point is at least as accurate for at most the cost, and better in one."""
    return pd.Series(
        [
            not ((accuracy >= a) & (costs <= c) & ((accuracy > a) | (costs < c))).any()
            for a, c in zip(accuracy, costs, strict=True)
        ],
        index=costs.index,
    )


# Each cost against the accuracy of the model that pays it: the int8 file's latency and size
# buy the int8 model's accuracy, which can differ from the Keras model's by a point.
ACCURACY_OF = {"macs_m": "accuracy", "int8_ms_1_thread": "int8_accuracy", "int8_gzip_mb": "int8_accuracy"}


def with_pareto_flags(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with a ``pareto_<cost>`` column per cost in :data:`ACCURACY_OF`."""
    flags = {f"pareto_{cost}": pareto(table[cost], table[accuracy]) for cost, accuracy in ACCURACY_OF.items()}
    return table.assign(**flags)


def plot(table: pd.DataFrame, cpu: str, path: Path) -> None:
    from clothing.analysis.plots import plt, save_png

    figure, panels = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    for axes, cost, label in (
        (panels[0], "macs_m", "MMACs per photo"),
        (panels[1], "int8_ms_1_thread", f"int8 latency, 1 thread, ms ({cpu})"),
    ):
        column = ACCURACY_OF[cost]
        best, accuracy, keras_model = table[f"pareto_{cost}"], table[column], column == "accuracy"
        if keras_model:  # the intervals are the Keras model's
            errors = [accuracy - table["accuracy_low"], table["accuracy_high"] - accuracy]
            axes.errorbar(table[cost], accuracy, yerr=errors, fmt="none", ecolor="0.7", capsize=3)
        axes.scatter(table[cost][~best], accuracy[~best], c="tab:gray", label="dominated")
        axes.scatter(table[cost][best], accuracy[best], c="tab:red", label="Pareto")
        front = table[best].sort_values(cost)
        axes.plot(front[cost], front[column], "r--", lw=1)
        axes.set_ylabel(f"test accuracy{' (95 % interval)' if keras_model else ', int8 model'}")
        for _, row in table.iterrows():
            where = (row[cost], row[column])
            estimated = cost == "int8_ms_1_thread" and bool(row.get("int8_ms_estimated", False))
            name = f"{row['point']} (estimate)" if estimated else row["point"]
            axes.annotate(name, where, fontsize=7, xytext=(4, 4), textcoords="offset points")
        axes.set(xlabel=label, xscale="log")
        axes.legend(loc="lower right")
    figure.suptitle("Accuracy against cost: each point a DVC experiment")
    save_png(figure, path)


def network_size(complexity: dict, int8: dict) -> dict[str, float]:
    """MMACs, M parameters and int8 MB as the table rounds them: what an int8 model's time depends on."""
    return {
        "macs_m": round(complexity["macs"] / 1e6, 1),
        "params_m": round(complexity["params"] / 1e6, 3),
        "int8_mb": int8["size_mb"],
    }


def check_same_network(anchor: str, row: pd.Series) -> None:
    """The anchor's int8 model must be the network the table timed: its time depends on the layers, not the
    weights (int8 arithmetic is the same whatever the values), so the same MACs, parameters and file size."""
    complexity = json.loads(file_at(anchor, "metrics/complexity.json"))
    int8 = json.loads(file_at(anchor, "metrics/quantize.json"))["int8"]
    now = tuple(network_size(complexity, int8).values())
    then = (float(row["macs_m"]), float(row["params_m"]), float(row["int8_mb"]))
    if now != then:
        raise PipelineError(f"{anchor}: now {now} MMACs, M params, int8 MB, not the timed {then}: not the same network")


def cpu_label(cpu: dict) -> str:
    """A CPU (:func:`clothing.system.cpu_description`) as the table's ``cpu`` column names it."""
    return f"{cpu['model']} ({', '.join(cpu['extensions'])})"


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("python -m clothing.commands.frontier", __doc__)
    parser.add_argument("points", nargs="*", default=FRONTIER_POINTS, help="experiment names or revisions")
    parser.add_argument("--reference", help="the point the others are compared with (default: the first)")
    parser.add_argument("--add", nargs="+", metavar="POINT", help="add these points to the committed frontier")
    parser.add_argument("--anchor", default="HEAD", help="with --add: the point timed again beside them")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args(argv)
    if args.add:
        return exit_code(lambda: add_points(args.add, args.anchor, args.reference, args.warmup, args.runs))
    return exit_code(lambda: frontier(args.points, args.reference or args.points[0], args.warmup, args.runs))


def frontier(points: list[str], reference_point: str, warmup: int, runs: int) -> None:
    reference = predictions_at(reference_point)
    bootstrap = bootstrap_params()
    rows = [measure(point, reference, bootstrap, warmup, runs) for point in points]
    cpu = cpu_description()
    table = with_pareto_flags(pd.DataFrame(rows).assign(cpu=cpu_label(cpu)))
    write_csv(CSV, table)
    plot(table, cpu["model"], PNG)
    print(table.drop(columns="cpu").to_string(index=False))


def add_points(points: list[str], anchor: str, reference_point: str | None, warmup: int, runs: int) -> None:
    """The committed frontier with ``points`` measured and appended, their latency estimated via ``anchor``."""
    if not CSV.is_file():
        raise PipelineError(f"{CSV}: missing; python -m clothing.commands.frontier makes it")
    committed = read_table(CSV, text_columns=("point", "backbone", "cpu")).set_index("point", drop=False)
    if anchor not in committed.index:
        raise PipelineError(f"{CSV}: no point {anchor} to time the new points beside")
    anchor_row = committed.loc[anchor]
    if str(anchor_row.get("int8_ms_estimated", False)) == "True":
        raise PipelineError(f"{CSV}: {anchor}'s latency is itself an estimate: anchor on a measured point")
    if clash := sorted(set(points) & set(committed.index)):
        raise PipelineError(f"{CSV}: already has {', '.join(clash)}")
    check_same_network(anchor, anchor_row)
    reference = predictions_at(reference_point or committed["point"].iloc[0])
    rows = [measure(point, reference, bootstrap_params(), warmup, runs) for point in points]
    anchor_here = round(int8_latency(cached_output(anchor, INT8), warmup, runs), 3)
    scale = float(anchor_row["int8_ms_1_thread"]) / anchor_here
    cpu = cpu_label(cpu_description())
    for row in rows:
        row |= {
            "int8_ms_here": row["int8_ms_1_thread"],
            "anchor_ms_here": anchor_here,  # estimate = ms here x the anchor's ms in the table / this
            "int8_ms_1_thread": round(row["int8_ms_1_thread"] * scale, 3),
            "int8_ms_estimated": True,
            "cpu": cpu,
        }
    added = pd.DataFrame(rows)
    print(f"{anchor}: {anchor_here:.3f} ms here against {anchor_row['int8_ms_1_thread']} ms in the table")
    before = committed.reset_index(drop=True)
    if "int8_ms_estimated" not in before:  # a frontier timed in one run: every latency measured
        before["int8_ms_estimated"] = False
    table = with_pareto_flags(pd.concat([before, added], ignore_index=True))
    plot(table, str(before["cpu"].iloc[0]).split(" (")[0], PNG)
    write_csv(CSV, table)
    print(added.to_string(index=False))


if __name__ == "__main__":
    sys.exit(main())
