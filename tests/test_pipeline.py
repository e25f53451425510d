"""The stages wired together by dvc.yaml, run by DVC itself in a project copy."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import EXPECTED_KEPT, run


def test_dvc_repro_runs_end_to_end_and_then_reruns_nothing(project: Path) -> None:
    run(project, "dvc", "init", "--no-scm", "-q")
    run(project, "dvc", "repro", "split")
    data = json.loads((project / "metrics/data.json").read_text())
    assert data["kept_per_class"] == EXPECTED_KEPT
    assert (project / "data/split/test.csv").is_file()
    assert (project / "dvc.lock").is_file()

    again = run(project, "dvc", "repro", "split")
    assert "Running stage" not in again.stdout
    assert run(project, "dvc", "status", "--quiet", "split", check=False).returncode == 0
    shown = json.loads(run(project, "dvc", "metrics", "show", "--json").stdout)
    assert shown[""]["data"]["metrics/data.json"]["data"]["kept"] == 30
