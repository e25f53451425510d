"""K-fold cross-validation: one DVC experiment per fold, then one summary of them all.

    python -m clothing.commands.crossval --folds 5 [--name cv5] [-S key=value ...] [--queue-only | --summary-only]

Fold k is the pipeline up to evaluate with ``split.folds=K`` and ``split.fold=k`` (and
the ``-S`` values given), queued as the experiment ``{name}-fold{k}``; then DVC's queue
runs (``dvc exp run --run-all``: every queued experiment, one after another). With
``--queue-only`` the folds are queued and nothing runs (a worker already running takes
them, or ``dvc queue start``); ``--summary-only`` then summarises them. Each fold's
test split is a different fifth (for K = 5) of the photos, so every photo is scored once,
by the model that did not train on it.

The summary reads what each experiment committed (its metrics files are in git) and writes
``metrics/cv/{name}.json`` (a DVC metric: mean, sd, min and max over folds of accuracy,
macro F1 and weighted F1, and the pooled out-of-fold scores with bootstrap intervals from
params.yaml's ``evaluate.bootstrap_*``), ``metrics/cv/{name}_per_class.csv`` (per-class F1
over folds and pooled, with support), ``metrics/cv/{name}_folds.csv`` and
``metrics/cv/{name}_predictions.csv`` (every photo's out-of-fold prediction) and
``metrics/cv/{name}_probabilities.csv`` (its out-of-fold probability for every class: the
label audit's input).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from pydantic import ValidationError

from clothing.analysis.metrics import (
    HEADLINE,
    PROBABILITY_TEXT,
    bootstrap_intervals,
    bootstrap_params,
    encoded,
    headline_scores,
    per_class,
)
from clothing.commands import command_parser
from clothing.commands.experiments import file_at, table_at
from clothing.errors import PipelineError, exit_code
from clothing.files import write_csv, write_json
from clothing.models.distillation import TEACHERS, DistillParams
from clothing.params import Section, load_section

OUT = Path("metrics/cv")


def queue(name: str, folds: int, settings: list[str]) -> None:
    sets = [arg for setting in settings for arg in ("-S", setting)]
    targets = ["evaluate", *teacher_targets(settings)]
    for fold in range(folds):
        split = ["-S", f"split.folds={folds}", "-S", f"split.fold={fold}"]
        _dvc("exp", "run", "--queue", "--force", "--name", f"{name}-fold{fold}", *split, *sets, *targets)


class TrainDistill(Section):
    distill: DistillParams


def teacher_targets(settings: list[str]) -> list[str]:
    """The .dvc files of the teachers the run distils from (params.yaml's, or a -S setting's).

    An experiment run with a target checks out only the DVC data upstream of it, and teach
    depends on the teachers' registry, not on their data: naming each teacher's .dvc file
    as a target too brings the teacher into the experiment's copy.
    """
    distill = load_section("train", TrainDistill, keys=("distill",)).distill
    for setting in settings:
        target, _, value = setting.partition("=")
        key = target.rpartition(":")[2].lstrip("+")  # DVC's -S takes [file:][+|++]key=value
        if key == "train.distill.teachers":
            distill = overridden(distill, setting, f"{key}={value}")
    tracked = [TEACHERS / f"{teacher}.dvc" for teacher in distill.teachers]
    if missing := [path for path in tracked if not path.is_file()]:
        name = missing[0].stem
        raise PipelineError(
            f"{TEACHERS / name}: not tracked by DVC (no {missing[0]}), so a queued experiment would not have it: "
            f"python -m clothing.commands.teachers {name} --register tracks it"
        )
    return [str(path) for path in tracked]


def overridden(distill: DistillParams, setting: str, override: str) -> DistillParams:
    """``distill`` with a -S setting's teachers, read as DVC reads -S (Hydra) and checked as teach checks them."""
    try:
        teachers = OverridesParser.create().parse_override(override).value()
        return DistillParams.model_validate(distill.model_dump() | {"teachers": teachers})
    except (HydraException, ValidationError) as error:
        reason = error.errors()[0]["msg"].removeprefix("Value error, ") if isinstance(error, ValidationError) else error
        raise PipelineError(f"-S {setting}: should be a list of teacher names, like [lite0] ({reason})") from None


