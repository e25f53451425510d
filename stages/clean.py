"""clean: data/raw -> data/clean/labels.csv, keeping only usable, labelled clothing photos.

Every row or image that is dropped is listed with its reason in metrics/dropped.csv;
counts per class and per reason go to metrics/data.json.

The source is fetch's data/raw whatever ``fetch.source`` was: the clothing dataset's
images.csv, or your own photos' (clothing.data.sources), which also name each photo's
``file`` and given ``split`` and list in skipped.csv what fetch passed over.

Reviewed corrections in data/relabel.csv (source, image, label, reason; written by a person
after the label audit, never by a program) for this ``fetch.source`` are applied first:
``label`` becomes the new label, or ``drop`` (listed with reason ``review_drop``).
``dataset_label`` keeps the dataset's own label, which split stratifies and scores the
test split by. A dropped photo stays in labels.csv labelled ``drop``, so split assigns
every photo as before the review and then leaves it out of training.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pandas as pd
from pydantic import model_validator
from tqdm import tqdm

from clothing.analysis.plots import plt, save_png
from clothing.data.images import ImageError, open_rgb
from clothing.data.sources import fetch_source, normalise_labels, written_for
from clothing.errors import PipelineError, run_stage
from clothing.files import atomic_dir, read_table, sha256_file, write_csv, write_json
from clothing.params import Section, load_section

RAW = Path("data/raw")
CORRECTIONS = Path("data/relabel.csv")
OUT = Path("data/clean")
METRICS = Path("metrics")
SKIPPED = RAW / "skipped.csv"  # own photos only: what fetch passed over, with the reason
REASONS = [
    "duplicate_row",
    "missing_image",
    "unreadable_image",
    "missing_label",
    "review_drop",
    "excluded_label",
    "duplicate_image",
    "no_label_row",
    "label_conflict",
    "hidden_file",
    "no_class_folder",
    "outside_source",
]


class CleanParams(Section):
    drop_labels: list[str]  # raw labels that are not clothing classes
    keep_labels: list[str] | None  # a list keeps only these classes

    @model_validator(mode="after")
    def _keep_and_drop_disjoint(self) -> CleanParams:
        both = sorted(set(self.keep_labels or []) & set(self.drop_labels))
        if both:
            raise ValueError(f"labels both kept and dropped: {both}")
        return self


def main() -> None:
    params = load_section("clean", CleanParams)
    source = fetch_source()
    rows = read_rows(RAW / "images.csv")
    check_label_params(params, set(rows["label"]) - {""})  # before the corrections, which name kept classes
    corrections = read_corrections(CORRECTIONS, source, rows, kept_classes(rows, params))
    rows = apply_corrections(rows, corrections)
    labelled, dropped = clean(rows, RAW / "images", params)
    dropped = pd.concat([dropped, read_skipped(SKIPPED)], ignore_index=True)
    check_corrected_photos_kept(labelled)
    kept = labelled[labelled["label"] != "drop"]
    check_classes(kept)

    with atomic_dir(OUT) as out:
        write_csv(out / "labels.csv", labelled)
    write_csv(METRICS / "dropped.csv", dropped)
    counts = kept["label"].value_counts().sort_index()
    write_json(METRICS / "data.json", summary(rows, kept, dropped))
    distribution = counts.sort_values(ascending=False).rename_axis("label").reset_index()
    write_csv(METRICS / "class_distribution.csv", distribution)
    plot_distribution(distribution, METRICS / "class_distribution.png")
    print(f"clean: kept {len(kept)} images in {len(counts)} classes, dropped {len(dropped)}")


def read_rows(path: Path) -> pd.DataFrame:
    try:
        rows = read_table(path)
    except (OSError, pd.errors.ParserError) as error:
        raise PipelineError(f"{path}: cannot read ({error})") from None
    missing = {"image", "sender_id", "label", "kids"} - set(rows.columns)
    if missing:
        raise PipelineError(f"{path}: missing columns {sorted(missing)}")
    if "file" not in rows.columns:  # the clothing dataset's own table: images/<image>.jpg
        rows["file"] = rows["image"] + ".jpg"
    rows["label"] = normalise_labels(rows["label"])
    return rows.sort_values("image", kind="stable").reset_index(drop=True)


def kept_classes(rows: pd.DataFrame, params: CleanParams) -> set[str]:
    classes = set(rows["label"]) - set(params.drop_labels) - {""}
    return classes & set(params.keep_labels) if params.keep_labels is not None else classes


def read_corrections(path: Path, source: str, rows: pd.DataFrame, classes: set[str]) -> pd.DataFrame:
    """The reviewed corrections of ``source``, each naming a known photo and a kept class (or ``drop``) with a reason.

    Corrections written for another source (another ``fetch.source``) wait in the file, unused.

    A correction to a class that is not kept would drop the photo as an excluded label, and
    so redraw every split; a photo that should go is corrected to ``drop``, which keeps them.
    """
    corrections = read_table(path)
    missing = {"source", "image", "label", "reason"} - set(corrections.columns)
    if missing:
        raise PipelineError(f"{path}: missing columns {sorted(missing)}")
    mine = written_for(corrections["source"], source)
    if (~mine).any():
        print(f"clean: {mine.sum()} corrections for {source}; {(~mine).sum()} for other sources wait unused")
    corrections = corrections[mine]
    problems = {
        "photos listed twice": corrections["image"][corrections["image"].duplicated()],
        "photos not in the dataset": corrections["image"][~corrections["image"].isin(rows["image"])],
        "corrections without a reason": corrections["image"][corrections["reason"].str.strip() == ""],
    }
    for problem, values in problems.items():
        if len(values):
            raise PipelineError(f"{path}: {problem}: {sorted(set(values))[:5]}")
    for row, image, label in zip(corrections.index + 2, corrections["image"], corrections["label"], strict=True):
        if label not in classes | {"drop"}:
            close = difflib.get_close_matches(label, sorted(classes), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise PipelineError(
                f"{path}: line {row} ({image}): '{label}' is not a kept class ({hint}a kept class or drop)"
            )
    return corrections


def apply_corrections(rows: pd.DataFrame, corrections: pd.DataFrame) -> pd.DataFrame:
    new_label = rows["image"].map(corrections.set_index("image")["label"]).astype(object)  # all NaN: none apply
    return rows.assign(dataset_label=rows["label"], label=new_label.fillna(rows["label"]))


def clean(rows: pd.DataFrame, images: Path, params: CleanParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    reason = pd.Series("", index=rows.index)

    def drop(mask: pd.Series, why: str) -> None:
        reason[mask & (reason == "")] = why

    # One photo under two classes, listed twice (a CSV) or as two copies, is a conflict: every
    # copy goes. Judged by the source's labels (dataset_label), so a review moves no photo.
    listed_twice = rows.groupby("image")["dataset_label"].transform("nunique") > 1
    drop(listed_twice, "label_conflict")
    drop(rows["image"].duplicated(), "duplicate_row")
    paths = rows["file"].map(lambda file: images / file)
    drop(~paths.map(Path.is_file), "missing_image")
    to_check = paths[reason == ""]
    problems = [image_problem(p) for p in tqdm(to_check, desc="check images", unit="img")]
    detail = pd.Series(problems, index=to_check.index).reindex(rows.index, fill_value="")
    drop(detail != "", "unreadable_image")
    listed_as = rows.groupby("image")["dataset_label"].transform(lambda labels: ", ".join(sorted(set(labels))))
    detail = detail.mask(listed_twice, "listed as: " + listed_as)
    drop(rows["label"] == "", "missing_label")
    drop(rows["label"] == "drop", "review_drop")
    if params.keep_labels is not None:
        drop(~rows["label"].isin(params.keep_labels), "excluded_label")
    drop(rows["label"].isin(params.drop_labels), "excluded_label")
    digests = paths.where(reason == "").dropna().map(sha256_file)
    same_bytes = rows.loc[digests.index].groupby(digests)
    conflicting = same_bytes["dataset_label"].transform("nunique") > 1
    drop(conflicting.reindex(rows.index, fill_value=False), "label_conflict")
    drop(digests.duplicated().reindex(rows.index, fill_value=False), "duplicate_image")
    shares_bytes = reason.isin(["label_conflict", "duplicate_image"]) & rows.index.isin(digests.index)
    detail = detail.mask(shares_bytes, same_photo(digests, rows))

    columns = ["image", "label", "dataset_label", "sender_id", "kids", "path"] + (["split"] if "split" in rows else [])
    kept = rows[reason.isin(["", "review_drop"])].assign(path=paths.map(Path.as_posix))
    dropped = rows.assign(reason=reason, detail=detail)[reason != ""][["image", "dataset_label", "reason", "detail"]]
    dropped = dropped.rename(columns={"dataset_label": "label"})
    listed = set(rows["file"])
    unlabelled = sorted(p.stem for p in images.glob("*.jpg") if p.name not in listed)
    dropped = pd.concat([dropped, pd.DataFrame({"image": unlabelled, "label": "", "reason": "no_label_row"})])
    return (
        kept[columns].reset_index(drop=True),
        dropped.fillna("").sort_values(["reason", "image"]).reset_index(drop=True),
    )


def same_photo(digests: pd.Series, rows: pd.DataFrame) -> pd.Series:
    """For each photo whose bytes another has too: where, and as what (the first is the one kept)."""
    named = rows.loc[digests.index, "image"] + " (" + rows.loc[digests.index, "dataset_label"] + ")"
    return named.groupby(digests).transform(lambda same: "same bytes: " + ", ".join(same)).reindex(rows.index)


def read_skipped(path: Path) -> pd.DataFrame:
    """What fetch passed over in your own photos (hidden files, files outside a class folder)."""
    if not path.is_file():
        return pd.DataFrame(columns=["image", "label", "reason", "detail"])
    return read_table(path)


def check_classes(kept: pd.DataFrame) -> None:
    counts = kept["label"].value_counts()
    if len(counts) < 2:
        left = ", ".join(f"{name}: {count} photos" for name, count in counts.items())
        raise PipelineError(f"clean: {len(counts)} class left after cleaning ({left}): a classifier needs 2 or more")


def check_corrected_photos_kept(labelled: pd.DataFrame) -> None:
    """The test split is scored by dataset labels, so each photo's must be a kept class."""
    outside = labelled["image"][~labelled["dataset_label"].isin(set(labelled["label"]) - {"drop"})]
    if len(outside):
        raise PipelineError(
            f"{CORRECTIONS}: only photos whose dataset label is a kept class can be corrected: {sorted(outside)[:5]}"
        )


