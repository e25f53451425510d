"""evaluate: models/model.keras on data/split/test.csv -> metrics/eval.json and metrics/eval/.

The model's scores on the test split (quantize scores its TFLite variants on the same
photos; no stage chooses anything by them), with 95 % bootstrap intervals of the headline
scores (``ci95``): 510 photos leave about ±3 points of accuracy. With ``evaluate.tta_flip`` the mirrored-photo
average is reported beside the plain figures, under ``tta_flip``, never instead of them.
The test split is scored by the dataset's labels; ``reviewed_test_labels`` scores it by
the reviewed corrections (data/relabel.csv) beside, with the number of labels changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import Field
from sklearn.metrics import ConfusionMatrixDisplay

from clothing.analysis.metrics import (
    BootstrapParams,
    bootstrap_intervals,
    coverage,
    headline_scores,
    per_class,
    reliability,
    scores,
)
from clothing.analysis.plots import plt, save_gallery, save_png
from clothing.data.images import load_images
from clothing.errors import run_stage
from clothing.files import read_table, write_csv, write_json
from clothing.models.classifier import class_indices, load_classifier
from clothing.params import load_section

MODEL = Path("models/model.keras")
TEST = Path("data/split/test.csv")
OUT = Path("metrics/eval")


class EvaluateParams(BootstrapParams):
    tta_flip: bool  # also report the average over each photo and its mirror image, beside
    calibration_bins: Annotated[int, Field(ge=2)]
    gallery_size: Annotated[int, Field(ge=0)]


def main() -> None:
    params = load_section("evaluate", EvaluateParams)
    classifier = load_classifier(MODEL)
    classes = classifier.info.classes
    test = read_table(TEST)
    labels = class_indices(test["label"], classes, str(TEST))

    images = load_images(test["path"], classifier.info.image_size, desc="decode test")
    probabilities = classifier.predict(images)
    predicted = probabilities.argmax(axis=1)
    summary = {"test_images": len(test)} | scores(labels, probabilities, params.calibration_bins)
    summary["ci95"] = bootstrap_intervals(labels, predicted, len(classes), params)
    summary["reviewed_test_labels"] = reviewed_scores(test, probabilities, classes)
    if params.tta_flip:
        mirrored = classifier.predict(images[:, :, ::-1])
        summary["tta_flip"] = scores(labels, (probabilities + mirrored) / 2, params.calibration_bins)

    table = per_class(labels, predicted, classes)  # a plot and a CSV: too many keys for the DVC metric
    write_json("metrics/eval.json", summary)
    write_csv(OUT / "per_class.csv", table)
    predictions = pd.DataFrame({
        "image": test["image"],
        "actual": test["label"],
        "predicted": classifier.info.top1(probabilities),
        "confidence": probabilities.max(axis=1).round(4),
    })  # fmt: skip
    write_csv(OUT / "predictions.csv", predictions)
    # Every class's probability per photo: what a label audit (clothing.audit) needs.
    write_csv(OUT / "probabilities.csv", probability_table(test, probabilities, classes))
    bins = reliability(labels, probabilities, params.calibration_bins)
    write_csv(OUT / "reliability.csv", bins.round(4))
    # What `predict --min-confidence` trades: photos answered against accuracy on those.
    write_csv(OUT / "coverage.csv", coverage(labels, probabilities).round(4))

    plot_confusion(labels, predicted, classes, OUT / "confusion_normalized.png")
    plot_reliability(bins, summary["ece"], OUT / "reliability.png")
    plot_mistakes(images, predictions, params.gallery_size, OUT / "confident_mistakes.png")
    print(
        f"evaluate: accuracy {summary['accuracy']:.4f}, macro F1 {summary['macro_f1']:.4f}, "
        f"weighted F1 {summary['weighted_f1']:.4f} on {len(test)} test images"
    )


def reviewed_scores(test: pd.DataFrame, probabilities: np.ndarray, classes: list[str]) -> dict:
    """Headline scores against the reviewed labels, leaving out the photos reviewed as ``drop``."""
    kept = (test["reviewed_label"] != "drop").to_numpy()
    reviewed = class_indices(test["reviewed_label"][kept], classes, f"{TEST} (reviewed_label)")
    scored = headline_scores(reviewed, probabilities[kept].argmax(axis=1), len(classes))
    return {
        "changed": int((test["reviewed_label"] != test["label"]).sum()),
        "test_images": int(kept.sum()),
    } | {name: round(float(value), 4) for name, value in scored.items()}


def probability_table(test: pd.DataFrame, probabilities: np.ndarray, classes: list[str]) -> pd.DataFrame:
    columns = pd.DataFrame(probabilities.round(5), columns=classes)
    return pd.concat([test[["image", "label"]].reset_index(drop=True), columns], axis=1)


def plot_confusion(labels: np.ndarray, predicted: np.ndarray, classes: list[str], path: Path) -> None:
    side = max(10, 0.3 * len(classes))  # room for each class's name, whatever their number
    figure, axes = plt.subplots(figsize=(side + 1, side))
    ConfusionMatrixDisplay.from_predictions(
        labels, predicted, labels=range(len(classes)), display_labels=classes, normalize="true",
        include_values=len(classes) <= 40, values_format=".2f", cmap="Blues", ax=axes, colorbar=False,
        xticks_rotation="vertical",
    )  # fmt: skip
    axes.set_title("Test confusion matrix (rows sum to 1)")
    save_png(figure, path)


def plot_reliability(bins: pd.DataFrame, ece: float, path: Path) -> None:
    figure, axes = plt.subplots(figsize=(5, 5))
    filled = bins.dropna()
    width = bins["bin_high"] - bins["bin_low"]
    axes.bar(filled["bin_low"], filled["accuracy"], width=width[filled.index], align="edge", edgecolor="k")
    axes.plot([0, 1], [0, 1], "r--", label="perfect calibration")
    axes.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    axes.set_title(f"Reliability (ECE {ece:.3f})")
    axes.legend(loc="upper left")
    save_png(figure, path)


def plot_mistakes(images: np.ndarray, predictions: pd.DataFrame, count: int, path: Path) -> None:
    wrong = predictions[predictions["actual"] != predictions["predicted"]]
    worst = wrong.sort_values("confidence", ascending=False).head(count)
    titles = [f"true {row.actual}\npred {row.predicted} ({row.confidence:.2f})" for row in worst.itertuples()]
    save_gallery(images[worst.index], titles, "Most confident mistakes on the test split", path)


if __name__ == "__main__":
    run_stage(main)
