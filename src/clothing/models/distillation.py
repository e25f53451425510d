"""Knowledge distillation: a student trained on the labels and on its teachers' softened probabilities.

The teachers are trained classifiers kept under ``teachers/<name>/`` (one ``fold<k>/`` per
fold of a cross-validation run), each with ``photos.csv``, the photos it trained or was
validated on (``python -m clothing.commands.teachers`` writes them), and registered in
``teachers/teachers.yaml`` by the digest of its files: the teach stage depends on that small
git-tracked file rather than on the teachers' data, so a clone sees the same pipeline whether
it pulled the teachers or not, and checks each named teacher against it. The teach stage scores
every augmented view the student trains on with each teacher, at the teacher's own input
size, and averages the teachers; train reads that file. A teacher that learned from any
photo of the run's test split is refused: the student would learn those photos' answers.

The loss is Hinton et al.'s (2015): ``(1 - weight)`` x cross-entropy with the (smoothed)
labels + ``weight`` x temperature² x cross-entropy between the teacher's and the student's
probabilities, both softened by the temperature. The student's softened probabilities
come from its softmax output (softmax(log p / T) is p^(1/T), normalised), so the model
keeps its one softmax output and saves, converts and serves as any other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import yaml
from pydantic import AfterValidator, Field, PositiveFloat, field_validator

from clothing.data.augment import AugmentParams
from clothing.errors import PipelineError
from clothing.files import atomic_file, read_table, tree_digest
from clothing.params import Section
from clothing.tf import keras, tf

TEACHERS = Path("teachers")
PHOTOS = "photos.csv"  # the image names a teacher trained or was validated on
ANSWERS = Path("data/teacher")  # the teach stage's output
REGISTRY = TEACHERS / "teachers.yaml"  # name -> digest of its files; what the teach stage depends on
REGISTRY_HEADER = """\
# Teachers for knowledge distillation: each folder's name and the SHA-256 of its files
# (clothing.files.tree_digest). Written by python -m clothing.commands.teachers; the teach
# stage depends on this file, not on the teachers' data, and refuses a teacher whose files
# differ from what is recorded here.
"""


def plain_name(name: str) -> str:
    """A teacher's name is one folder under teachers/: not empty, no path, not hidden."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"a teacher is a plain folder name under {TEACHERS}/, not '{name}'")
    return name


class DistillParams(Section):
    teachers: list[Annotated[str, AfterValidator(plain_name)]]  # folders under teachers/; empty: none
    weight: Annotated[float, Field(ge=0, le=1)]  # share of the loss that is the teachers'
    temperature: PositiveFloat

    @field_validator("teachers")
    @classmethod
    def _each_once(cls, teachers: list[str]) -> list[str]:
        if len(set(teachers)) != len(teachers):
            raise ValueError("a teacher named twice would count twice in the average")
        return teachers


def made_for(teachers: list[str], augment: AugmentParams, seed: int) -> dict:
    """What the teach stage's answers depend on besides the photos: train checks it before using them."""
    return {"teachers": teachers, "seed": seed, "augment": augment.model_dump()}


def load_answers(expected: dict, images: list[str], classes: list[str], views: int, temperature: float) -> np.ndarray:
    """The teach stage's answers (views, photos, classes), softened; one clear error if made for another run."""
    try:
        record = json.loads((ANSWERS / "teacher.json").read_text())
        answers = np.load(ANSWERS / "probabilities.npy")
    except (OSError, ValueError) as error:
        raise PipelineError(f"{ANSWERS}: cannot read the teachers' answers ({error}): run dvc repro teach") from None
    same = record.get("made_for") == expected and record.get("images") == images and record.get("classes") == classes
    if not same or answers.shape != (views, len(images), len(classes)):
        raise PipelineError(f"{ANSWERS}: made for other teachers, views, seed or photos: run dvc repro teach")
    return softened(answers, temperature)


def teacher_folder(name: str, fold: int | None) -> Path:
    """``teachers/<name>/fold<k>`` in fold k of a cross-validation, else ``teachers/<name>``."""
    folder = TEACHERS / name
    if fold is not None and (folder / f"fold{fold}").is_dir():
        folder = folder / f"fold{fold}"
    if not (folder / "model.keras").is_file():
        make = f"python -m clothing.commands.teachers {name} --from EXPERIMENT_OR_CV_RUN"
        raise PipelineError(f"{folder}: no teacher model.keras here ({make} makes one)")
    return folder


