"""Your own photos as fetch's source: what is in the folder or CSV, before anything is copied.

Three layouts, told apart by what ``fetch.source`` names:

- a CSV: columns ``path`` and ``label``, an optional ``group`` (who took the photo, for
  ``split.group_by_sender``); paths relative to the CSV's folder. Name the folder that
  holds it as ``labels.csv``, so DVC's dependency is the photos too, or the CSV itself;
- a folder whose subfolders are all split names (``train``, ``validation``, ``valid`` or
  ``val``, ``test``, in any case): ``<split>/<class>/<photo>``, a given split that the
  split stage keeps;
- any other folder: ``<class>/<photo>``, one subfolder per class, as Keras'
  ``image_dataset_from_directory`` and MediaPipe Model Maker's ``Dataset.from_folder`` read it.

Photos in folders below a class folder belong to that class. Each photo is listed with
``file``, its name under data/raw/images/ (its path in the source, which is also its
``image`` name in every table). Whether it is an image at all is clean's call; what is
passed over here (hidden files, files outside a class folder or outside the CSV's folder)
is listed with the reason, and clean reports it with the rest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import pandas as pd

from clothing.errors import PipelineError
from clothing.files import read_table
from clothing.params import Section, load_section, workspace

# A given split's folder names and the split each one is.
SPLIT_FOLDERS = {"train": "train", "validation": "val", "valid": "val", "val": "val", "test": "test"}
CSV_IN_FOLDER = "labels.csv"
PHOTO_COLUMNS = ["image", "file", "label", "sender_id", "split", "origin"]
SKIPPED_COLUMNS = ["image", "label", "reason", "detail"]
# Not a split: what unzipping on macOS leaves beside the folders.
NOT_PHOTOS = {"__MACOSX"}


@dataclass(frozen=True)
class Listing:
    kind: str  # "class folders", "split folders" or "csv"
    photos: pd.DataFrame  # PHOTO_COLUMNS; ``origin`` is where the photo is now
    skipped: pd.DataFrame  # SKIPPED_COLUMNS: what is passed over, and why


class FetchSource(Section):
    source: str


def fetch_source() -> str:
    """``fetch.source``: data/relabel.csv's corrections written for it are the ones that apply."""
    return load_section("fetch", FetchSource, keys=["source"]).source


def written_for(sources: pd.Series, source: str) -> pd.Series:
    """Which rows of a ``source`` column name ``source`` (``./photos/`` and ``photos`` alike)."""
    return sources.map(_in_workspace) == _in_workspace(source)


def _in_workspace(path: str) -> str:
    """``photos``, ``./photos/`` and the absolute path of the workspace's ``photos`` alike."""
    return os.path.normpath(os.path.join(workspace(), path))


def list_photos(source: Path) -> Listing:
    """What ``source`` holds, or one clear error if it cannot be read as any layout."""
    if source.is_file():
        if source.suffix.lower() != ".csv":
            raise PipelineError(f"fetch.source: {source}: not a folder, a .csv or a .yaml archive description")
        return from_csv(source)
    if (source / CSV_IN_FOLDER).is_file():
        return from_csv(source / CSV_IN_FOLDER)
    folders = {entry.name for entry in source.iterdir() if entry.is_dir() and not _passed_over(entry.name)}
    splits = {name for name in folders if name.casefold() in SPLIT_FOLDERS}
    if splits and splits != folders:
        raise PipelineError(
            f"fetch.source: {source}: holds split folders {sorted(splits)} and other folders "
            f"{sorted(folders - splits)}: move those out, or rename the split folders if they are classes"
        )
    listing = from_split_folders(source) if splits else Listing("class folders", *from_class_folders(source))
    if listing.photos.empty:
        raise PipelineError(
            f"fetch.source: {source}: no photo in a class folder ({len(listing.skipped)} files passed over): "
            "put each class's photos in a subfolder named after it"
        )
    return listing


