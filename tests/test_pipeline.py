"""The stages wired together by dvc.yaml, run by DVC itself in a project copy."""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import (
    EXPECTED_KEPT,
    GIT_USER,
    TINY_TRAIN,
    Archive,
    commit_all,
    git_repo,
    make_project,
    run,
    update_params,
)

from clothing.files import read_table
from clothing.tf import keras

MOBILENET_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"

REPO = Path(__file__).resolve().parents[1]
PIPELINE = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def test_dvc_repro_runs_end_to_end_and_then_reruns_nothing(project: Path) -> None:
    run(project, "dvc", "init", "--no-scm", "-q")
    run(project, "dvc", "repro", "split")
    distribution = read_table(project / "metrics/class_distribution.csv")
    assert dict(zip(distribution["label"], distribution["count"].astype(int), strict=True)) == EXPECTED_KEPT
    assert (project / "data/split/test.csv").is_file()
    assert (project / "dvc.lock").is_file()

    again = run(project, "dvc", "repro", "split")
    assert "Running stage" not in again.stdout
    assert run(project, "dvc", "status", "--quiet", "split", check=False).returncode == 0
    shown = json.loads(run(project, "dvc", "metrics", "show", "--json").stdout)
    assert shown[""]["data"]["metrics/data.json"]["data"]["kept"] == 30


def clothing_imports(path: Path) -> set[str]:
    """The files of the ``clothing`` modules a file imports, and of those they import in turn."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("clothing."):
            module = "src/" + node.module.replace(".", "/") + ".py"
            if module not in found:
                found |= {module} | clothing_imports(REPO / module)
    return found


@pytest.mark.parametrize("stage", sorted(PIPELINE))
def test_a_stage_depends_on_every_module_it_imports(stage: str) -> None:
    """An edit to shared code reruns the stages that run it, so dvc.lock never goes stale."""
    deps = set(PIPELINE[stage]["deps"])
    imported = clothing_imports(REPO / f"stages/{stage}.py")
    assert imported - deps == set()


def test_a_quantize_change_reruns_only_quantize(trained: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(trained, project, symlinks=True)
    update_params(project, {"quantize": {"representative_size": 8, "warmup_runs": 1, "latency_runs": 5}})
    run(project, "dvc", "repro")
    assert run(project, "dvc", "status", "--quiet", check=False).returncode == 0
    update_params(project, {"quantize": {"warmup_runs": 2}})
    for code in ("stages/quantize.py", "src/clothing/analysis/latency.py"):  # its schema, a quantize-only helper
        with (project / code).open("a") as file:
            file.write("# changed\n")
    assert set(json.loads(run(project, "dvc", "status", "--json").stdout)) == {"quantize"}


def test_a_queued_experiment_uses_the_workspace_mirror(tmp_path: Path, archive: Archive) -> None:
    """A queued experiment runs in a copy under .dvc/tmp/exps/, where ../mirror is another folder."""
    mirror = tmp_path / "mirror"
    (mirror / "keras/models").mkdir(parents=True)
    keras.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=False, weights=None).save_weights(
        mirror / "keras/models" / MOBILENET_FILE
    )
    home_cache = tmp_path / "home/.keras/models"  # a different file of the same name in Keras' cache
    home_cache.mkdir(parents=True)
    (home_cache / MOBILENET_FILE).write_bytes(b"not the mirror's file")
    env = GIT_USER | {"HOME": str(tmp_path / "home")}

    project = make_project(tmp_path / "repo", archive)
    update_params(project, {"mirrors": ["../mirror"], "train": TINY_TRAIN | {"backbone": "mobilenet_v2"}})
    update_params(project, {"train": {"weights": "imagenet"}})
    git_repo(project, env)
    commit_all(project, env)
    run(project, "dvc", "exp", "run", "--queue", "-n", "queued", "weights", env=env)
    run(project, "dvc", "exp", "run", "--run-all", env=env)
    # The experiment's dvc.lock, and the weights file it recorded, as DVC cached it.
    ref = run(project, "git", "for-each-ref", "--format=%(refname)", "refs/exps", env=env).stdout.split()[0]
    lock = yaml.safe_load(run(project, "git", "show", f"{ref}:dvc.lock", env=env).stdout)
    (weights_dir,) = lock["stages"]["weights"]["outs"]
    manifest = json.loads(cached(project, weights_dir["md5"]).read_text())
    copied = next(entry["md5"] for entry in manifest if entry["relpath"] == MOBILENET_FILE)
    assert copied == hashlib.md5((mirror / "keras/models" / MOBILENET_FILE).read_bytes()).hexdigest()


def test_a_stage_runs_the_package_of_its_own_checkout(project: Path) -> None:
    """An experiment's copy under .dvc/tmp/exps/ must run the code it copied, not the installed package."""
    package = project / "src/clothing/__init__.py"
    package.write_text(package.read_text() + "\nimport sys\nprint('clothing from', __file__, file=sys.stderr)\n")
    run(project, "dvc", "init", "--no-scm", "-q")
    output = run(project, "dvc", "repro", "fetch")
    assert f"clothing from {package}" in output.stdout + output.stderr


def cached(project: Path, md5: str) -> Path:
    return project / ".dvc/cache/files/md5" / md5[:2] / md5[2:]


def test_the_pipeline_runs_in_a_git_repo_without_commits(tmp_path: Path, archive: Archive) -> None:
    """`git init && dvc init && dvc repro` before the first commit: dvclive must not ask git for HEAD."""
    project = make_project(tmp_path, archive)
    update_params(project, {"train": TINY_TRAIN})
    git_repo(project, GIT_USER)
    run(project, "dvc", "repro", "train", env=GIT_USER)
    curve = (project / "metrics/train/plots/metrics/eval/accuracy.tsv").read_text().splitlines()
    assert len(curve) == 1 + TINY_TRAIN["head"]["epochs"] + TINY_TRAIN["fine_tune"]["epochs"]
