"""Error bars: bootstrap intervals, k-fold splits, cross-validation as DVC experiments, paired comparison."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import (
    GIT_USER,
    TINY_TRAIN,
    Archive,
    commit_all,
    git_repo,
    make_project,
    run,
    stage,
    stage_module,
    update_params,
)
from scipy.stats import binomtest

from clothing.analysis.metrics import BootstrapParams, bootstrap_intervals, encoded, headline_scores
from clothing.commands.compare import paired_comparison, verdict
from clothing.errors import PipelineError
from clothing.files import read_table

BOOTSTRAP = BootstrapParams(bootstrap_resamples=1000, bootstrap_seed=0)


def noisy_predictions(n: int, accuracy: float, seed: int, classes: int = 17) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    wrong = (labels + rng.integers(1, classes, n)) % classes
    return labels, np.where(rng.random(n) < accuracy, labels, wrong)


def test_bootstrap_intervals_are_as_wide_as_sampling_theory_says() -> None:
    labels, predicted = noisy_predictions(510, 0.88, seed=1)
    intervals = bootstrap_intervals(labels, predicted, 17, BOOTSTRAP)
    point = headline_scores(labels, predicted, 17)
    for metric, interval in intervals.items():
        assert interval["low"] <= point[metric] <= interval["high"]
    # A proportion's 95 % interval is about 2 x 1.96 standard errors wide.
    expected = 2 * 1.96 * np.sqrt(point["accuracy"] * (1 - point["accuracy"]) / 510)
    width = intervals["accuracy"]["high"] - intervals["accuracy"]["low"]
    assert width == pytest.approx(expected, rel=0.15)
    assert bootstrap_intervals(labels, predicted, 17, BOOTSTRAP.model_copy(update={"bootstrap_seed": 1})) != intervals


def test_an_interval_from_resamples_that_miss_a_class_is_still_an_interval() -> None:
    """Two photos of a rare class: many resamples hold none of them, and its F1 must not turn the scores into NaN."""
    labels = np.array([0] * 60 + [1] * 60 + [2] * 2)
    predicted = labels.copy()
    predicted[::7] = (predicted[::7] + 1) % 3
    intervals = bootstrap_intervals(labels, predicted, 3, BOOTSTRAP)
    point = headline_scores(labels, predicted, 3)
    for metric, interval in intervals.items():
        assert interval["low"] <= point[metric] <= interval["high"], metric
        assert interval["low"] < interval["high"], metric


def test_evaluate_reports_intervals_and_support(trained: Path) -> None:
    scores = json.loads((trained / "metrics/eval.json").read_text())
    for metric in ("accuracy", "macro_f1", "weighted_f1"):
        interval = scores["ci95"][metric]
        assert interval["low"] <= scores[metric] <= interval["high"]
    test = read_table(trained / "data/split/test.csv")
    by_class = read_table(trained / "metrics/eval/per_class.csv", text_columns=("class",)).set_index("class")
    assert by_class["support"].to_dict() == dict(test["label"].value_counts())
    assert by_class["f1"].between(0, 1).all() and "per_class" not in scores


def test_the_same_seed_gives_the_same_interval(trained: Path, tmp_path: Path) -> None:
    """Rerun evaluate on a model that misses some photos: the intervals have width, and repeat exactly."""
    import shutil

    project = tmp_path / "project"
    shutil.copytree(trained, project, symlinks=True)
    # Relabel half the test photos so the intervals are not [1, 1].
    test = read_table(project / "data/split/test.csv")
    classes = sorted(set(test["label"]))
    test.loc[::2, "label"] = [classes[(classes.index(c) + 1) % len(classes)] for c in test.loc[::2, "label"]]
    test.to_csv(project / "data/split/test.csv", index=False)
    stage(project, "evaluate")
    first = json.loads((project / "metrics/eval.json").read_text())["ci95"]
    assert first["accuracy"]["low"] < first["accuracy"]["high"]
    stage(project, "evaluate")
    assert json.loads((project / "metrics/eval.json").read_text())["ci95"] == first


def clean_labels(project: Path) -> pd.DataFrame:
    run(project, "dvc", "init", "--no-scm", "-q")
    run(project, "dvc", "repro", "clean")
    return read_table(project / "data/clean/labels.csv")


@pytest.mark.parametrize("grouped", [False, True])
def test_k_folds_partition_the_photos_and_keep_classes_and_senders_apart(project: Path, grouped: bool) -> None:
    labels = clean_labels(project)
    split = stage_module("split")
    # 10 senders: a grouped val split of 1/9 of the rest would need 9 of them.
    params = {"seed": 3, "train": 0.6, "val": 0.3, "test": 0.1, "group_by_sender": grouped, "folds": 3}
    parts = [split.split(labels, split.SplitParams(**params, fold=k)) for k in range(3)]
    tests = [set(part["test"]["image"]) for part in parts]
    assert set().union(*tests) == set(labels["image"]) and sum(map(len, tests)) == len(labels)
    for part in parts:
        assert set(pd.concat(part.values())["image"]) == set(labels["image"])  # train + val + test: every photo
        assert sum(len(rows) for rows in part.values()) == len(labels)  # ... each in one of them only
        if not grouped:
            assert set(part["test"]["label"]) == set(labels["label"])  # stratified: every class in every fold
        else:
            assert not set(part["test"]["sender_id"]) & set(part["train"]["sender_id"])
    again = split.split(labels, split.SplitParams(**params, fold=1))
    assert all(again[name].equals(parts[1][name]) for name in again)


def test_fold_params_are_checked(project: Path) -> None:
    split = stage_module("split")
    base = {"seed": 0, "train": 0.8, "val": 0.1, "test": 0.1, "group_by_sender": False}
    with pytest.raises(ValueError, match=r"split\.fold must be below split\.folds"):
        split.SplitParams(**base, folds=5, fold=5)
    with pytest.raises(ValueError, match="greater than or equal to 2"):
        split.SplitParams(**base, folds=1, fold=0)
    assert split.SplitParams(**base, folds=None, fold=0).folds is None


def test_paired_comparison_counts_the_photos_where_models_differ() -> None:
    labels, a = noisy_predictions(510, 0.85, seed=2)
    _, b = noisy_predictions(510, 0.90, seed=3)
    b = np.where(np.random.default_rng(4).random(510) < 0.5, a, labels)  # B fixes about half of A's mistakes
    frame = pd.DataFrame({"image": [f"p{i}" for i in range(510)], "actual": labels.astype(str)})
    result = paired_comparison(frame.assign(predicted=a.astype(str)), frame.assign(predicted=b.astype(str)), BOOTSTRAP)
    only_a, only_b = int(((a == labels) & (b != labels)).sum()), int(((b == labels) & (a != labels)).sum())
    assert (result["only_a_right"], result["only_b_right"]) == (only_a, only_b)
    assert result["mcnemar_p"] == round(binomtest(only_b, only_a + only_b).pvalue, 4)
    low, high = result["difference_ci95"]
    assert low <= result["difference"] <= high and low > 0
    assert verdict(result).startswith("B is better")

    # B fixes 3 of A's mistakes and makes 3 new ones: equal accuracy, a difference no test can call.
    right, wrong = np.flatnonzero(a == labels), np.flatnonzero(a != labels)
    swapped = a.copy()
    swapped[wrong[:3]], swapped[right[:3]] = labels[wrong[:3]], (labels[right[:3]] + 1) % 17
    even = paired_comparison(
        frame.assign(predicted=a.astype(str)), frame.assign(predicted=swapped.astype(str)), BOOTSTRAP
    )
    assert (even["only_a_right"], even["only_b_right"], even["difference"]) == (3, 3, 0.0)
    assert even["mcnemar_p"] == 1.0 and verdict(even).startswith("no detectable difference")
    lopsided = {"difference_ci95": (0.01, 0.02), "mcnemar_p": 0.0}  # a p-value below 0.0001, as rounded
    assert verdict(lopsided) == "B is better: the 95 % interval of the difference excludes 0 (McNemar p < 0.0001)"
    with pytest.raises(PipelineError, match="different test photos"):
        paired_comparison(frame.assign(predicted=a.astype(str)), frame.head(500).assign(predicted="x"), BOOTSTRAP)


def test_a_run_that_scores_a_photo_twice_is_one_clear_error() -> None:
    frame = pd.DataFrame({"image": ["p1", "p2", "p2"], "actual": ["x", "y", "y"], "predicted": ["x", "y", "x"]})
    with pytest.raises(PipelineError, match=r"run B scores 1 photo\(s\) twice, e\.g\. p2: not one answer per photo"):
        paired_comparison(frame.drop_duplicates("image"), frame, BOOTSTRAP)


def test_crossval_runs_every_fold_as_an_experiment_and_summarizes(tmp_path: Path, archive: Archive) -> None:
    env = GIT_USER | {"HOME": str(tmp_path / "home")}
    project = make_project(tmp_path / "repo", archive)
    # Not the defaults: crossval must take its intervals' bootstrap from params.yaml, as evaluate does.
    bootstrap = BootstrapParams(bootstrap_resamples=200, bootstrap_seed=7)
    update_params(project, {"train": TINY_TRAIN, "evaluate": bootstrap.model_dump()})
    git_repo(project, env)
    commit_all(project, env)
    run(project, sys.executable, "-m", "clothing.commands.crossval", "--folds", "3", env=env)

    summary = json.loads((project / "metrics/cv/cv3.json").read_text())
    folds = read_table(project / "metrics/cv/cv3_folds.csv")
    predictions = read_table(project / "metrics/cv/cv3_predictions.csv")
    assert summary["folds"] == 3 and len(folds) == 3
    assert summary["photos"] == 30 and len(set(predictions["image"])) == 30  # every photo scored once
    run(project, "dvc", "repro", "clean", env=env)  # the folds ran in DVC's queue, elsewhere: clean here too
    assert set(predictions["image"]) == set(read_table(project / "data/clean/labels.csv")["image"])
    accuracies = folds["accuracy"].astype(float)
    assert summary["accuracy"]["mean"] == pytest.approx(accuracies.mean(), abs=1e-4)
    assert summary["accuracy"]["sd"] == pytest.approx(accuracies.std(ddof=1), abs=1e-4)
    by_class = read_table(project / "metrics/cv/cv3_per_class.csv")
    assert by_class["support"].astype(int).sum() == 30 and "per_class" not in summary
    # Out-of-fold probabilities: every photo once, its row a distribution whose top class is the prediction.
    probabilities = pd.read_csv(project / "metrics/cv/cv3_probabilities.csv")
    classes = [c for c in probabilities.columns if c not in ("image", "label", "fold")]
    assert sorted(probabilities["image"]) == sorted(predictions["image"])
    np.testing.assert_allclose(probabilities[classes].sum(axis=1), 1, atol=1e-3)
    by_photo = probabilities.set_index("image").loc[predictions["image"], classes]
    predicted = by_photo.to_numpy()[np.arange(len(by_photo)), [classes.index(c) for c in predictions["predicted"]]]
    np.testing.assert_allclose(predicted, by_photo.max(axis=1), atol=1e-5)  # rounding may tie
    pooled = summary["pooled"]
    labels, predicted, classes = encoded(predictions["actual"], predictions["predicted"])
    assert pooled["ci95"] == bootstrap_intervals(labels, predicted, len(classes), bootstrap)
    # compare reads an experiment by name; here against the workspace, where two of its answers are changed.
    fold0 = predictions[predictions["fold"] == "0"].drop(columns="fold")
    changed = fold0.copy()
    right = changed.index[changed["predicted"] == changed["actual"]][:2]
    changed.loc[right, "predicted"] = [
        next(c for c in classes if c != actual) for actual in changed.loc[right, "actual"]
    ]
    (project / "metrics/eval").mkdir(parents=True, exist_ok=True)
    changed.to_csv(project / "metrics/eval/predictions.csv", index=False)
    compare = (sys.executable, "-m", "clothing.commands.compare")
    compared = run(project, *compare, "cv3-fold0", "workspace", env=env)
    assert "only A right 2, only B right 0" in compared.stdout
    pooled_self = run(project, *compare, "--cross-validation", "cv3", "cv3", env=env)
    assert "on 30 photos" in pooled_self.stdout  # every photo of the three folds, from the pooled file


def test_queue_only_queues_every_fold_and_runs_none(tmp_path: Path, archive: Archive) -> None:
    env = GIT_USER | {"HOME": str(tmp_path / "home")}
    project = make_project(tmp_path / "repo", archive)
    update_params(project, {"train": TINY_TRAIN})
    git_repo(project, env)
    commit_all(project, env)
    crossval = (sys.executable, "-m", "clothing.commands.crossval", "--folds", "3", "--name", "later")
    run(project, *crossval, "--queue-only", "-S", "train.seed=3", env=env)
    queued = run(project, "dvc", "queue", "status", env=env).stdout
    assert [line.split()[1] for line in queued.splitlines() if "Queued" in line] == [f"later-fold{k}" for k in range(3)]
    assert not (project / "metrics/cv").exists() and not (project / "models").exists()
    run(project, "dvc", "queue", "remove", "--all", env=env)
