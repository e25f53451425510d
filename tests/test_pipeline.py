"""The stages wired together by dvc.yaml, run by DVC itself in a project copy."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml
from conftest import EXPECTED_KEPT, run

REPO = Path(__file__).resolve().parents[1]
PIPELINE = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


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


def clothing_imports(path: Path) -> set[str]:
    """The ``clothing`` modules a file imports, and those they import in turn."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("clothing."):
            module = node.module.removeprefix("clothing.")
            if module not in found:
                found |= {module} | clothing_imports(REPO / "src/clothing" / f"{module}.py")
    return found


@pytest.mark.parametrize("stage", sorted(PIPELINE))
def test_a_stage_depends_on_every_module_it_imports(stage: str) -> None:
    """An edit to shared code reruns the stages that run it, so dvc.lock never goes stale."""
    deps = set(PIPELINE[stage]["deps"])
    imported = {f"src/clothing/{module}.py" for module in clothing_imports(REPO / f"stages/{stage}.py")}
    assert imported - deps == set()
