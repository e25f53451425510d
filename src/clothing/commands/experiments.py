"""Reading what a DVC experiment or a git revision committed: its metrics files are in git."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import yaml

from clothing.errors import PipelineError
from clothing.files import read_table


def table_at(revision: str, path: str, text_columns: Iterable[str] | None = None) -> pd.DataFrame:
    """The CSV ``path`` as committed at ``revision``, read as :func:`clothing.files.read_table` reads it."""
    return read_table(io.StringIO(file_at(revision, path)), text_columns)


def file_at(revision: str, path: str) -> str:
    """``path`` as committed at a git revision or DVC experiment name, or in the workspace."""
    if revision == "workspace":
        return Path(path).read_text()
    shown = subprocess.run(["git", "show", f"{experiment_ref(revision)}:{path}"], capture_output=True, text=True)
    if shown.returncode != 0:
        reason = (shown.stderr.strip().splitlines() or ["git show failed"])[-1]
        raise PipelineError(f"no {path} at {revision}: {reason}")
    return shown.stdout


# Named commits the committed reports use (the frontier's reference among them), resolvable also
# where git tags were not fetched: data, committed beside the metrics.
REVISIONS = Path("metrics/revisions.json")


def experiment_ref(name: str) -> str:
    """The ref of the experiment called ``name`` (DVC keeps them under refs/exps/), else ``name`` for git.

    An experiment of the current commit wins over one of an earlier commit, then the newest;
    a name git does not know but ``metrics/revisions.json`` names is the commit it gives.
    """
    head = _git("rev-parse", "HEAD").strip()
    refs = _git("for-each-ref", "--sort=-committerdate", "--format=%(refname)", "refs/exps").split()
    named = [ref for ref in refs if ref.rsplit("/", 1)[-1] == name]
    on_head = [ref for ref in named if ref.startswith(f"refs/exps/{head[:2]}/{head[2:]}/")]
    if on_head or named:
        return (on_head or named)[0]
    if _git("rev-parse", "--verify", "--quiet", name).strip():
        return name
    named_revisions = json.loads(REVISIONS.read_text()) if REVISIONS.is_file() else {}
    return named_revisions[name]["commit"] if name in named_revisions else name


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True).stdout


def cached_output(point: str, path: str) -> Path:
    """An output of ``point``'s run, from the DVC cache by the hash its ``dvc.lock`` recorded."""
    lock = yaml.safe_load(file_at(point, "dvc.lock"))
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            if path == out["path"] or path.startswith(out["path"] + "/"):
                return from_cache(out["md5"], path.removeprefix(out["path"]).lstrip("/"), point)
    raise PipelineError(f"{point}: no output {path} in its dvc.lock")


def cache_files() -> Path:
    """Where this repository's DVC cache keeps files: DVC says, since a shared cache (dvc cache dir) moves it."""
    shown = subprocess.run([sys.executable, "-m", "dvc", "cache", "dir"], capture_output=True, text=True)
    if shown.returncode != 0:
        raise PipelineError(f"dvc cache dir failed: {(shown.stderr.strip().splitlines() or ['no output'])[-1]}")
    return Path(shown.stdout.strip()) / "files/md5"


def from_cache(md5: str, inside: str, point: str) -> Path:
    cache = cache_files()

    def blob(digest: str) -> Path:
        found = cache / digest[:2] / digest[2:]
        if not found.is_file():
            raise PipelineError(f"{point}: {found} is not in this machine's DVC cache (dvc pull, or rerun it)")
        return found

    if not md5.endswith(".dir"):
        return blob(md5)
    entries = json.loads(blob(md5).read_text())
    return blob(next(entry["md5"] for entry in entries if entry["relpath"] == inside))
