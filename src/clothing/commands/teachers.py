"""Keep trained models as teachers for knowledge distillation, under teachers/NAME/.

    python -m clothing.commands.teachers NAME --from EXPERIMENT         # one model
    python -m clothing.commands.teachers NAME --from CV_RUN --folds K   # CV_RUN-fold0 .. fold(K-1)
    python -m clothing.commands.teachers NAME --register                # teachers/NAME as it is now

Each model comes from the DVC cache by the hash its experiment's (or git revision's)
``dvc.lock`` records, with ``photos.csv``: the photos of that run's train and val splits,
which the teach stage checks against a student's test split. A cross-validation run gives
one ``fold<k>/`` per fold, so in fold k the student learns from the teacher of fold k, which
never saw that fold's test photos. The folder is registered in ``teachers/teachers.yaml``
by the digest of its files (what the teach stage depends on; ``--register`` records a folder
made by other means) and tracked with ``dvc add``; commit ``teachers/teachers.yaml``,
``teachers/NAME.dvc`` and ``teachers/.gitignore``, so clones and queued experiments, which
copy only what git and DVC track, have it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from clothing.commands import command_parser
from clothing.commands.experiments import cached_output
from clothing.errors import PipelineError, exit_code
from clothing.files import atomic_dir, read_table, write_csv
from clothing.models.distillation import PHOTOS, REGISTRY, TEACHERS, plain_name, register

FILES = ("models/model.keras", "models/model.json")
SPLITS = ("data/split/train.csv", "data/split/val.csv")


def keep(run: str, folder: Path) -> None:
    """The model ``run`` trained, and the photos it learned from, written to ``folder``."""
    learned = pd.concat([read_table(cached_output(run, split)) for split in SPLITS], ignore_index=True)
    folder.mkdir(parents=True, exist_ok=True)
    for path in FILES:
        shutil.copyfile(cached_output(run, path), folder / Path(path).name)
    write_csv(folder / PHOTOS, learned[["image"]])
    print(f"{run}: its model, learned from {len(learned)} photos")


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("python -m clothing.commands.teachers", __doc__)
    parser.add_argument("name", help="the folder under teachers/ (train.distill.teachers names it)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="source", help="a DVC experiment, git revision or CV run")
    source.add_argument("--register", action="store_true", help="record teachers/NAME as it is now, take nothing")
    parser.add_argument("--folds", type=int, help="the CV run's number of folds: one teacher per fold")
    parser.add_argument("--force", action="store_true", help="replace teachers/NAME if it exists")
    parser.add_argument("--no-dvc-add", action="store_true", help="write the folder only")
    args = parser.parse_args(argv)
    try:
        plain_name(args.name)
    except ValueError as error:
        parser.error(str(error))
    if args.folds is not None and args.folds < 2:
        parser.error("--folds must be 2 or more")
    if args.register and (args.folds is not None or args.force):
        parser.error("--register takes the folder as it is: no --folds or --force")
    if args.register:
        return exit_code(lambda: register_folder(args.name, not args.no_dvc_add))
    return exit_code(lambda: make_teachers(args.name, args.source, args.folds, args.force, not args.no_dvc_add))


def make_teachers(name: str, source: str, folds: int | None, force: bool, dvc_add: bool) -> None:
    folder = TEACHERS / name
    if folder.exists() and not force:
        raise PipelineError(f"{folder} exists (a student may have learned from it): --force replaces it")
    with atomic_dir(folder) as tmp:  # all folds or none
        if folds is None:
            keep(source, tmp)
        for fold in range(folds or 0):
            keep(f"{source}-fold{fold}", tmp / f"fold{fold}")
    print(f"{folder}: written")
    register_folder(name, dvc_add)


def register_folder(name: str, dvc_add: bool) -> None:
    """Record teachers/<name> in the registry and track it with DVC (so clones and queued experiments get it)."""
    folder = TEACHERS / name
    if not (folder / "model.keras").is_file() and not any(folder.glob("fold*/model.keras")):
        raise PipelineError(f"{folder}: no model.keras (nor fold<k>/model.keras) to register")
    print(f"{folder}: registered in {REGISTRY} as {register(name)[:12]}")
    if dvc_add and subprocess.run([sys.executable, "-m", "dvc", "add", "-q", str(folder)]).returncode != 0:
        raise PipelineError(f"dvc add {folder} failed")


if __name__ == "__main__":
    sys.exit(main())
