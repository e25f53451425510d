"""split: stratified, optionally grouped by sender, and byte-for-byte reproducible."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import CLASSES, error_line, stage, update_params

from clothing.files import read_table

SPLITS = ("train", "val", "test")


def split_files(project: Path) -> dict[str, bytes]:
    stage(project, "split")
    return {name: (project / f"data/split/{name}.csv").read_bytes() for name in SPLITS}


def read_splits(project: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_csv(project / f"data/split/{name}.csv", dtype=str) for name in SPLITS}


@pytest.fixture()
def cleaned(project: Path) -> Path:
    stage(project, "fetch")
    stage(project, "clean")
    return project


def test_split_is_stratified_and_disjoint(cleaned: Path) -> None:
    split_files(cleaned)
    parts = read_splits(cleaned)
    assert {name: len(part) for name, part in parts.items()} == {"train": 24, "val": 3, "test": 3}
    for name in ("val", "test"):
        assert sorted(parts[name]["label"]) == sorted(CLASSES), name
    images = [set(part["image"]) for part in parts.values()]
    assert sum(map(len, images)) == len(set.union(*images)) == 30
    metrics = json.loads((cleaned / "metrics/split.json").read_text())
    assert metrics["train"]["total"] == 24
    by_class = read_table(cleaned / "metrics/split/per_class.csv").set_index("class")
    assert by_class["test"].astype(int).to_dict() == {label: 1 for label in CLASSES}
    assert by_class["train"].astype(int).sum() == 24


def test_split_is_byte_identical_for_the_same_seed(cleaned: Path) -> None:
    first = split_files(cleaned)
    assert split_files(cleaned) == first
    update_params(cleaned, {"split": {"seed": 7}})
    assert split_files(cleaned) != first


def test_split_by_sender_never_shares_a_sender(cleaned: Path) -> None:
    update_params(cleaned, {"split": {"group_by_sender": True}})
    split_files(cleaned)
    senders = {name: set(part["sender_id"]) for name, part in read_splits(cleaned).items()}
    assert not senders["train"] & senders["val"]
    assert not senders["train"] & senders["test"]
    assert not senders["val"] & senders["test"]
    assert json.loads((cleaned / "metrics/split.json").read_text())["senders_in_several_splits"] == 0


def test_split_without_grouping_reports_shared_senders(cleaned: Path) -> None:
    split_files(cleaned)
    assert json.loads((cleaned / "metrics/split.json").read_text())["senders_in_several_splits"] > 0


def test_split_rejects_fractions_that_do_not_sum_to_one(cleaned: Path) -> None:
    update_params(cleaned, {"split": {"train": 0.7}})
    result = stage(cleaned, "split", check=False)
    assert error_line(result) == "error: params.yaml: split: train + val + test must sum to 1, got 0.9"
    assert not (cleaned / "data/split").exists()
