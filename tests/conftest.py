"""A tiny clothing dataset in the real archive's layout, and a project copy to run stages in.

The dataset (see ``tiny_dataset``) has 3 classes x 10 good photos, plus one of each
kind of trouble the real data has or could have.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import yaml
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from clothing.files import tree_digest

REPO = Path(__file__).resolve().parents[1]
TOP = "clothing-dataset-0000000000000000000000000000000000000000"
CLASSES = {"T-Shirt": (200, 40, 40), "Pants": (40, 160, 40), "Shoes": (40, 40, 200)}
PER_CLASS = 10
SENDERS = 10

# What clean must make of it.
EXPECTED_KEPT = {label: PER_CLASS for label in CLASSES}
EXPECTED_DROPPED = {
    "duplicate_row": 0,
    "missing_image": 1,
    "unreadable_image": 1,
    "missing_label": 0,
    "review_drop": 0,
    "excluded_label": 3,
    "duplicate_image": 1,
    "no_label_row": 1,
    "label_conflict": 0,
    "hidden_file": 0,
    "no_class_folder": 0,
    "outside_source": 0,
}

# Train and evaluate in seconds: tiny photos, a small CNN from scratch, a few epochs.
TINY_TRAIN = {
    "backbone": "baseline_cnn",
    "weights": None,
    "image_size": 32,
    "batch_size": 8,
    "augment": {"enabled": True, "views": 3, "strength": 1.0},
    "head": {"epochs": 1, "lr": 0.01},
    "fine_tune": {"epochs": 15, "lr": 0.01, "unfreeze": 0.5, "schedule": "cosine", "keep_filters": 1.0},
}


@dataclass(frozen=True)
class Archive:
    zip_path: Path
    content_sha256: str


def photo(path: Path, colour: tuple[int, int, int], seed: int, size: int = 40) -> None:
    """A JPEG of the class colour with a seeded pattern, so each file is distinct."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def tiny_dataset(root: Path, mislabelled: dict[str, str] | None = None) -> Path:
    """The tiny dataset; ``mislabelled`` gives some photos a wrong label (name -> label)."""
    folder = root / TOP
    images = folder / "images"
    images.mkdir(parents=True)
    rows = []
    seed = 0
    for label, colour in CLASSES.items():
        for i in range(PER_CLASS):
            seed += 1
            name = f"{label.lower()}-{i:02d}"
            photo(images / f"{name}.jpg", colour, seed)
            # One row spells its label differently: clean must normalise it.
            spelled = " t-shirt " if name == "t-shirt-03" else label
            rows.append((name, i % SENDERS, (mislabelled or {}).get(name, spelled)))
    shutil.copy(images / "pants-00.jpg", images / "pants-copy.jpg")
    rows.append(("pants-copy", 0, "Pants"))  # byte-identical duplicate
    (images / "shoes-corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    rows.append(("shoes-corrupt", 1, "Shoes"))  # unreadable
    rows.append(("t-shirt-gone", 2, "T-Shirt"))  # no file
    for i, junk in enumerate(["Not sure", "Skip", "Other"]):
        photo(images / f"junk-{i}.jpg", (128, 128, 128), 100 + i)
        rows.append((f"junk-{i}", 3, junk))  # not a clothing class
    photo(images / "no-row.jpg", (10, 10, 10), 200)  # file with no label row
    lines = ["image,sender_id,label,kids"] + [f"{n},{s},{lab},False" for n, s, lab in rows]
    (folder / "images.csv").write_text("\n".join(lines) + "\n")
    (folder / "LICENSE").write_text("CC0\n")
    return folder


def zip_folder(folder: Path, zip_path: Path) -> Path:
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, path.relative_to(folder.parent).as_posix())
    return zip_path


def make_archive(root: Path, mislabelled: dict[str, str] | None = None) -> Archive:
    folder = tiny_dataset(root, mislabelled)
    mirror = root / "mirror"
    mirror.mkdir()
    zip_path = zip_folder(folder, mirror / f"{TOP}.zip")
    return Archive(zip_path, tree_digest(folder))


@pytest.fixture(scope="session")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    return make_archive(tmp_path_factory.mktemp("tiny"))


@pytest.fixture()
def project(tmp_path: Path, archive: Archive) -> Path:
    return make_project(tmp_path, archive)


