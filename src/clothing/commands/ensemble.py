"""An ensemble of cross-validation runs: the average of their members' class probabilities.

    python -m clothing.commands.ensemble --name ens-seeds cv5r cv5r-seed7

Each member is a cross-validation run of the same folds (``python -m clothing.commands.crossval``
with the same ``split.*``). Every photo's probabilities in a member come from the fold model
that did not train on it, so their average is the ensemble's out-of-fold answer: scoring an
ensemble costs no training. It is written as a cross-validation run is
(``metrics/cv/<name>.json``, ``_folds``, ``_predictions``, ``_probabilities``, ``_per_class``),
so ``compare --cross-validation`` and the label audit read it as they read one. Its cost at
inference is the sum of its members' (each photo goes through every member).
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from clothing.analysis.metrics import HEADLINE, PROBABILITY_TEXT, headline_scores, per_class
from clothing.commands import command_parser
from clothing.commands.crossval import pooled_summary, run_file, write_run
from clothing.errors import PipelineError, exit_code
from clothing.files import read_table


def member_probabilities(name: str) -> pd.DataFrame:
    """A cross-validation run's out-of-fold probabilities (image, label, one column per class, fold), checked."""
    path = run_file(name, "probabilities")
    table = read_table(path, text_columns=PROBABILITY_TEXT)
    missing = [column for column in (*PROBABILITY_TEXT, "fold") if column not in table.columns]
    if missing or table.empty:
        raise PipelineError(f"{path}: {'no column ' + ', '.join(missing) if missing else 'no photos'}")
    classes = _classes(table)
    if not classes or not all(pd.api.types.is_numeric_dtype(table[c]) for c in classes):
        raise PipelineError(f"{path}: the class columns must hold probabilities (numbers)")
    if table["image"].duplicated().any():
        raise PipelineError(f"{path}: photo {table['image'][table['image'].duplicated()].iloc[0]} is scored twice")
    if unknown := sorted(set(table["label"]) - set(classes)):
        raise PipelineError(f"{path}: labels without a probability column: {unknown}")
    return table.sort_values("image", ignore_index=True)


def average(members: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The members' mean probabilities, photo by photo; refused unless they scored the same photos,
    with the same labels and folds and the same classes."""
    (first, reference), *others = members.items()
    for name, member in others:
        for what, column in (("photos", "image"), ("labels", "label"), ("folds", "fold")):
            if not member[column].equals(reference[column]):
                raise PipelineError(f"{name} and {first} differ in their {what}: not members of one ensemble")
        if list(member.columns) != list(reference.columns):
            raise PipelineError(f"{name} and {first} have different classes: not members of one ensemble")
    classes = _classes(reference)
    mean = np.mean([member[classes].to_numpy(float) for member in members.values()], axis=0)
    return (
        reference[["image", "label"]].join(pd.DataFrame(mean.round(5), columns=classes)).assign(fold=reference["fold"])
    )


def _classes(probabilities: pd.DataFrame) -> list[str]:
    return [column for column in probabilities.columns if column not in (*PROBABILITY_TEXT, "fold")]


def predictions_of(probabilities: pd.DataFrame) -> pd.DataFrame:
    """image, actual, predicted, confidence, fold: as crossval writes a run's predictions."""
    classes = _classes(probabilities)
    values = probabilities[classes].to_numpy(float)
    return pd.DataFrame({
        "image": probabilities["image"],
        "actual": probabilities["label"],
        "predicted": np.array(classes)[values.argmax(axis=1)],
        "confidence": values.max(axis=1).round(4),
        "fold": probabilities["fold"],
    })  # fmt: skip


def fold_scores(predictions: pd.DataFrame, classes: list[str]) -> tuple[pd.DataFrame, list[dict[str, float]]]:
    """Each fold's headline scores and per-class F1, over all ``classes`` as evaluate scores a fold."""
    rows, class_f1 = [], []
    for fold, answered in predictions.groupby("fold"):
        labels, predicted = (answered[c].map(classes.index).to_numpy() for c in ("actual", "predicted"))
        headline = headline_scores(labels, predicted, len(classes))
        rows.append({"fold": fold, "test_images": len(answered)} | {m: round(float(headline[m]), 4) for m in HEADLINE})
        f1 = per_class(labels, predicted, classes)
        class_f1.append(dict(zip(f1["class"], f1["f1"], strict=True)))
    return pd.DataFrame(rows), class_f1


def write_ensemble(name: str, members: list[str]) -> None:
    probabilities = average({member: member_probabilities(member) for member in members})
    predictions = predictions_of(probabilities)
    folds, class_f1 = fold_scores(predictions, _classes(probabilities))
    summary, by_class = pooled_summary(name, folds, predictions, class_f1)
    write_run(name, summary | {"members": members}, folds, predictions, probabilities, by_class)


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("python -m clothing.commands.ensemble", __doc__)
    parser.add_argument("members", nargs="+", help="cross-validation runs' names (metrics/cv/<name>_probabilities.csv)")
    parser.add_argument("--name", required=True, help="the ensemble's file name prefix under metrics/cv/")
    args = parser.parse_args(argv)
    if len(args.members) < 2 or len(set(args.members)) < len(args.members):
        parser.error("an ensemble needs two or more members, each named once")
    if args.name in args.members:
        parser.error(f"--name {args.name} would overwrite a member's files")
    return exit_code(lambda: write_ensemble(args.name, args.members))


if __name__ == "__main__":
    sys.exit(main())
