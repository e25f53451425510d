"""Knowledge distillation on the tiny dataset: the teach stage, the loss, the leakage refusal, the teachers command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import (
    CLASSES,
    GIT_USER,
    TINY_TRAIN,
    Archive,
    commit_all,
    error_line,
    git_repo,
    make_project,
    quick_copy,
    run,
    stage,
    update_params,
)

from clothing.commands.crossval import teacher_targets
from clothing.data.augment import AugmentParams, augmented
from clothing.errors import PipelineError
from clothing.models.classifier import ModelInfo, save_classifier
from clothing.models.distillation import (
    DistillParams,
    distillation_loss,
    load_answers,
    made_for,
    refuse_leaks,
    softened,
    teacher_folder,
)
from clothing.tf import keras, tf

LABELS = sorted(CLASSES)


def always_first_class(folder: Path, photos: list[str], classes: list[str] = LABELS) -> None:
    """A teacher that gives the first class 0.99 whatever the photo."""
    bias = [6.0] + [0.0] * (len(classes) - 1)
    save_teacher(folder, photos, np.zeros((3, len(classes))), bias, classes)


def save_teacher(folder: Path, photos: list[str], kernel: np.ndarray, bias: list[float], classes: list[str]) -> None:
    """A teacher whose logits are ``kernel`` x the photo's mean colour (0 to 1) + ``bias``."""
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(len(classes), "softmax")
    model = keras.Model(inputs, dense(pooled))
    dense.set_weights([kernel.astype(np.float32), np.array(bias, np.float32)])
    save_classifier(model, ModelInfo(classes, "baseline_cnn", 32), folder / "model.keras")
    pd.DataFrame({"image": photos}).to_csv(folder / "photos.csv", index=False)
    register(folder)


def register(folder: Path) -> None:
    """Record the teacher in teachers/teachers.yaml, as the teachers command does for the models it takes."""
    run(folder.parent.parent, sys.executable, "-m", "clothing.commands.teachers", folder.name, "--register")


@pytest.fixture()
def tiny(project: Path) -> Path:
    update_params(project, {"train": TINY_TRAIN})
    run(project, "dvc", "init", "--no-scm", "-q")
    run(project, "dvc", "repro", "split")
    return project


def split_images(project: Path, name: str) -> list[str]:
    return pd.read_csv(project / f"data/split/{name}.csv")["image"].tolist()


def distil_from(project: Path, teacher: str, weight: float) -> None:
    distill = {"teachers": [teacher], "weight": weight, "temperature": 1.0}
    update_params(project, {"train": TINY_TRAIN | {"distill": distill}})


def test_a_student_taught_by_a_teacher_that_always_says_class_0_predicts_class_0(tiny: Path) -> None:
    always_first_class(tiny / "teachers/first", split_images(tiny, "train") + split_images(tiny, "val"))
    distil_from(tiny, "first", weight=1.0)
    run(tiny, "dvc", "repro", "evaluate")
    taught = json.loads((tiny / "data/teacher/teacher.json").read_text())
    answers = np.load(tiny / "data/teacher/probabilities.npy")
    assert answers.shape == (TINY_TRAIN["augment"]["views"], len(taught["images"]), len(LABELS))
    assert taught["folders"] == ["teachers/first"] and taught["made_for"]["teachers"] == ["first"]
    predicted = pd.read_csv(tiny / "metrics/eval/predictions.csv")["predicted"]
    assert set(predicted) == {LABELS[0]}


