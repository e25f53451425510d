"""Your own photos (fetch.source a folder or a CSV): each layout end to end, bad data, clear errors."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pandas as pd
import pytest
from conftest import QUICK, TINY_TRAIN, Archive, error_line, make_project, photo, run, stage, update_params

from clothing.files import read_table
from clothing.models.tflite_metadata import read_metadata

# A space and a non-ASCII letter in a class name: it must reach predict's output and the TFLite labels.
OWN_CLASSES = {"T-Shirt": (200, 40, 40), "Pants": (40, 160, 40), "Chaussure à talon": (40, 40, 200)}


def class_folders(root: Path, per_class: int = 10, classes: dict | None = None) -> Path:
    """``root/<class>/<photo>.jpg``, distinct photos in each class's colour."""
    for number, (label, colour) in enumerate((classes or OWN_CLASSES).items()):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            photo(root / label / f"photo-{i:02d}.jpg", colour, 1000 * number + i)
    return root


def split_folders(root: Path, counts: dict[str, int] | None = None) -> Path:
    """``root/{train,validation,test}/<class>/<photo>.jpg``."""
    seed = 3000
    for folder, per_class in (counts or {"train": 6, "validation": 2, "test": 2}).items():
        for label, colour in OWN_CLASSES.items():
            (root / folder / label).mkdir(parents=True)
            for i in range(per_class):
                seed += 1
                photo(root / folder / label / f"{folder}-{i}.jpg", colour, seed)
    return root


