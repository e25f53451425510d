"""clean: exact kept and dropped counts on the tiny dataset, every drop named."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from conftest import CLASSES, EXPECTED_DROPPED, EXPECTED_KEPT, corrections, error_line, stage, update_params

from clothing.files import read_table


def cleaned(project: Path) -> tuple[pd.DataFrame, dict]:
    stage(project, "fetch")
    stage(project, "clean")
    labels = pd.read_csv(project / "data/clean/labels.csv", dtype=str)
    return labels, json.loads((project / "metrics/data.json").read_text())


def test_clean_keeps_and_drops_exactly(project: Path) -> None:
    labels, data = cleaned(project)
    distribution = read_table(project / "metrics/class_distribution.csv")
    assert dict(zip(distribution["label"], distribution["count"].astype(int), strict=True)) == EXPECTED_KEPT
    assert data["dropped_per_reason"] == EXPECTED_DROPPED
    assert data["kept"] == len(labels) == sum(EXPECTED_KEPT.values())
    assert data["classes"] == len(CLASSES)
    assert data["rows"] == 30 + 6


def test_clean_names_every_dropped_row(project: Path) -> None:
    cleaned(project)
    dropped = pd.read_csv(project / "metrics/dropped.csv", dtype=str, keep_default_na=False)
    assert dict(zip(dropped["image"], dropped["reason"], strict=True)) == {
        "t-shirt-gone": "missing_image",
        "shoes-corrupt": "unreadable_image",
        "junk-0": "excluded_label",
        "junk-1": "excluded_label",
        "junk-2": "excluded_label",
        "pants-copy": "duplicate_image",
        "no-row": "no_label_row",
    }


def test_clean_normalises_label_spelling(project: Path) -> None:
    labels, _ = cleaned(project)
    assert set(labels["label"]) == set(CLASSES)
    assert labels.set_index("image").loc["t-shirt-03", "label"] == "T-Shirt"


def test_clean_writes_paths_that_exist(project: Path) -> None:
    labels, _ = cleaned(project)
    assert all((project / path).is_file() for path in labels["path"])


def test_clean_keep_labels_selects_classes(project: Path) -> None:
    update_params(project, {"clean": {"keep_labels": ["Pants", "Shoes"]}})
    labels, data = cleaned(project)
    assert set(labels["label"]) == {"Pants", "Shoes"}
    assert data["kept"] == 20
    # T-Shirt rows are now excluded too (the missing one still counts as missing).
    assert data["dropped_per_reason"]["excluded_label"] == 3 + 10


def test_clean_unknown_class_is_one_clear_error(project: Path) -> None:
    update_params(project, {"clean": {"keep_labels": ["Pnats"]}})
    stage(project, "fetch")
    result = stage(project, "clean", check=False)
    assert error_line(result) == (
        "error: params.yaml: clean.keep_labels: unknown class 'Pnats' (did you mean 'Pants'?)"
    )
    assert not (project / "data/clean").exists()


def test_a_misspelled_kept_class_is_blamed_on_params_not_on_the_corrections(project: Path) -> None:
    """The correction to Pants is fine; the typo in keep_labels, which leaves Pants out, is what to fix."""
    (project / "data/relabel.csv").write_text(corrections("shoes-01,Pants,a pair of trousers"))
    update_params(project, {"clean": {"keep_labels": ["Pnats", "Shoes"]}})
    stage(project, "fetch")
    result = stage(project, "clean", check=False)
    assert error_line(result) == "error: params.yaml: clean.keep_labels: unknown class 'Pnats' (did you mean 'Pants'?)"


def test_clean_plots_the_class_distribution(project: Path) -> None:
    cleaned(project)
    distribution = pd.read_csv(project / "metrics/class_distribution.csv")
    assert dict(zip(distribution["label"], distribution["count"], strict=True)) == EXPECTED_KEPT
    assert (project / "metrics/class_distribution.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