def _passed_over(name: str) -> bool:
    return name.startswith(".") or name in NOT_PHOTOS


def from_class_folders(root: Path, prefix: str = "", split: str = "") -> tuple[pd.DataFrame, pd.DataFrame]:
    """``root/<class>/.../<photo>``: every file below a class folder is a photo of that class."""
    photos, skipped = [], []
    for entry in sorted(root.iterdir()):
        name = prefix + entry.name
        if _passed_over(entry.name):
            skipped.append((name, "", "hidden_file", ""))
        elif entry.is_file():
            skipped.append((name, "", "no_class_folder", ""))
        elif entry.is_dir():
            for path in sorted(p for p in entry.rglob("*") if p.is_file()):
                file = prefix + path.relative_to(root).as_posix()
                if any(part.startswith(".") for part in path.relative_to(entry).parts):
                    skipped.append((file, entry.name, "hidden_file", ""))
                else:
                    photos.append((file, file, entry.name, file, split, str(path)))
    return pd.DataFrame(photos, columns=PHOTO_COLUMNS), pd.DataFrame(skipped, columns=SKIPPED_COLUMNS)


def from_split_folders(root: Path) -> Listing:
    """``root/<split>/<class>/<photo>``; a given split with no photo is an error."""
    parts = [
        from_class_folders(entry, f"{entry.name}/", SPLIT_FOLDERS[entry.name.casefold()])
        for entry in sorted(root.iterdir())
        if entry.is_dir() and not _passed_over(entry.name)
    ]
    beside = [(entry.name, "", "hidden_file" if _passed_over(entry.name) else "no_class_folder", "")
              for entry in sorted(root.iterdir()) if entry.is_file() or _passed_over(entry.name)]  # fmt: skip
    photos = pd.concat([photos for photos, _ in parts], ignore_index=True)
    for split in ("train", "val", "test"):
        if not (photos["split"] == split).any():
            folders = " or ".join(f"{folder}/" for folder, named in SPLIT_FOLDERS.items() if named == split)
            raise PipelineError(f"fetch.source: {root}: the given split {split} is empty (no photo in {folders})")
    skipped = pd.concat([pd.DataFrame(beside, columns=SKIPPED_COLUMNS)] + [s for _, s in parts], ignore_index=True)
    return Listing("split folders", photos, skipped)


def from_csv(path: Path) -> Listing:
    """A CSV of ``path,label[,group]``; a path outside the CSV's folder is passed over."""
    try:
        rows = read_table(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise PipelineError(f"fetch.source: {path}: cannot read ({error})") from None
    missing = {"path", "label"} - set(rows.columns)
    if missing:
        raise PipelineError(f"fetch.source: {path}: missing columns {sorted(missing)} (path,label[,group])")
    # Without a group, each photo is its own.
    groups = rows["group"].where(rows["group"] != "", rows["path"]) if "group" in rows.columns else rows["path"]
    photos, skipped = [], []
    for written, label, group in zip(rows["path"], rows["label"], groups, strict=True):
        file = PurePosixPath(written.replace("\\", "/"))
        if file.is_absolute() or PureWindowsPath(written).drive or ".." in file.parts:
            skipped.append((written, label, "outside_source", ""))
        elif any(part.startswith(".") for part in file.parts):
            skipped.append((written, label, "hidden_file", ""))
        else:
            photos.append((file.as_posix(), file.as_posix(), label, group, "", str(path.parent / file)))
    return Listing("csv", pd.DataFrame(photos, columns=PHOTO_COLUMNS), pd.DataFrame(skipped, columns=SKIPPED_COLUMNS))


def normalise_labels(labels: pd.Series) -> pd.Series:
    """Unicode NFC, white space trimmed and collapsed; spellings that differ only in case become the commonest.

    NFC: a folder name from macOS (decomposed, NFD) and the same name typed (composed) are one class.
    """
    labels = labels.str.normalize("NFC").str.split().str.join(" ")
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