def test_the_teachers_answers_reach_the_photos_they_were_made_for(tiny: Path) -> None:
    """Taught by a teacher that names each photo's class by its colour, and not by the labels (weight 1):
    the student gets the training photos right only if each answer reaches its own photo and view."""
    kernel = np.zeros((3, len(LABELS)))
    for name, rgb in CLASSES.items():
        kernel[int(np.argmax(rgb)), LABELS.index(name)] = 20.0  # the class's dominant channel
    save_teacher(tiny / "teachers/colours", split_images(tiny, "train"), kernel, [0.0] * len(LABELS), LABELS)
    distil_from(tiny, "colours", weight=1.0)
    run(tiny, "dvc", "repro", "evaluate")
    # Accuracy against the labels it never trained on, over 24 photos x 3 views: chance is 1/3.
    assert json.loads((tiny / "metrics/train.json").read_text())["train_accuracy"] >= 0.9


def test_a_view_is_the_same_zoom_shift_and_turn_at_the_teachers_size() -> None:
    """teach draws the student's views at the teacher's input size: the same geometry, another resolution."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (4, 8, 8, 3)).astype(np.float32)
    large = np.repeat(np.repeat(small, 4, axis=1), 4, axis=2)  # the same photos at 32 px
    augment = AugmentParams(enabled=True, views=4, strength=1.0)
    for view in range(4):
        at_32 = tf.image.resize(augmented(large, view, augment, seed=5), (16, 16)).numpy()
        at_16 = augmented(tf.image.resize(large, (16, 16)).numpy(), view, augment, seed=5)
        other = augmented(tf.image.resize(large, (16, 16)).numpy(), view, augment, seed=6)
        same, different = (np.corrcoef(at_32.ravel(), x.ravel())[0, 1] for x in (at_16, other))
        assert same > 0.8 and (view < 2 or different < same - 0.1), (view, same, different)


def test_a_teacher_that_saw_a_test_photo_is_refused_and_writes_nothing(tiny: Path) -> None:
    leaked = split_images(tiny, "test")[:1]
    always_first_class(tiny / "teachers/leaky", split_images(tiny, "train") + leaked)
    distil_from(tiny, "leaky", weight=0.5)
    failed = stage(tiny, "teach", check=False)
    assert "learned from 1 photos of this run's test split" in error_line(failed)
    assert leaked[0] in error_line(failed)
    assert not (tiny / "data/teacher/probabilities.npy").exists()


def test_a_teacher_of_other_classes_or_without_its_photos_is_refused(tiny: Path) -> None:
    always_first_class(tiny / "teachers/other", split_images(tiny, "train"), classes=["Hat", "Skirt"])
    distil_from(tiny, "other", weight=0.5)
    assert "are not train's" in error_line(stage(tiny, "teach", check=False))
    (tiny / "teachers/other/photos.csv").unlink()
    register(tiny / "teachers/other")
    assert "cannot be checked against the test split" in error_line(stage(tiny, "teach", check=False))


def test_a_teacher_not_registered_or_changed_since_is_refused_and_writes_nothing(tiny: Path) -> None:
    always_first_class(tiny / "teachers/first", split_images(tiny, "train"))
    distil_from(tiny, "first", weight=0.5)
    (tiny / "teachers/first/photos.csv").write_text("image\nsomething-else\n")
    assert "its files differ from its entry in teachers/teachers.yaml" in error_line(stage(tiny, "teach", check=False))
    (tiny / "teachers/teachers.yaml").write_text("{}\n")
    assert "not in teachers/teachers.yaml" in error_line(stage(tiny, "teach", check=False))
    assert not (tiny / "data/teacher/probabilities.npy").exists()


def test_teach_depends_on_the_registry_not_on_the_teachers_data(tiny: Path) -> None:
    """A clone that has not pulled a teacher, or a new teacher nobody uses, leaves the pipeline as it was."""
    run(tiny, "dvc", "repro", "teach")
    always_first_class(tiny / "teachers/unused", split_images(tiny, "train"))  # registered: the registry changed
    assert "teach" in run(tiny, "dvc", "status", "teach").stdout
    run(tiny, "dvc", "repro", "teach")
    shutil.rmtree(tiny / "teachers/unused")  # as a clone that did not pull it
    assert "up to date" in run(tiny, "dvc", "status", "teach").stdout


def test_a_cross_validation_run_distils_in_each_queued_fold(tmp_path: Path, archive: Archive) -> None:
    """Folds run as queued experiments with a target; teach depends on the registry, so the teacher's
    data must come along as a target of its own, or no fold finds its teacher."""
    env = GIT_USER | {"HOME": str(tmp_path / "home")}
    project = make_project(tmp_path / "repo", archive)
    git_repo(project, env)
    always_first_class(project / "teachers/first", [])  # learned from no photo: no fold's test split leaks into it
    distil_from(project, "first", weight=1.0)
    commit_all(project, env)
    crossval = (sys.executable, "-m", "clothing.commands.crossval", "--folds", "3", "--name", "taught")
    run(project, *crossval, env=env)
    predicted = pd.read_csv(project / "metrics/cv/taught_predictions.csv")["predicted"]
    # On the labels alone a third of the photos would be the first class; the teacher's pull, in few steps, takes most.
    assert len(predicted) == 30 and (predicted == LABELS[0]).sum() >= 20, predicted.value_counts()  # 27 seen


def test_a_teacher_not_tracked_by_dvc_cannot_go_into_a_queued_run(tiny: Path) -> None:
    always_first_class(tiny / "teachers/first", [])
    (tiny / "teachers/first.dvc").unlink()
    crossval = (sys.executable, "-m", "clothing.commands.crossval", "--folds", "2", "--queue-only")
    refused = run(tiny, *crossval, "-S", "train.distill.teachers=[first]", check=False)
    assert "teachers/first: not tracked by DVC" in error_line(refused)


@pytest.mark.parametrize(
    ("value", "message"),
    [("first", "should be a list of teacher names"), ("[first, first]", "named twice"), ("[a/b]", "plain folder")],
)
def test_a_bad_teachers_setting_for_a_queued_run_is_one_clear_error(tiny: Path, value: str, message: str) -> None:
    crossval = (sys.executable, "-m", "clothing.commands.crossval", "--folds", "2", "--queue-only")
    refused = run(tiny, *crossval, "-S", f"train.distill.teachers={value}", check=False)
    assert message in error_line(refused)


def test_a_queued_run_takes_the_teachers_of_its_setting_as_dvc_reads_it(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "teachers").mkdir()
    for name in ("on", "lite0"):
        (tmp_path / f"teachers/{name}.dvc").write_text("outs: []\n")
    (tmp_path / "params.yaml").write_text("train:\n  distill: {teachers: [lite0], weight: 0.5, temperature: 2.0}\n")
    monkeypatch.chdir(tmp_path)
    assert teacher_targets([]) == ["teachers/lite0.dvc"]
    assert teacher_targets(["train.distill.teachers=[]"]) == []
    # Hydra, as DVC's -S, reads [on] as a name; YAML would have read it as True.
    assert teacher_targets(["train.distill.teachers=[on, lite0]"]) == ["teachers/on.dvc", "teachers/lite0.dvc"]
    assert teacher_targets(["params.yaml:train.distill.teachers=[on]"]) == ["teachers/on.dvc"]
    assert teacher_targets(["++train.distill.teachers=[on]"]) == ["teachers/on.dvc"]


def test_without_teachers_train_learns_from_the_labels_and_teach_writes_an_empty_file(trained: Path) -> None:
    assert np.load(trained / "data/teacher/probabilities.npy").size == 0
    predicted = pd.read_csv(trained / "metrics/eval/predictions.csv")["predicted"]
    assert len(set(predicted)) > 1


def test_a_cross_validation_fold_takes_its_own_fold_teacher(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for fold in ("fold0", "fold1"):
        (tmp_path / "teachers/cv" / fold).mkdir(parents=True)
        (tmp_path / "teachers/cv" / fold / "model.keras").write_bytes(b"")
    assert teacher_folder("cv", 1) == Path("teachers/cv/fold1")
    with pytest.raises(PipelineError, match=r"no teacher model\.keras"):
        teacher_folder("cv", None)
    (tmp_path / "teachers/cv/fold1/photos.csv").write_text("image\na\nb\n")
    with pytest.raises(PipelineError, match="learned from 1 photos"):
        refuse_leaks(Path("teachers/cv/fold1"), {"b", "c"})


def test_the_loss_is_the_labels_at_weight_0_and_the_teacher_at_weight_1() -> None:
    labels = np.array([[1.0, 0.0, 0.0]], np.float32)
    teacher = np.array([[0.2, 0.7, 0.1]], np.float32)
    student = np.array([[0.5, 0.3, 0.2]], np.float32)
    targets = np.concatenate([labels, softened(teacher, 2.0)], axis=1)

    def loss(weight: float) -> float:
        objective = distillation_loss(3, DistillParams(teachers=["t"], weight=weight, temperature=2.0), 0.0)
        return float(np.mean(objective(targets, student)))

    assert loss(0.0) == pytest.approx(-np.log(0.5), rel=1e-5)
    soft_student = softened(student, 2.0)
    assert loss(1.0) == pytest.approx(4 * -np.sum(softened(teacher, 2.0) * np.log(soft_student)), rel=1e-5)
    np.testing.assert_allclose(softened(teacher, 1.0), teacher, rtol=1e-5)
    assert softened(teacher, 2.0).max() < teacher.max()  # a higher temperature flattens


def test_the_teachers_command_keeps_a_run_s_model_and_the_photos_it_learned_from(trained: Path, tmp_path: Path) -> None:
    project = quick_copy(trained, tmp_path / "project")
    run(project, sys.executable, "-m", "clothing.commands.teachers", "mine", "--from", "workspace")
    kept = project / "teachers/mine"
    assert (kept / "model.keras").read_bytes() == (project / "models/model.keras").read_bytes()
    photos = set(pd.read_csv(kept / "photos.csv")["image"])
    assert photos == set(split_images(project, "train")) | set(split_images(project, "val"))
    assert (project / "teachers/mine.dvc").is_file()
    assert "mine: " in (project / "teachers/teachers.yaml").read_text()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [(["", "--from", "x"], "plain folder name"), (["cv", "--from", "x", "--folds", "1"], "--folds must be 2")],
)
def test_the_teachers_command_refuses_bad_names_and_fold_counts(tmp_path: Path, arguments, message) -> None:
    command = [sys.executable, "-m", "clothing.commands.teachers", *arguments]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr


def test_repeated_or_path_teacher_names_are_refused() -> None:
    with pytest.raises(ValueError, match="named twice"):
        DistillParams(teachers=["a", "a"], weight=0.5, temperature=2.0)
    with pytest.raises(ValueError, match="plain folder name"):
        DistillParams(teachers=["../a"], weight=0.5, temperature=2.0)


def test_answers_made_for_another_seed_or_shape_are_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    augment = AugmentParams(enabled=True, views=2, strength=1.0)
    made = made_for(["t"], augment, seed=1)
    (tmp_path / "data/teacher").mkdir(parents=True)
    record = {"made_for": made, "images": ["a"], "classes": ["x", "y"]}
    (tmp_path / "data/teacher/teacher.json").write_text(json.dumps(record))
    np.save(tmp_path / "data/teacher/probabilities.npy", np.full((2, 1, 2), 0.5, np.float32))
    assert load_answers(made, ["a"], ["x", "y"], 2, 1.0).shape == (2, 1, 2)
    with pytest.raises(PipelineError, match="made for other"):
        load_answers(made_for(["t"], augment, seed=2), ["a"], ["x", "y"], 2, 1.0)
    with pytest.raises(PipelineError, match="made for other"):
        load_answers(made, ["a"], ["x", "y"], 3, 1.0)