def check_label_params(params: CleanParams, labels: set[str]) -> None:
    """A class to keep must be in the data; one to drop need not: the defaults name the clothing
    dataset's non-classes, which your own photos may lack (and a class of yours they name is left out, said aloud)."""
    if "drop" in labels:
        raise PipelineError("a class is named 'drop', which data/relabel.csv uses to drop a photo: rename it")
    for name in params.keep_labels or []:
        if name not in labels:
            close = difflib.get_close_matches(name, sorted(labels), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise PipelineError(f"params.yaml: clean.keep_labels: unknown class '{name}'{hint}")
    absent = [name for name in params.drop_labels if name not in labels]
    if absent:
        print(f"clean: clean.drop_labels not in this data, nothing to drop: {absent}")
    present = sorted(set(params.drop_labels) & labels)
    if present:
        print(f"clean: leaving out the classes in clean.drop_labels: {present}")


def image_problem(path: Path) -> str:
    """Why the file is not a usable image ("" if it is): empty, not an image, truncated."""
    try:
        open_rgb(path)
    except ImageError as error:
        return str(error)
    return ""


def summary(rows: pd.DataFrame, kept: pd.DataFrame, dropped: pd.DataFrame) -> dict:
    per_reason = dropped["reason"].value_counts()
    return {
        "rows": len(rows),
        "kept": len(kept),
        "classes": int(kept["label"].nunique()),
        "dropped": len(dropped),
        "dropped_per_reason": {why: int(per_reason.get(why, 0)) for why in REASONS},
        "relabelled": int((kept["label"] != kept["dataset_label"]).sum()),
    }


def plot_distribution(distribution: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(distribution) + 1))
    ax.barh(distribution["label"], distribution["count"])
    ax.invert_yaxis()
    ax.set_xlabel("images kept")
    ax.set_title("Class distribution after cleaning")
    for y, count in enumerate(distribution["count"]):
        ax.text(count, y, f" {count}", va="center", fontsize=8)
    save_png(fig, path)


if __name__ == "__main__":
    run_stage(main)
