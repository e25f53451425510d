"""Classification scores, computed the same way for every model the pipeline measures."""

from __future__ import annotations

from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import Field, NonNegativeInt
from scipy.stats import bootstrap
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, top_k_accuracy_score

from clothing.params import Section, load_section

HEADLINE = ("accuracy", "macro_f1", "weighted_f1")
# probabilities.csv (evaluate, crossval) has these text columns, then one number per class.
PROBABILITY_TEXT = ("image", "label")


def scores(labels: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> dict[str, float]:
    """Accuracy, top-3, macro and weighted precision/recall/F1, and calibration error."""
    predicted = probabilities.argmax(axis=1)
    classes = np.arange(probabilities.shape[1])
    result = {
        "accuracy": accuracy_score(labels, predicted),
        "top3_accuracy": top_k_accuracy_score(labels, probabilities, k=min(3, len(classes)), labels=classes),
    }
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            labels, predicted, labels=classes, average=average, zero_division=0
        )
        result |= {f"{average}_precision": precision, f"{average}_recall": recall, f"{average}_f1": f1}
    result["ece"] = expected_calibration_error(labels, probabilities, bins)
    return {name: round(float(value), 4) for name, value in result.items()}


def headline_scores(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> dict[str, float]:
    """Accuracy, macro F1 and weighted F1 over all ``n_classes`` (as :func:`scores` computes them)."""
    classes = np.arange(n_classes)
    return {
        "accuracy": accuracy_score(labels, predicted),
        "macro_f1": f1_score(labels, predicted, labels=classes, average="macro", zero_division=0),
        "weighted_f1": f1_score(labels, predicted, labels=classes, average="weighted", zero_division=0),
    }


class BootstrapParams(Section):
    """evaluate.bootstrap_*: the one seeded bootstrap of every interval (evaluate, crossval, frontier, compare)."""

    bootstrap_resamples: Annotated[int, Field(ge=100)]
    bootstrap_seed: NonNegativeInt


def bootstrap_params() -> BootstrapParams:
    """params.yaml's evaluate.bootstrap_*, for the commands that compute intervals as evaluate does."""
    return load_section("evaluate", BootstrapParams, keys=BootstrapParams.model_fields)


def bootstrap_intervals(
    labels: np.ndarray, predicted: np.ndarray, n_classes: int, params: BootstrapParams
) -> dict[str, dict[str, float]]:
    """95 % percentile-bootstrap intervals of the headline scores, resampling the photos (seeded)."""

    def statistic(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        return np.array(list(headline_scores(labels, predicted, n_classes).values()))

    interval = bootstrap(
        (labels, predicted), statistic, paired=True, vectorized=False, n_resamples=params.bootstrap_resamples,
        method="percentile", rng=np.random.default_rng(params.bootstrap_seed),
    ).confidence_interval  # fmt: skip
    return {
        metric: {"low": round(float(low), 4), "high": round(float(high), 4)}
        for metric, low, high in zip(HEADLINE, interval.low, interval.high, strict=True)
    }


def encoded(actual: pd.Series, predicted: pd.Series) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Class names as indices into their sorted union: (labels, predicted, classes)."""
    classes = sorted(set(actual) | set(predicted))
    return actual.map(classes.index).to_numpy(), predicted.map(classes.index).to_numpy(), classes


def per_class(labels: np.ndarray, predicted: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=np.arange(len(class_names)), zero_division=0
    )
    return pd.DataFrame(
        {"class": class_names, "precision": precision, "recall": recall, "f1": f1, "support": support}
    ).round(4)


def reliability(labels: np.ndarray, probabilities: np.ndarray, bins: int) -> pd.DataFrame:
    """Per confidence bin: how many predictions, their mean confidence, and how many were right."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    frame = pd.DataFrame({"bin": which, "confidence": confidence, "correct": correct})
    table = frame.groupby("bin").agg(
        count=("correct", "size"), confidence=("confidence", "mean"), accuracy=("correct", "mean")
    )
    table = table.reindex(range(bins)).fillna({"count": 0})
    table.insert(0, "bin_low", edges[:-1])
    table.insert(1, "bin_high", edges[1:])
    return table.reset_index(drop=True)


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> float:
    table = reliability(labels, probabilities, bins).dropna()
    return float((table["count"] * (table["accuracy"] - table["confidence"]).abs()).sum() / len(labels))


def coverage(labels: np.ndarray, probabilities: np.ndarray, step: float = 0.05) -> pd.DataFrame:
    """For each confidence threshold: the share of photos at or above it, and the accuracy on those."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    rows = []
    for threshold in np.arange(0, 1, step):
        answered = confidence >= threshold
        accuracy = correct[answered].mean() if answered.any() else np.nan
        rows.append({"threshold": threshold, "coverage": answered.mean(), "accuracy": accuracy})
    return pd.DataFrame(rows)
