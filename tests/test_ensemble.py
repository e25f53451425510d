"""Ensembles of cross-validation runs: the members' out-of-fold probabilities averaged photo by photo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clothing.commands import ensemble
from clothing.files import read_table

CLASSES = ["Dress", "Hat", "T-Shirt"]


def member(seed: int, photos: int = 30) -> pd.DataFrame:
    """A cross-validation run's probabilities file: 3 folds, each photo's row a distribution."""
    rng = np.random.default_rng(seed)
    values = rng.dirichlet(np.ones(len(CLASSES)), photos).round(5)
    table = pd.DataFrame(values, columns=CLASSES)
    table.insert(0, "label", [CLASSES[i % 3] for i in range(photos)])
    table.insert(0, "image", [f"photo{i:02d}" for i in range(photos)])
    return table.assign(fold=np.arange(photos) % 3)


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "metrics/cv").mkdir(parents=True)
    (tmp_path / "params.yaml").write_text("evaluate:\n  bootstrap_resamples: 200\n  bootstrap_seed: 0\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "metrics/cv"


def test_an_ensemble_answers_with_the_mean_of_its_members_probabilities(runs: Path) -> None:
    a, b = member(1), member(2)
    # Photo 0: A leans to Dress, B is sure of Hat; only the average says Hat.
    a.loc[0, CLASSES], b.loc[0, CLASSES] = [0.6, 0.4, 0.0], [0.0, 0.9, 0.1]
    a.to_csv(runs / "a_probabilities.csv", index=False)
    b.sample(frac=1, random_state=0).to_csv(runs / "b_probabilities.csv", index=False)  # row order is not matched
    assert ensemble.main(["--name", "ab", "a", "b"]) == 0

    probabilities = read_table(runs / "ab_probabilities.csv", text_columns=("image", "label"))
    mean = (a[CLASSES].to_numpy() + b[CLASSES].to_numpy()) / 2
    np.testing.assert_allclose(probabilities[CLASSES].astype(float), mean, atol=1e-5)
    predictions = read_table(runs / "ab_predictions.csv")
    assert predictions.loc[0, "predicted"] == "Hat"
    assert list(predictions["predicted"]) == [CLASSES[i] for i in mean.argmax(axis=1)]
    summary = json.loads((runs / "ab.json").read_text())
    right = (predictions["predicted"] == predictions["actual"]).mean()
    assert summary["pooled"]["accuracy"] == pytest.approx(right, abs=1e-4)
    assert summary["members"] == ["a", "b"] and summary["folds"] == 3 and summary["photos"] == 30
    folds = read_table(runs / "ab_folds.csv")
    assert folds["test_images"].astype(int).tolist() == [10, 10, 10]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda t: t.assign(fold=(t["fold"] + 1) % 3),
            "error: b and a differ in their folds: not members of one ensemble",
        ),
        (lambda t: t.head(29), "error: b and a differ in their photos: not members of one ensemble"),
        (
            lambda t: t.assign(label=t["label"][::-1].to_numpy()),
            "error: b and a differ in their labels: not members of one ensemble",
        ),
        (
            lambda t: t.assign(Cap=0.0),
            "error: b and a have different classes: not members of one ensemble",
        ),
    ],
)
def test_runs_of_other_folds_photos_or_classes_are_refused(runs: Path, capsys, change, message: str) -> None:
    member(1).to_csv(runs / "a_probabilities.csv", index=False)
    change(member(2)).to_csv(runs / "b_probabilities.csv", index=False)
    assert ensemble.main(["--name", "ab", "a", "b"]) == 1
    assert capsys.readouterr().err.strip() == message
    assert not list(runs.glob("ab*"))  # nothing written


def test_a_missing_member_names_the_command_that_writes_it(runs: Path, capsys) -> None:
    member(1).to_csv(runs / "a_probabilities.csv", index=False)
    assert ensemble.main(["--name", "ab", "a", "b"]) == 1
    assert (
        "b_probabilities.csv: missing; python -m clothing.commands.crossval --name b writes it"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.drop(columns="fold"), "no column fold"),
        (lambda t: t.head(0), "no photos"),
        (lambda t: t.assign(Hat="high"), "the class columns must hold probabilities (numbers)"),
        (lambda t: pd.concat([t, t.tail(1)]), "photo photo29 is scored twice"),
        (lambda t: t.assign(label="Cap"), "labels without a probability column: ['Cap']"),
    ],
)
def test_a_malformed_member_file_is_one_line_naming_it(runs: Path, capsys, change, message: str) -> None:
    member(1).to_csv(runs / "a_probabilities.csv", index=False)
    change(member(2)).to_csv(runs / "b_probabilities.csv", index=False)
    assert ensemble.main(["--name", "ab", "a", "b"]) == 1
    assert capsys.readouterr().err.strip() == f"error: {Path('metrics/cv/b_probabilities.csv')}: {message}"
    assert not list(runs.glob("ab*"))


def test_a_member_named_twice_is_refused(runs: Path) -> None:
    member(1).to_csv(runs / "a_probabilities.csv", index=False)
    with pytest.raises(SystemExit) as stop:
        ensemble.main(["--name", "ab", "a", "a"])
    assert stop.value.code == 2