def csv_source(root: Path) -> Path:
    """``root/labels.csv`` of path,label,group, the photos in ``root/pics/``."""
    (root / "pics").mkdir(parents=True)
    lines = ["path,label,group"]
    for number, (label, colour) in enumerate(OWN_CLASSES.items()):
        for i in range(10):
            photo(root / "pics" / f"{number}-{i}.jpg", colour, 2000 * number + i)
            lines.append(f'pics/{number}-{i}.jpg,"{label}",person-{i % 4}')
    (root / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / "labels.csv"


def split_folders_and_more(root: Path) -> Path:
    split_folders(root)
    (root / "annotations").mkdir()
    (root / "__MACOSX").mkdir()  # what unzipping on macOS leaves: passed over, not "other folders"
    return root


def loose_photos(root: Path) -> Path:
    photo(root / "one.jpg", (1, 2, 3), 5)
    return root


def a_class_named_drop(root: Path) -> Path:
    return class_folders(root, classes={"Pants": (40, 160, 40), "drop": (1, 1, 1)})


def csv_without_paths(root: Path) -> Path:
    (root / "labels.csv").write_text("file,label\nx.jpg,Pants\n")
    return root / "labels.csv"


LAYOUTS = {"class folders": class_folders, "split folders": split_folders, "csv": csv_source}


def own_project(tmp_path: Path, archive: Archive, source: Path) -> Path:
    project = make_project(tmp_path / "project", archive)
    update_params(project, {"fetch": {"source": str(source)}, "train": TINY_TRAIN, "quantize": QUICK})
    run(project, "dvc", "init", "--no-scm", "-q")
    return project


def dropped(project: Path) -> pd.DataFrame:
    return read_table(project / "metrics/dropped.csv").set_index("image")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_runs_through_evaluate_and_quantize(tmp_path: Path, archive: Archive, layout: str) -> None:
    source = LAYOUTS[layout](tmp_path / "photos")
    project = own_project(tmp_path, archive, source)
    run(project, "dvc", "repro", "evaluate", "quantize")

    assert json.loads((project / "data/raw/source.json").read_text())["layout"] == layout
    classes = json.loads((project / "models/model.json").read_text())["classes"]
    assert sorted(classes) == sorted(OWN_CLASSES)
    assert json.loads((project / "metrics/data.json").read_text())["kept"] == 30
    assert set(json.loads((project / "metrics/eval.json").read_text())) >= {"accuracy", "macro_f1"}
    described = read_metadata(project / "models/tflite/model_int8.tflite")
    assert described is not None and described.classes == classes

    any_photo = next((project / "data/raw/images").rglob("*.jpg"))
    command = [
        sys.executable,
        "-m",
        "clothing.commands.cli",
        "predict",
        str(any_photo),
        "--top-k",
        "3",
        "--format",
        "csv",
    ]
    result = subprocess.run(command, cwd=project, capture_output=True, text=True, encoding="utf-8", check=True)
    assert set(pd.read_csv(io.StringIO(result.stdout))["class"]) == set(OWN_CLASSES)


@pytest.mark.parametrize(
    ("rename", "layout"),
    [({}, "split folders"), ({"validation": "Valid", "train": "Train"}, "split folders"), ({"labels": ""}, "csv")],
)
def test_the_layout_is_told_by_what_the_folder_holds(
    tmp_path: Path, archive: Archive, rename: dict, layout: str
) -> None:
    """Split folders in any case (Roboflow's valid/, Kaggle's Train/); a folder holding labels.csv is a CSV."""
    if layout == "csv":
        root = csv_source(tmp_path / "photos").parent
    else:
        root = split_folders(tmp_path / "photos")
        for old, new in rename.items():
            (root / old).rename(root / new)
    (root / "notes.txt").write_text("taken in 2026\n")
    project = own_project(tmp_path, archive, root)
    stage(project, "fetch")
    assert json.loads((project / "data/raw/source.json").read_text())["layout"] == layout
    skipped = read_table(project / "data/raw/skipped.csv")
    beside_the_photos = {} if layout == "csv" else {"notes.txt": "no_class_folder"}  # a CSV names its photos
    assert dict(zip(skipped["image"], skipped["reason"], strict=True)) == beside_the_photos


def test_a_given_split_keeps_every_photo_where_it_was(tmp_path: Path, archive: Archive) -> None:
    project = own_project(tmp_path, archive, split_folders(tmp_path / "photos"))
    run(project, "dvc", "repro", "split")
    for folder, split in {"train": "train", "validation": "val", "test": "test"}.items():
        given = {p.relative_to(tmp_path / "photos").as_posix() for p in (tmp_path / "photos" / folder).rglob("*.jpg")}
        assert set(read_table(project / f"data/split/{split}.csv")["image"]) == given


def test_bad_files_are_reported_with_their_reason(tmp_path: Path, archive: Archive) -> None:
    root = class_folders(tmp_path / "photos")
    shirts, pants, shoes = (root / name for name in OWN_CLASSES)
    (shirts / "notes.jpg").write_text("not a photo\n")
    (shirts / "empty.jpg").write_bytes(b"")
    good = (shirts / "photo-00.jpg").read_bytes()
    (shirts / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (shirts / ".DS_Store").write_bytes(b"\0\0")
    (shirts / "on the line").mkdir()
    photo(shirts / "on the line" / "nested.jpg", OWN_CLASSES["T-Shirt"], 77)  # below the class: read
    shutil.copy(pants / "photo-03.jpg", pants / "again.jpg")  # duplicate in a class: one kept
    photo(pants / "either.jpg", (90, 90, 90), 88)
    shutil.copy(pants / "either.jpg", shoes / "either.jpg")  # one photo under two classes: both go
    (root / "README.txt").write_text("my photos\n")
    (root / ".cache").mkdir()
    project = own_project(tmp_path, archive, root)
    stage(project, "fetch")
    stage(project, "clean")

    why = dropped(project)
    assert why.loc["T-Shirt/notes.jpg", "detail"] == "not an image file"
    assert why.loc["T-Shirt/empty.jpg", "detail"] == "empty file"
    assert why.loc["T-Shirt/truncated.jpg", "detail"].startswith("cannot decode")
    unreadable = ["T-Shirt/notes.jpg", "T-Shirt/empty.jpg", "T-Shirt/truncated.jpg"]
    assert (why.loc[unreadable, "reason"] == "unreadable_image").all()
    assert why.loc["T-Shirt/.DS_Store", "reason"] == "hidden_file" and why.loc[".cache", "reason"] == "hidden_file"
    assert why.loc["README.txt", "reason"] == "no_class_folder"
    assert why.loc["Pants/photo-03.jpg", "reason"] == "duplicate_image"  # "Pants/again.jpg" sorts first, and stays
    assert set(why.loc[["Pants/either.jpg", "Chaussure à talon/either.jpg"], "reason"]) == {"label_conflict"}
    assert "Chaussure à talon/either.jpg (Chaussure à talon)" in why.loc["Pants/either.jpg", "detail"]
    kept = read_table(project / "data/clean/labels.csv").set_index("image")
    assert kept.loc["T-Shirt/on the line/nested.jpg", "label"] == "T-Shirt"
    assert "Pants/again.jpg" in kept.index and len(kept) == 31
    data = json.loads((project / "metrics/data.json").read_text())["dropped_per_reason"]
    assert data | {"unreadable_image": 3, "duplicate_image": 1, "label_conflict": 2} == data


OUTPUT = {"fetch": "data/raw", "clean": "data/clean", "split": "data/split"}


@pytest.mark.parametrize(
    ("make", "params", "failing", "message"),
    [
        (lambda root: root / "nowhere", {}, "fetch", "fetch.source: {root}/nowhere: no such file or folder"),
        (
            lambda root: class_folders(root, classes={"Pants": (40, 160, 40)}),
            {},
            "clean",
            "clean: 1 class left after cleaning (Pants: 10 photos): a classifier needs 2 or more",
        ),
        (
            lambda root: class_folders(root, per_class=2),
            {},
            "split",
            "split: too few photos to stratify, 3 per class needed: 'Chaussure à talon' has 2, 'Pants' has 2, "
            "'T-Shirt' has 2",
        ),
        (
            lambda root: class_folders(root, per_class=4),
            {"split": {"folds": 5}},
            "split",
            "split: too few photos to stratify (5 folds), 5 per class needed: 'Chaussure à talon' has 4, "
            "'Pants' has 4, 'T-Shirt' has 4",
        ),
        (
            split_folders_and_more,
            {},
            "fetch",
            "fetch.source: {root}: holds split folders ['test', 'train', 'validation'] and other folders "
            "['annotations']: move those out, or rename the split folders if they are classes",
        ),
        (
            loose_photos,
            {},
            "fetch",
            "fetch.source: {root}: no photo in a class folder (1 files passed over): put each class's photos in a "
            "subfolder named after it",
        ),
        (
            a_class_named_drop,
            {},
            "clean",
            "a class is named 'drop', which data/relabel.csv uses to drop a photo: rename it",
        ),
        (
            lambda root: split_folders(root, {"train": 4, "validation": 0, "test": 2}),
            {},
            "fetch",
            "fetch.source: {root}: the given split val is empty (no photo in validation/ or valid/ or val/)",
        ),
        (
            csv_without_paths,
            {},
            "fetch",
            "fetch.source: {root}/labels.csv: missing columns ['path'] (path,label[,group])",
        ),
    ],
)
def test_bad_sources_stop_with_one_line(
    tmp_path: Path, archive: Archive, make, params: dict, failing: str, message: str
) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    project = own_project(tmp_path, archive, make(root))
    update_params(project, params)
    for name in ("fetch", "clean", "split"):
        result = stage(project, name, check=name != failing)
        if name == failing:
            break
    assert error_line(result) == "error: " + message.format(root=root)
    assert not (project / OUTPUT[failing]).exists()


def test_a_class_in_the_given_val_split_but_not_in_train_is_one_line(tmp_path: Path, archive: Archive) -> None:
    root = split_folders(tmp_path / "photos")
    shutil.rmtree(root / "train" / "Pants")
    project = own_project(tmp_path, archive, root)
    stage(project, "fetch")
    stage(project, "clean")
    assert error_line(stage(project, "split", check=False)) == (
        "error: split: classes in the given val split but not in train: ['Pants']"
    )


def test_a_changed_photo_makes_fetch_rerun(tmp_path: Path, archive: Archive) -> None:
    root = class_folders(tmp_path / "photos")
    project = own_project(tmp_path, archive, root)
    run(project, "dvc", "repro", "fetch")
    digest = json.loads((project / "data/raw/source.json").read_text())["content_sha256"]
    assert "fetch" not in json.loads(run(project, "dvc", "status", "--json").stdout)
    photo(root / "Pants" / "photo-00.jpg", (0, 0, 0), 99)
    assert "fetch" in json.loads(run(project, "dvc", "status", "--json").stdout)
    run(project, "dvc", "repro", "fetch")
    assert json.loads((project / "data/raw/source.json").read_text())["content_sha256"] != digest


def test_corrections_apply_to_the_source_they_were_written_for(tmp_path: Path, archive: Archive) -> None:
    root = class_folders(tmp_path / "photos")
    project = own_project(tmp_path, archive, root)
    (project / "data/relabel.csv").write_text(
        "source,image,label,reason\n"
        "sources/clothing-dataset.yaml,t-shirt-05,Shoes,the default source's photo\n"
        f"{root}/./,Pants/photo-01.jpg,T-Shirt,a shirt after all\n",  # the same folder, spelled otherwise
        encoding="utf-8",
    )
    stage(project, "fetch")
    stage(project, "clean")
    labels = read_table(project / "data/clean/labels.csv").set_index("image")
    assert labels.loc["Pants/photo-01.jpg", "label"] == "T-Shirt"
    assert json.loads((project / "metrics/data.json").read_text())["relabelled"] == 1


def test_class_folders_lays_out_the_dataset_as_a_users_folder(tmp_path: Path, archive: Archive) -> None:
    project = make_project(tmp_path / "project", archive)
    stage(project, "fetch")
    command = [sys.executable, "-m", "clothing.commands.class_folders", "three", "--classes", "Pants", "Shoes", "Pants"]
    run(project, *command)
    # The tiny dataset's Pants: 10 and a copy; Shoes: 10 and a corrupt one (clean's business, not this command's).
    assert {p.name: len(list(p.iterdir())) for p in (project / "three").iterdir()} == {"Pants": 11, "Shoes": 11}
    assert error_line(run(project, *command, check=False)) == "error: three: exists; name a new folder"
    update_params(project, {"fetch": {"source": "three"}})
    stage(project, "fetch")
    assert error_line(run(project, *command[:3], "again", check=False)).startswith("error: data/raw: not the clothing")


def test_csv_rows_outside_hidden_or_under_two_labels_are_reported(tmp_path: Path, archive: Archive) -> None:
    root = tmp_path / "photos"
    csv_source(root)
    decomposed = unicodedata.normalize("NFD", "Chaussure à talon")  # as a folder name made on macOS reads
    extra = [
        "../elsewhere.jpg,Pants,",
        "/absolute.jpg,Pants,",
        "C:\\photos\\windows.jpg,Pants,",
        ".cache/hidden.jpg,Pants,",
        "pics/0-1.jpg,Pants,",  # listed above as T-Shirt too
        f"pics/2-9-again.jpg,{decomposed},",
    ]
    photo(root / "pics/2-9-again.jpg", OWN_CLASSES["Chaussure à talon"], 4242)
    with (root / "labels.csv").open("a", encoding="utf-8") as table:
        table.write("\n".join(extra) + "\n")
    project = own_project(tmp_path, archive, root)
    stage(project, "fetch")
    stage(project, "clean")

    why = dropped(project)
    for outside in ("../elsewhere.jpg", "/absolute.jpg", "C:\\photos\\windows.jpg"):
        assert why.loc[outside, "reason"] == "outside_source"
    assert why.loc[".cache/hidden.jpg", "reason"] == "hidden_file"
    assert why.loc["pics/0-1.jpg", "reason"].tolist() == ["label_conflict", "label_conflict"]
    assert set(why.loc["pics/0-1.jpg", "detail"]) == {"listed as: Pants, T-Shirt"}
    counts = read_table(project / "metrics/class_distribution.csv").set_index("label")["count"].astype(int)
    assert counts.to_dict() == {"T-Shirt": 9, "Pants": 10, "Chaussure à talon": 11}  # one class, however spelled


def test_the_audit_of_another_sources_cross_validation_is_one_line_and_writes_nothing(
    tmp_path: Path, archive: Archive
) -> None:
    project = own_project(tmp_path, archive, class_folders(tmp_path / "photos"))
    stage(project, "fetch")
    stage(project, "clean")
    scored = project / "metrics/cv/cv5_probabilities.csv"
    scored.parent.mkdir(parents=True)
    scored.write_text("image,label,fold,Pants,T-Shirt\npants-01,Pants,0,0.9,0.1\n")
    line = error_line(stage(project, "audit", check=False))
    assert line.startswith(
        "error: metrics/cv/cv5_probabilities.csv: scored photos that are not in data/clean/labels.csv"
    )
    assert not (project / "metrics/label_issues.csv").exists() and not (project / "metrics/audit.json").exists()