def summarize(name: str, folds: int) -> tuple[dict, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(summary, one row per fold, every photo's out-of-fold prediction, its probabilities, and per-class F1)."""
    rows, predictions, probabilities, class_f1 = [], [], [], []
    for fold in range(folds):
        experiment = f"{name}-fold{fold}"
        scores = json.loads(file_at(experiment, "metrics/eval.json"))
        rows.append({"fold": fold, "test_images": scores["test_images"]} | {m: scores[m] for m in HEADLINE})
        fold_classes = table_at(experiment, "metrics/eval/per_class.csv", text_columns=("class",))
        class_f1.append(dict(zip(fold_classes["class"], fold_classes["f1"], strict=True)))
        answered = table_at(experiment, "metrics/eval/predictions.csv")
        predictions.append(answered.assign(fold=fold))
        scored = table_at(experiment, "metrics/eval/probabilities.csv", text_columns=PROBABILITY_TEXT)
        probabilities.append(scored.assign(fold=fold))
    table, pooled = pd.DataFrame(rows), pd.concat(predictions, ignore_index=True)
    summary, class_table = pooled_summary(name, table, pooled, class_f1)
    return summary, table, pooled, pd.concat(probabilities, ignore_index=True), class_table


def pooled_summary(
    name: str, by_fold: pd.DataFrame, pooled: pd.DataFrame, class_f1: list[dict[str, float]]
) -> tuple[dict, pd.DataFrame]:
    """The run's summary (spread over folds, pooled scores with intervals) and its per-class F1 table.

    ``by_fold``: one row per fold with the headline scores; ``pooled``: every photo's
    out-of-fold prediction (image, actual, predicted); ``class_f1``: per fold, class -> F1.
    """
    if pooled["image"].duplicated().any():
        raise PipelineError(f"{name}: a photo is in two folds' test splits: were they run with different seeds or K?")
    labels, predicted, classes = encoded(pooled["actual"], pooled["predicted"])
    f1_over_folds = pd.DataFrame(class_f1).mean()
    by_class = per_class(labels, predicted, classes)
    summary = {
        "folds": len(by_fold),
        "photos": len(pooled),
        **{metric: _spread(by_fold[metric]) for metric in HEADLINE},
        # Every photo scored once, by the fold model that did not train on it.
        "pooled": {m: round(float(v), 4) for m, v in headline_scores(labels, predicted, len(classes)).items()}
        | {"ci95": bootstrap_intervals(labels, predicted, len(classes), bootstrap_params())},
    }
    class_table = pd.DataFrame({
        "class": by_class["class"],
        "f1_mean_over_folds": [round(float(f1_over_folds[name]), 4) for name in by_class["class"]],
        "f1_pooled": by_class["f1"].round(4),
        "support": by_class["support"].astype(int),
    })  # fmt: skip
    return summary, class_table


def _spread(values: pd.Series) -> dict[str, float]:
    return {
        "mean": round(values.mean(), 4),
        "sd": round(values.std(ddof=1), 4),
        "min": round(values.min(), 4),
        "max": round(values.max(), 4),
    }


def _dvc(*args: str) -> None:
    print("$ dvc " + " ".join(args), flush=True)
    if subprocess.run(["dvc", *args]).returncode != 0:
        raise PipelineError(f"dvc {' '.join(args)} failed")


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("python -m clothing.commands.crossval", __doc__)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--name", help="experiment and file name prefix (default: cv{folds})")
    parser.add_argument("-S", "--set-param", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--queue-only", action="store_true", help="queue the folds; run nothing")
    only.add_argument("--summary-only", action="store_true", help="summarize experiments that already ran")
    args = parser.parse_args(argv)
    if args.folds < 2:
        parser.error("--folds must be 2 or more")
    name = args.name or f"cv{args.folds}"
    if args.queue_only:
        return exit_code(lambda: queue(name, args.folds, args.settings))
    return exit_code(lambda: cross_validate(name, args.folds, args.settings, args.summary_only))


def cross_validate(name: str, folds: int, settings: list[str], summary_only: bool) -> None:
    if not summary_only:
        queue(name, folds, settings)
        _dvc("exp", "run", "--run-all")
    summary, by_fold, predictions, probabilities, by_class = summarize(name, folds)
    write_run(name, summary | {"settings": settings}, by_fold, predictions, probabilities, by_class)


def run_file(name: str, kind: str) -> Path:
    """``metrics/cv/<name>_<kind>.csv`` of a cross-validation run (or an ensemble), which must exist."""
    path = OUT / f"{name}_{kind}.csv"
    if not path.is_file():
        raise PipelineError(f"{path}: missing; python -m clothing.commands.crossval --name {name} writes it")
    return path


def write_run(
    name: str,
    summary: dict,
    by_fold: pd.DataFrame,
    predictions: pd.DataFrame,
    probabilities: pd.DataFrame,
    by_class: pd.DataFrame,
) -> None:
    """metrics/cv/<name>.json, _folds.csv, _predictions.csv, _probabilities.csv and _per_class.csv."""
    write_json(OUT / f"{name}.json", summary)
    write_csv(OUT / f"{name}_folds.csv", by_fold)
    write_csv(OUT / f"{name}_predictions.csv", predictions)
    write_csv(OUT / f"{name}_probabilities.csv", probabilities)
    write_csv(OUT / f"{name}_per_class.csv", by_class)
    accuracy, pooled = summary["accuracy"], summary["pooled"]["accuracy"]
    spread = f"{accuracy['mean']:.4f} ± {accuracy['sd']:.4f} (sd over {len(by_fold)} folds)"
    print(f"{name}: accuracy {spread}, pooled {pooled:.4f}")


if __name__ == "__main__":
    sys.exit(main())
