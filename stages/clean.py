"""clean: data/raw -> data/clean/labels.csv, keeping only usable, labelled clothing photos.

Every row or image that is dropped is listed with its reason in metrics/dropped.csv;
counts per class and per reason go to metrics/data.json.

Reviewed corrections in data/relabel.csv (image, label, reason; written by a person after
the label audit, never by a program) are applied first: ``label`` becomes the new label,
or ``drop`` (listed with reason ``review_drop``). ``dataset_label`` keeps the dataset's own
label, which split stratifies and scores the test split by. A dropped photo stays in
labels.csv labelled ``drop``, so split assigns every photo as before the review and then
leaves it out of training.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pandas as pd
from pydantic import model_validator
from tqdm import tqdm

from clothing.analysis.plots import plt, save_png
from clothing.data.images import ImageError, open_rgb
from clothing.errors import PipelineError, run_stage
from clothing.files import atomic_dir, read_table, sha256_file, write_csv, write_json
from clothing.params import Section, load_section

RAW = Path("data/raw")
CORRECTIONS = Path("data/relabel.csv")
OUT = Path("data/clean")
METRICS = Path("metrics")
REASONS = [
    "duplicate_row",
    "missing_image",
    "unreadable_image",
    "missing_label",
    "review_drop",
    "excluded_label",
    "duplicate_image",
    "no_label_row",
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
    rows = read_rows(RAW / "images.csv")
    check_label_params(params, set(rows["label"]) - {""})  # before the corrections, which name kept classes
    rows = apply_corrections(rows, read_corrections(CORRECTIONS, rows, kept_classes(rows, params)))
    labelled, dropped = clean(rows, RAW / "images", params)
    check_corrected_photos_kept(labelled)
    kept = labelled[labelled["label"] != "drop"]

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
    rows["label"] = normalise_labels(rows["label"])
    return rows.sort_values("image", kind="stable").reset_index(drop=True)


def normalise_labels(labels: pd.Series) -> pd.Series:
    """Trim and collapse white space; spellings that differ only in case become the commonest."""
    labels = labels.str.split().str.join(" ")
    key = labels.str.casefold()
    commonest = (
        pd.DataFrame({"key": key, "label": labels})
        .value_counts()
        .reset_index()
        .sort_values(["key", "count", "label"], ascending=[True, False, True])
        .drop_duplicates("key")
        .set_index("key")["label"]
    )
    return key.map(commonest)


def kept_classes(rows: pd.DataFrame, params: CleanParams) -> set[str]:
    classes = set(rows["label"]) - set(params.drop_labels) - {""}
    return classes & set(params.keep_labels) if params.keep_labels is not None else classes


def read_corrections(path: Path, rows: pd.DataFrame, classes: set[str]) -> pd.DataFrame:
    """The reviewed corrections, each naming a known photo and a kept class (or ``drop``) with a reason.

    A correction to a class that is not kept would drop the photo as an excluded label, and
    so redraw every split; a photo that should go is corrected to ``drop``, which keeps them.
    """
    corrections = read_table(path)
    missing = {"image", "label", "reason"} - set(corrections.columns)
    if missing:
        raise PipelineError(f"{path}: missing columns {sorted(missing)}")
    problems = {
        "photos listed twice": corrections["image"][corrections["image"].duplicated()],
        "photos not in the dataset": corrections["image"][~corrections["image"].isin(rows["image"])],
        "corrections without a reason": corrections["image"][corrections["reason"].str.strip() == ""],
    }
    for problem, values in problems.items():
        if len(values):
            raise PipelineError(f"{path}: {problem}: {sorted(set(values))[:5]}")
    for row, (image, label) in enumerate(zip(corrections["image"], corrections["label"], strict=True), start=2):
        if label not in classes | {"drop"}:
            close = difflib.get_close_matches(label, sorted(classes), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise PipelineError(
                f"{path}: line {row} ({image}): '{label}' is not a kept class ({hint}a kept class or drop)"
            )
    return corrections


def apply_corrections(rows: pd.DataFrame, corrections: pd.DataFrame) -> pd.DataFrame:
    new_label = rows["image"].map(corrections.set_index("image")["label"])
    return rows.assign(dataset_label=rows["label"], label=new_label.fillna(rows["label"]))


def clean(rows: pd.DataFrame, images: Path, params: CleanParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    reason = pd.Series("", index=rows.index)

    def drop(mask: pd.Series, why: str) -> None:
        reason[mask & (reason == "")] = why

    drop(rows["image"].duplicated(), "duplicate_row")
    paths = rows["image"].map(lambda image: images / f"{image}.jpg")
    drop(~paths.map(Path.is_file), "missing_image")
    to_check = paths[reason == ""]
    unreadable = [is_unreadable(p) for p in tqdm(to_check, desc="check images", unit="img")]
    drop(pd.Series(unreadable, index=to_check.index).reindex(rows.index, fill_value=False), "unreadable_image")
    drop(rows["label"] == "", "missing_label")
    drop(rows["label"] == "drop", "review_drop")
    if params.keep_labels is not None:
        drop(~rows["label"].isin(params.keep_labels), "excluded_label")
    drop(rows["label"].isin(params.drop_labels), "excluded_label")
    digests = paths.where(reason == "").dropna().map(sha256_file)
    drop(digests.duplicated().reindex(rows.index, fill_value=False), "duplicate_image")

    kept = rows[reason.isin(["", "review_drop"])].assign(path=paths.map(Path.as_posix))
    dropped = rows.assign(reason=reason)[reason != ""][["image", "dataset_label", "reason"]]
    dropped = dropped.rename(columns={"dataset_label": "label"})
    unlabelled = sorted({p.stem for p in images.glob("*.jpg")} - set(rows["image"]))
    dropped = pd.concat([dropped, pd.DataFrame({"image": unlabelled, "label": "", "reason": "no_label_row"})])
    return (
        kept[["image", "label", "dataset_label", "sender_id", "kids", "path"]].reset_index(drop=True),
        dropped.sort_values(["reason", "image"]).reset_index(drop=True),
    )


def check_corrected_photos_kept(labelled: pd.DataFrame) -> None:
    """The test split is scored by dataset labels, so each photo's must be a kept class."""
    outside = labelled["image"][~labelled["dataset_label"].isin(set(labelled["label"]) - {"drop"})]
    if len(outside):
        raise PipelineError(
            f"{CORRECTIONS}: only photos whose dataset label is a kept class can be corrected: {sorted(outside)[:5]}"
        )


def check_label_params(params: CleanParams, labels: set[str]) -> None:
    for key in ("keep_labels", "drop_labels"):
        for name in getattr(params, key) or []:
            if name not in labels:
                close = difflib.get_close_matches(name, sorted(labels), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise PipelineError(f"params.yaml: clean.{key}: unknown class '{name}'{hint}")


def is_unreadable(path: Path) -> bool:
    try:
        open_rgb(path)
    except ImageError:
        return True
    return False


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
