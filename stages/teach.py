"""teach: data/split/{train,test}.csv and teachers/ -> data/teacher/ (the teachers' answers train distils).

With ``train.distill.teachers`` empty (the default) it writes an empty file and train
trains on the labels alone. Otherwise each teacher (clothing.models.distillation) scores
every augmented view of every training photo that train will cache, at its own input size;
their probabilities are averaged and saved unsoftened, so a new weight or temperature
reruns train only. A teacher that learned from a photo of the test split is refused, and
so is one whose files differ from its entry in teachers/teachers.yaml (what DVC tracks here).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import NonNegativeInt
from tqdm import tqdm

from clothing.data.augment import AugmentParams, augmented, view_numbers
from clothing.data.images import load_images
from clothing.errors import PipelineError, run_stage
from clothing.files import atomic_file, read_table, write_json
from clothing.models.classifier import load_classifier
from clothing.models.distillation import (
    ANSWERS,
    DistillParams,
    check_registered,
    made_for,
    refuse_leaks,
    teacher_folder,
)
from clothing.params import Section, load_section

SPLIT = Path("data/split")


class TeachParams(Section):
    distill: DistillParams
    augment: AugmentParams
    seed: NonNegativeInt


class FoldParams(Section):
    folds: int | None
    fold: NonNegativeInt


def main() -> None:
    p = load_section("train", TeachParams, keys=("distill", "augment", "seed"))
    split = load_section("split", FoldParams, keys=("folds", "fold"))
    train = read_table(SPLIT / "train.csv")
    test_images = set(read_table(SPLIT / "test.csv")["image"])
    classes = sorted(train["label"].unique())

    for name in p.distill.teachers:
        check_registered(name)
    folders = [teacher_folder(name, split.fold if split.folds else None) for name in p.distill.teachers]
    for folder in folders:
        refuse_leaks(folder, test_images)
    views = view_numbers(p.augment)
    answers = np.zeros((len(views) if folders else 0, len(train), len(classes)), np.float32)
    for folder in folders:
        teacher = load_classifier(folder / "model.keras")
        if teacher.info.classes != classes:
            raise PipelineError(f"{folder}: the teacher's classes {teacher.info.classes} are not train's {classes}")
        images = load_images(train["path"], teacher.info.image_size, desc=f"decode for {folder}")
        for view in tqdm(views, desc=f"{folder} on each view"):
            answers[view] += teacher.predict(augmented(images, view, p.augment, p.seed)) / len(folders)

    with atomic_file(ANSWERS / "probabilities.npy") as tmp, tmp.open("wb") as file:
        np.save(file, answers)  # (views, training photos in train.csv's order, classes)
    write_json(ANSWERS / "teacher.json", {
        "made_for": made_for(p.distill.teachers, p.augment, p.seed),
        "folders": [str(folder) for folder in folders],
        "images": train["image"].tolist(),
        "classes": classes,
    })  # fmt: skip
    print(f"teach: {len(folders)} teachers on {len(train)} photos x {answers.shape[0]} views")


if __name__ == "__main__":
    run_stage(main)
