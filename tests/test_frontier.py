"""The frontier report: points read from experiments, int8 models timed here, Pareto points marked."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import GIT_USER, TINY_TRAIN, Archive, commit_all, error_line, git_repo, make_project, run, update_params

from clothing.commands.experiments import experiment_ref, file_at, from_cache
from clothing.commands.frontier import pareto, with_pareto_flags
from clothing.errors import PipelineError
from clothing.files import read_table


def test_pareto_keeps_the_points_nothing_beats() -> None:
    cost = pd.Series([1.0, 2.0, 3.0, 3.0, 4.0])
    accuracy = pd.Series([0.80, 0.85, 0.84, 0.90, 0.90])
    # 3 is beaten by 2 (cheaper, more accurate); 5 ties 4 on accuracy at a higher cost.
    assert pareto(cost, accuracy).tolist() == [True, True, False, True, False]


def test_int8_costs_are_weighed_against_the_int8_models_accuracy() -> None:
    """As in the committed frontier: res192 is less accurate than HEAD in Keras, more accurate at int8."""
    table = pd.DataFrame({
        "point": ["HEAD", "res192"],
        "accuracy": [0.8882, 0.8843],
        "int8_accuracy": [0.8804, 0.8902],
        "macs_m": [299.5, 220.1],
        "int8_ms_1_thread": [1.534, 1.140],
        "int8_gzip_mb": [2.228, 2.228],
    })  # fmt: skip
    flagged = with_pareto_flags(table).set_index("point")
    assert flagged["pareto_macs_m"].tolist() == [True, True]  # Keras: HEAD buys its accuracy with MACs
    assert flagged["pareto_int8_ms_1_thread"].tolist() == [False, True]  # int8: res192 is faster and better
    assert flagged["pareto_int8_gzip_mb"].tolist() == [False, True]  # same size, better int8 accuracy


def test_frontier_reads_every_point_and_times_its_int8_model(tmp_path: Path, archive: Archive) -> None:
    env = GIT_USER | {"HOME": str(tmp_path / "home")}
    project = make_project(tmp_path / "repo", archive)
    update_params(project, {"train": TINY_TRAIN, "quantize": {"variants": ["int8"], "latency_runs": 5}})
    git_repo(project, env)
    run(project, "dvc", "repro", env=env)
    commit_all(project, env)
    run(project, "dvc", "exp", "run", "-n", "bigger", "-S", "train.image_size=48", env=env)
    result = run(project, sys.executable, "-m", "clothing.commands.frontier", "HEAD", "bigger", "--runs", "5", env=env)

    table = read_table(project / "metrics/frontier.csv").set_index("point")
    assert list(table.index) == ["HEAD", "bigger"] and "bigger" in result.stdout
    macs = table["macs_m"].astype(float)
    assert macs["bigger"] > macs["HEAD"] * 2  # 48 px against 32 px: 2.25 times the MACs
    assert (table["int8_ms_1_thread"].astype(float) > 0).all()
    assert (table["int8_gzip_mb"].astype(float) < table["int8_mb"].astype(float)).all()
    # The reference against itself: no difference, which is noise by definition.
    assert float(table.loc["HEAD", "vs_reference"]) == 0 and table.loc["HEAD", "vs_reference_noise"] == "True"
    assert table["cpu"].nunique() == 1
    assert (project / "metrics/frontier.png").stat().st_size > 10_000


def test_outputs_are_found_in_a_shared_cache(tmp_path: Path, monkeypatch) -> None:
    """`dvc cache dir` moves the cache out of .dvc/cache; DVC is asked where it is."""
    project, shared = tmp_path / "project", tmp_path / "shared-cache"
    project.mkdir()
    monkeypatch.chdir(project)
    run(project, "dvc", "init", "--no-scm", "-q")
    run(project, "dvc", "cache", "dir", str(shared))
    blob = shared / "files/md5/ab" / ("c" * 30)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"an int8 model")
    assert from_cache("ab" + "c" * 30, "", "point") == blob


def test_a_named_revision_resolves_from_the_committed_file_where_git_has_no_such_tag(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    git_repo(tmp_path, GIT_USER)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/eval.json").write_text("{}\n")
    commit_all(tmp_path, GIT_USER, "the old run")
    old = run(tmp_path, "git", "rev-parse", "HEAD").stdout.strip()
    (tmp_path / "metrics/revisions.json").write_text(json.dumps({"old-run": {"commit": old, "what": "a test"}}))
    commit_all(tmp_path, GIT_USER, "a later run")
    assert experiment_ref("old-run") == old
    assert file_at("old-run", "metrics/eval.json") == "{}\n"
    (tmp_path / "metrics/revisions.json").unlink()
    with pytest.raises(PipelineError, match=r"no metrics/eval\.json at old-run"):
        file_at("old-run", "metrics/eval.json")


def test_added_points_are_timed_beside_an_anchor_and_their_latency_labelled_an_estimate(
    tmp_path: Path, archive: Archive
) -> None:
    env = GIT_USER | {"HOME": str(tmp_path / "home")}
    project = make_project(tmp_path / "repo", archive)
    update_params(project, {"train": TINY_TRAIN, "quantize": {"variants": ["int8"], "latency_runs": 5}})
    git_repo(project, env)
    run(project, "dvc", "repro", "evaluate", "quantize", "analyze_complexity", env=env)
    commit_all(project, env)
    run(project, sys.executable, "-m", "clothing.commands.frontier", "HEAD", "--runs", "5", env=env)
    # As if the committed table had been timed on a CPU three times slower than this one.
    committed = read_table(project / "metrics/frontier.csv", text_columns=("point", "backbone", "cpu"))
    committed["int8_ms_1_thread"] *= 3
    committed.assign(cpu="Another CPU").to_csv(project / "metrics/frontier.csv", index=False)
    commit_all(project, env)
    run(project, "dvc", "exp", "run", "-n", "bigger", "-S", "train.image_size=48", "evaluate", "quantize",
        "analyze_complexity", env=env)  # fmt: skip
    add = (sys.executable, "-m", "clothing.commands.frontier", "--add", "bigger", "--runs", "20")
    run(project, *add, env=env)

    table = read_table(project / "metrics/frontier.csv", text_columns=("point", "backbone", "cpu")).set_index("point")
    assert list(table.index) == ["HEAD", "bigger"]
    assert table["int8_ms_estimated"].tolist() == [False, True]
    assert table.loc["HEAD", "cpu"] == "Another CPU" and table.loc["bigger", "cpu"] != "Another CPU"
    # The estimate: the time measured here, scaled by the anchor's time in the table over its time here.
    bigger = table.loc["bigger"]  # (the table's columns are text where the old rows have no value)
    scale = float(table.loc["HEAD", "int8_ms_1_thread"]) / float(bigger["anchor_ms_here"])
    assert float(bigger["int8_ms_1_thread"]) == pytest.approx(float(bigger["int8_ms_here"]) * scale, abs=0.001)
    again = run(project, *add, env=env, check=False)
    assert "already has bigger" in error_line(again)
    chained = run(project, *add[:3], "--add", "other", "--anchor", "bigger", env=env, check=False)
    assert "itself an estimate" in error_line(chained)