def make_project(tmp_path: Path, archive: Archive, audit: bool = False) -> Path:
    """A copy of the repo's pipeline whose params point at the tiny archive's mirror.

    Without ``audit`` the copy has no audit stage: it reads a cross-validation run's
    probabilities, which the repo commits but a fresh tiny project has not made.
    """
    for name in ("stages", "src", "teachers"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / ".dvcignore", tmp_path / ".dvcignore")
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    if not audit:
        del pipeline["stages"]["audit"]
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    (tmp_path / "data").mkdir()
    (tmp_path / "data/relabel.csv").write_text(f"{CORRECTIONS_HEADER}\n")  # no reviewed corrections
    source = {"url": "http://127.0.0.1:9/unused.zip", "file": archive.zip_path.name}
    update_source(tmp_path, source | {"content_sha256": archive.content_sha256})
    update_params(
        tmp_path,
        {"mirrors": [str(archive.zip_path.parent)], "fetch": {"retries": 0, "timeout_s": 5}},
        base=REPO / "params.yaml",
    )
    return tmp_path


CORRECTIONS_HEADER = "source,image,label,reason"
DATASET = "sources/clothing-dataset.yaml"  # fetch.source's default: the tiny archive's description here


def corrections(*rows: str) -> str:
    """data/relabel.csv with these ``image,label,reason`` rows, written for the default source."""
    return "".join(f"{line}\n" for line in [CORRECTIONS_HEADER, *(f"{DATASET},{row}" for row in rows)])


def update_source(project: Path, changes: dict) -> None:
    """Change the archive description fetch.source names (by default the tiny archive's)."""
    path = project / DATASET
    path.parent.mkdir(exist_ok=True)
    described = yaml.safe_load(path.read_text()) if path.exists() else {"archive": {}}
    described["archive"].update(changes)
    path.write_text(yaml.safe_dump(described, sort_keys=False))


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, archive: Archive) -> Path:
    """A tiny project run through evaluate once, for tests that only read its outputs."""
    project = make_project(tmp_path_factory.mktemp("trained"), archive)
    update_params(project, {"train": TINY_TRAIN})
    run(project, "dvc", "init", "--no-scm", "-q")
    run(project, "dvc", "repro", "evaluate")
    return project


VARIANTS = ["float32", "float16", "dynamic_int8", "int8"]
QUICK = {"representative_size": 8, "warmup_runs": 1, "latency_runs": 5}


@pytest.fixture(scope="session")
def quantized(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One quantize run with the default variants, shared by the tests that only read its outputs."""
    project = quick_copy(trained, tmp_path_factory.mktemp("quantized") / "project")
    stage(project, "quantize")
    return project


def quick_copy(trained: Path, project: Path) -> Path:
    shutil.copytree(trained, project, symlinks=True)
    update_params(project, {"quantize": QUICK})
    return project


GIT_USER = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def git_repo(project: Path, env: dict) -> None:
    """Make the project copy a git and DVC repository, as a user's clone is (DVC experiments need git)."""
    run(project, "git", "init", "-q", env=env)
    run(project, "dvc", "init", "-q", env=env)


def commit_all(project: Path, env: dict, message: str = "tiny") -> None:
    run(project, "git", "add", "-A", env=env)
    run(project, "git", "commit", "-qm", message, env=env)


def update_params(project: Path, changes: dict, base: Path | None = None) -> None:
    params = yaml.safe_load((base or project / "params.yaml").read_text())
    for key, value in changes.items():
        if isinstance(value, dict):
            params.setdefault(key, {}).update(value)
        else:
            params[key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


def plain_tflite(path: Path, input_shape: tuple[int, ...]) -> Path:
    """A tiny TFLite model with no metadata (a dense layer on the flattened input)."""
    from clothing.tf import keras, tf

    model = keras.Sequential([keras.layers.Input(input_shape), keras.layers.Flatten(), keras.layers.Dense(2)])
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def chromium(profile: Path) -> webdriver.Chrome:
    """Debian's Chromium, headless, with none of its calls home (this machine's network is closed)."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--window-size=1200,900",
    ):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def run(project: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command in the project copy with this interpreter's environment first on PATH."""
    env = (
        os.environ
        | {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "TF_USE_LEGACY_KERAS": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        | (env or {})
    )
    result = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def stage(project: Path, name: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(project, sys.executable, f"stages/{name}.py", check=check)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one line a failing stage printed last; asserts there is no traceback."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


def stage_module(name: str) -> ModuleType:
    """A stage script imported as a module, for its params schema and its functions."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the schemas' annotations through it
    spec.loader.exec_module(module)
    return module
