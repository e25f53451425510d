"""split: data/clean/labels.csv -> data/split/{train,val,test}.csv, stratified by label.

Stratified by the dataset's own label (``dataset_label``), so a reviewed correction
(data/relabel.csv) never moves a photo between splits. Train and val carry the corrected
labels, without the photos reviewed as ``drop``; the test split is scored by the dataset's
labels, so every figure stays comparable with runs before the corrections, and carries the
corrected one as ``reviewed_label``.

With ``split.group_by_sender`` whole contributors go to one split, so near-identical
shots of one person's shirt never sit on both sides of the train/test line; the
fractions are then met as closely as whole contributors allow. With ``split.folds`` K,
the test split is fold ``split.fold`` of a (grouped) stratified K-fold: K runs score
every photo once (``python -m clothing.commands.crossval``).

Your own photos in a given split (``train/``, ``validation/``, ``test/`` folders: clean's
``split`` column) keep it as it is: nothing is redrawn, unless ``split.folds`` asks for folds,
which are drawn over all the photos.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
from pydantic import Field, NonNegativeInt, model_validator
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from clothing.errors import PipelineError, run_stage
from clothing.files import atomic_dir, read_table, write_csv, write_json
from clothing.params import Section, load_section

LABELS = Path("data/clean/labels.csv")
STRATUM = "dataset_label"
OUT = Path("data/split")
PER_CLASS = Path("metrics/split/per_class.csv")
SPLITS = ("train", "val", "test")
Fraction = Annotated[float, Field(gt=0, lt=1)]


class SplitParams(Section):
    seed: NonNegativeInt
    train: Fraction
    val: Fraction
    test: Fraction
    group_by_sender: bool  # each contributor's photos in one split only
    folds: Annotated[int, Field(ge=2)] | None  # k-fold: the test split is fold `fold` of `folds`
    fold: NonNegativeInt

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitParams:
        total = self.train + self.val + self.test
        if abs(total - 1) > 1e-6:
            raise ValueError(f"train + val + test must sum to 1, got {total:g}")
        if self.folds is not None and self.fold >= self.folds:
            raise ValueError(f"split.fold must be below split.folds ({self.folds}), got {self.fold}")
        return self


def main() -> None:
    params = load_section("split", SplitParams)
    labels = read_table(LABELS)
    parts = split(labels, params)
    with atomic_dir(OUT) as out:
        for name, part in parts.items():
            write_csv(out / f"{name}.csv", part.sort_values("image"))
    write_json(Path("metrics/split.json"), summary(parts))
    write_csv(PER_CLASS, per_class(parts))
    print("split: " + ", ".join(f"{name} {len(part)}" for name, part in parts.items()))


def split(labels: pd.DataFrame, params: SplitParams) -> dict[str, pd.DataFrame]:
    if "split" in labels.columns and params.folds is None:
        train, val, test = given_split(labels)
    else:
        train, val, test = drawn_split(labels.drop(columns="split", errors="ignore"), params)
    test = test.assign(reviewed_label=test["label"], label=test["dataset_label"])
    return {"train": train[train["label"] != "drop"], "val": val[val["label"] != "drop"], "test": test}


def drawn_split(labels: pd.DataFrame, params: SplitParams) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    needed = max(len(SPLITS), params.folds or 0)
    counts = labels[STRATUM].value_counts()
    too_few = counts[counts < needed]
    if not too_few.empty:
        named = ", ".join(f"'{name}' has {count}" for name, count in sorted(too_few.items()))
        folds = f" ({params.folds} folds)" if params.folds else ""
        raise PipelineError(f"split: too few photos to stratify{folds}, {needed} per class needed: {named}")
    val_share_of_rest = params.val / (params.train + params.val)
    try:
        if params.folds is not None:
            rest, test = kth_fold(labels, params)
        else:
            rest, test = held_out(labels, params.test, params)
        train, val = held_out(rest, val_share_of_rest, params)
    except ValueError as error:
        raise PipelineError(f"split: cannot split these labels with these params ({error})") from None
    return train, val, test


def given_split(labels: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The photos' own split: every split must keep photos, and train every class the others have."""
    parts = [labels[labels["split"] == name].drop(columns="split") for name in SPLITS]
    for name, part in zip(SPLITS, parts, strict=True):
        if part.empty:
            raise PipelineError(f"split: the given {name} split has no photo left after cleaning")
    for name, part in zip(SPLITS[1:], parts[1:], strict=True):
        unseen = sorted(set(part[STRATUM]) - set(parts[0]["label"]))
        if unseen:
            raise PipelineError(f"split: classes in the given {name} split but not in train: {unseen}")
    return parts[0], parts[1], parts[2]


def kth_fold(frame: pd.DataFrame, params: SplitParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the other folds, fold ``params.fold``) of a stratified, optionally sender-grouped, K-fold."""
    if params.group_by_sender:
        folds = StratifiedGroupKFold(params.folds, shuffle=True, random_state=params.seed)
        all_folds = folds.split(frame, frame[STRATUM], groups=frame["sender_id"])
    else:
        all_folds = StratifiedKFold(params.folds, shuffle=True, random_state=params.seed).split(frame, frame[STRATUM])
    keep, held = list(all_folds)[params.fold]
    return frame.iloc[keep], frame.iloc[held]


def held_out(frame: pd.DataFrame, fraction: float, params: SplitParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the rest, about ``fraction`` of ``frame``) stratified, as whole senders if grouped."""
    if params.group_by_sender:
        return one_group_fold(frame, fraction, params.seed)
    rest, held = train_test_split(frame, test_size=fraction, stratify=frame[STRATUM], random_state=params.seed)
    return rest, held


def one_group_fold(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out about ``fraction`` of ``frame`` as whole sender groups, stratified by label."""
    folds = StratifiedGroupKFold(n_splits=round(1 / fraction), shuffle=True, random_state=seed)
    keep, held_out = next(folds.split(frame, frame[STRATUM], groups=frame["sender_id"]))
    return frame.iloc[keep], frame.iloc[held_out]


def summary(parts: dict[str, pd.DataFrame]) -> dict:
    senders = {name: set(part["sender_id"]) for name, part in parts.items()}
    shared = (
        (senders["train"] & senders["val"]) | (senders["train"] & senders["test"]) | (senders["val"] & senders["test"])
    )
    return {name: {"total": len(part)} for name, part in parts.items()} | {"senders_in_several_splits": len(shared)}


def per_class(parts: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Photos of each class in each split (a table: one DVC metric per class would crowd ``dvc exp show``)."""
    counts = pd.DataFrame({name: part["label"].value_counts() for name, part in parts.items()})
    return counts.fillna(0).astype(int).sort_index().rename_axis("class").reset_index()


if __name__ == "__main__":
    run_stage(main)
