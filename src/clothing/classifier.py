"""A trained classifier on disk: ``model.keras`` plus ``model.json`` (classes, backbone, size).

``evaluate``, ``quantize`` and ``predict`` all go through :func:`load_classifier`, so a
photo is resized and preprocessed the same way everywhere.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from clothing.backbones import BACKBONES
from clothing.errors import PipelineError
from clothing.files import atomic_file, write_json
from clothing.tf import keras


@dataclass(frozen=True)
class ModelInfo:
    classes: list[str]
    backbone: str
    image_size: int


@dataclass
class Classifier:
    model: keras.Model
    info: ModelInfo

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """uint8 RGB images of the model's size -> the backbone's input."""
        return BACKBONES[self.info.backbone].preprocess(images.astype(np.float32))

    def predict(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Class probabilities, one row per uint8 RGB image of the model's size."""
        if len(images) == 0:
            return np.zeros((0, len(self.info.classes)), np.float32)
        return self.model.predict(self.preprocess(images), batch_size=batch_size, verbose=0)


def info_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


def save_classifier(model: keras.Model, info: ModelInfo, path: str | Path) -> None:
    with atomic_file(path) as tmp:
        model.save(tmp.with_suffix(".keras"))
        tmp.with_suffix(".keras").rename(tmp)
    write_json(info_path(path), asdict(info))


def load_classifier(path: str | Path) -> Classifier:
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: no such model file")
    try:
        info = ModelInfo(**json.loads(info_path(path).read_text()))
    except (OSError, ValueError, TypeError) as error:
        raise PipelineError(f"{info_path(path)}: cannot read model info ({error})") from None
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises many kinds for a corrupt or foreign file.
        raise PipelineError(f"{path}: cannot load model ({' '.join(str(error).split())[:200]})") from None
    return Classifier(model, info)