def registered() -> dict[str, str]:
    """teachers/teachers.yaml: each registered teacher's name and digest (empty if there is no file)."""
    if not REGISTRY.is_file():
        return {}
    try:
        entries = yaml.safe_load(REGISTRY.read_text()) or {}
    except yaml.YAMLError as error:
        raise PipelineError(f"{REGISTRY}: not readable YAML ({error})") from None
    if not isinstance(entries, dict) or not all(isinstance(x, str) for x in (*entries, *entries.values())):
        raise PipelineError(f"{REGISTRY}: needs one 'name: digest' line per teacher")
    return entries


def register(name: str) -> str:
    """Record teachers/<name>'s digest in the registry (replacing an older one) and return it."""
    digest = tree_digest(TEACHERS / name)
    entries = registered() | {name: digest}
    with atomic_file(REGISTRY) as tmp:
        tmp.write_text(REGISTRY_HEADER + yaml.safe_dump(dict(sorted(entries.items()))))
    return digest


def check_registered(name: str) -> None:
    """One clear error unless teachers/<name> holds exactly the files its registry entry was made from."""
    recorded = registered().get(name)
    folder = TEACHERS / name
    again = f"python -m clothing.commands.teachers {name} --register records it as it is now"
    fetch = f"dvc pull {folder}.dvc; a DVC experiment run with a target needs {folder}.dvc among its targets"
    if recorded is None:
        raise PipelineError(f"{folder}: not in {REGISTRY} ({again})")
    if not folder.is_dir():
        raise PipelineError(f"{folder}: registered but not here ({fetch})")
    if tree_digest(folder) != recorded:
        raise PipelineError(
            f"{folder}: its files differ from its entry in {REGISTRY} (not fully pulled: {fetch}; changed: {again})"
        )


def refuse_leaks(folder: Path, test_images: set[str]) -> None:
    """One clear error if the teacher in ``folder`` trained or was validated on a photo of the test split."""
    photos = folder / PHOTOS
    if not photos.is_file():
        raise PipelineError(f"{folder}: no {PHOTOS}, so it cannot be checked against the test split: refused")
    try:
        learned = read_table(photos)["image"]
    except (KeyError, pd.errors.ParserError, pd.errors.EmptyDataError):
        raise PipelineError(f"{photos}: needs an 'image' column of photo names: refused") from None
    seen = set(learned) & test_images
    if seen:
        example = sorted(seen)[0]
        raise PipelineError(
            f"{folder}: this teacher learned from {len(seen)} photos of this run's test split (e.g. {example}): "
            "its answers would leak them into the student; use a teacher trained without them (the same fold)"
        )


def softened(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the distribution the logits divided by T give."""
    scaled = np.log(np.clip(probabilities, 1e-7, 1.0)) / temperature
    scaled = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    return (scaled / scaled.sum(axis=-1, keepdims=True)).astype(np.float32)


def distillation_loss(n_classes: int, p: DistillParams, label_smoothing: float) -> keras.losses.Loss:
    """The loss of targets laid out as [one-hot label | teacher's softened probabilities]."""
    weight, temperature = p.weight, p.temperature

    def loss(targets: tf.Tensor, predicted: tf.Tensor) -> tf.Tensor:
        labels, teacher = targets[:, :n_classes], targets[:, n_classes:]
        scaled = tf.math.log(tf.clip_by_value(predicted, 1e-7, 1.0)) / temperature
        student = tf.nn.softmax(scaled)
        # Photos no teacher scored (validation) have zeros there: their loss is the labels' alone.
        taught = keras.losses.categorical_crossentropy(teacher, student) * tf.reduce_sum(teacher, axis=1)
        hard = keras.losses.categorical_crossentropy(labels, predicted, label_smoothing=label_smoothing)
        return (1 - weight) * hard + weight * temperature**2 * taught

    return loss


def label_accuracy(n_classes: int) -> keras.metrics.Metric:
    """Accuracy against the label part of [label | teacher] targets, named as Keras' own."""

    def accuracy(targets: tf.Tensor, predicted: tf.Tensor) -> tf.Tensor:
        return keras.metrics.categorical_accuracy(targets[:, :n_classes], predicted)

    return keras.metrics.MeanMetricWrapper(accuracy, name="accuracy")
