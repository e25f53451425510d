"""The label audit: planted label errors rank first; reviewed corrections reach training, not the test's score."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import (
    GIT_USER,
    TINY_TRAIN,
    Archive,
    commit_all,
    corrections,
    error_line,
    git_repo,
    make_archive,
    make_project,
    run,
    stage,
    update_params,
)

from clothing.files import read_table

# Photos given another class's label in the dataset itself: the audit must find them.
PLANTED = {"t-shirt-05": "Pants", "shoes-07": "T-Shirt"}
TRUE_LABEL = {"t-shirt-05": "T-Shirt", "shoes-07": "Shoes"}


@pytest.fixture(scope="module")
def mislabelled(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    return make_archive(tmp_path_factory.mktemp("mislabelled"), PLANTED)


def test_audit_ranks_planted_label_errors_first(tmp_path: Path, mislabelled: Archive) -> None:
    env = GIT_USER | {"HOME": str(tmp_path / "home")}
    project = make_project(tmp_path / "repo", mislabelled, audit=True)
    update_params(project, {"train": TINY_TRAIN, "audit": {"cross_validation": "cv3", "thumbnail_size": 32}})
    git_repo(project, env)
    commit_all(project, env)
    run(project, sys.executable, "-m", "clothing.commands.crossval", "--folds", "3", env=env)
    run(project, "dvc", "repro", "audit", env=env)

    issues = read_table(project / "metrics/label_issues.csv")
    top = issues.head(len(PLANTED))
    assert set(top["image"]) == set(PLANTED)
    assert dict(zip(top["image"], top["suggested_label"], strict=True)) == TRUE_LABEL
    assert dict(zip(top["image"], top["given_label"], strict=True)) == PLANTED
    assert (top["reviewed"] == "").all()
    audit = json.loads((project / "metrics/audit.json").read_text())
    assert audit["photos"] == 30 and audit["suspects"] == len(issues)
    assert audit["cleanlab_issues"] == (issues["cleanlab_issue"] == "True").sum() >= 1
    pairs = read_table(project / "metrics/audit/class_pairs.csv").set_index(["given_label", "suggested_label"])
    assert int(pairs.loc[("Pants", "T-Shirt"), "count"]) >= 1 and int(pairs.loc[("T-Shirt", "Shoes"), "count"]) >= 1
    per_class = read_table(project / "metrics/audit/per_class.csv")
    assert per_class["label_issues"].astype(int).sum() == round(audit["estimated_noise"] * audit["photos"])
    assert len(audit) == 5  # a DVC metric of what runs are compared by: no per-class or per-pair keys
    assert (project / "metrics/audit/suspects.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A person confirms one suspect; the next audit shows it as reviewed.
    (project / "data/relabel.csv").write_text(corrections("t-shirt-05,T-Shirt,a red T-shirt"))
    run(project, "dvc", "repro", "audit", env=env)
    issues = read_table(project / "metrics/label_issues.csv").set_index("image")
    assert issues.loc["t-shirt-05", "reviewed"] == "T-Shirt" and issues.loc["shoes-07", "reviewed"] == ""


def test_audit_without_a_cross_validation_run_is_one_clear_error(tmp_path: Path, archive: Archive) -> None:
    project = make_project(tmp_path, archive, audit=True)
    run(project, "dvc", "init", "--no-scm", "-q")
    stage(project, "fetch")
    result = stage(project, "audit", check=False)
    assert error_line(result) == (
        "error: metrics/cv/cv5_probabilities.csv: missing; "
        "run python -m clothing.commands.crossval first (docs/evaluation.md)"
    )


def test_corrections_train_on_reviewed_labels_but_score_the_dataset_labels(tmp_path: Path, archive: Archive) -> None:
    project = make_project(tmp_path, archive)
    update_params(project, {"train": TINY_TRAIN})
    run(project, "dvc", "init", "--no-scm", "-q")
    run(project, "dvc", "repro", "split")
    before = {name: read_table(project / f"data/split/{name}.csv") for name in ("train", "val", "test")}
    # Correct one photo of each split to another class, and drop one training photo.
    corrected = {before[name]["image"].iloc[0]: "Shoes" if name != "val" else "Pants" for name in before}
    dropped = before["train"]["image"].iloc[1]
    rows = [f"{image},{label},looked at it" for image, label in corrected.items()] + [f"{dropped},drop,two items"]
    (project / "data/relabel.csv").write_text(corrections(*rows))
    run(project, "dvc", "repro", "evaluate")

    after = {name: read_table(project / f"data/split/{name}.csv") for name in ("train", "val", "test")}
    assert set(after["train"]["image"]) == set(before["train"]["image"]) - {dropped}  # nothing moved
    for name in ("val", "test"):
        assert set(after[name]["image"]) == set(before[name]["image"])
    assert "drop" not in set(after["train"]["label"])
    train = after["train"].set_index("image")
    train_photo = before["train"]["image"].iloc[0]
    assert train.loc[train_photo, "label"] == "Shoes"
    test = after["test"].set_index("image")
    test_photo = before["test"]["image"].iloc[0]
    assert test.loc[test_photo, "label"] == before["test"].set_index("image").loc[test_photo, "label"]
    assert test.loc[test_photo, "reviewed_label"] == "Shoes"

    data = json.loads((project / "metrics/data.json").read_text())
    first = {name: before[name].iloc[0] for name in before}
    assert data["relabelled"] == sum(row["label"] != corrected[row["image"]] for row in first.values())
    assert data["dropped_per_reason"]["review_drop"] == 1
    dropped_rows = pd.read_csv(project / "metrics/dropped.csv", dtype=str).set_index("image")
    assert dropped_rows.loc[dropped, "reason"] == "review_drop"
    reviewed = json.loads((project / "metrics/eval.json").read_text())["reviewed_test_labels"]
    assert reviewed["changed"] == int(before["test"]["label"].iloc[0] != "Shoes")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("nobody,Pants,x", "photos not in the dataset: ['nobody']"),
        (
            "pants-01,Pnats,x",
            "line 2 (pants-01): 'Pnats' is not a kept class (did you mean 'Pants'? a kept class or drop)",
        ),
        # Other and Skip are raw labels, but not kept: the photo would leave the split it was drawn in.
        ("pants-01,Shoes,x\npants-02,Other,y", "line 3 (pants-02): 'Other' is not a kept class (a kept class or drop)"),
        ("pants-01,Shoes,\npants-02,Shoes,x", "corrections without a reason: ['pants-01']"),
        ("pants-01,Shoes,x\npants-01,drop,y", "photos listed twice: ['pants-01']"),
    ],
)
def test_a_bad_corrections_file_is_one_clear_error(project: Path, rows: str, message: str) -> None:
    (project / "data/relabel.csv").write_text(corrections(*rows.split("\n")))
    stage(project, "fetch")
    result = stage(project, "clean", check=False)
    assert error_line(result) == f"error: data/relabel.csv: {message}"
    assert not (project / "data/clean").exists()
