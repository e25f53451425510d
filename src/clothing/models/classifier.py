"""A trained classifier on disk, Keras or TFLite, and the one way photos are fed to it.

A model file (``models/model.keras`` or a ``.tflite`` variant) sits beside a JSON file of
the same stem with its classes, backbone and input size. ``evaluate``, ``quantize`` and
``predict`` all load it through :func:`load_classifier`, so a photo is decoded, resized
and preprocessed the same way everywhere.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clothing.data.images import load_images
from clothing.errors import PipelineError
from clothing.files import atomic_file, write_json, zip_entry
from clothing.models.backbones import BACKBONES
from clothing.models.tflite_metadata import Metadata, read_metadata
from clothing.quiet import native_logs_silenced
from clothing.system import usable_cores

if TYPE_CHECKING:
    from clothing.tf import keras


@dataclass(frozen=True)
class ModelInfo:
    classes: list[str]
    backbone: str | None  # None: a .tflite known only by its metadata
    image_size: int

    def top1(self, probabilities: np.ndarray) -> list[str]:
        """The most probable class name for each row of ``probabilities``."""
        return [self.classes[i] for i in probabilities.argmax(axis=1)]


@dataclass
class Classifier:
    info: ModelInfo
    forward: Callable[[np.ndarray], np.ndarray]  # a preprocessed float32 batch -> probabilities
    keras_model: keras.Model | None = None  # None for TFLite
    metadata: Metadata | None = None  # a .tflite's own labels and input normalisation

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """uint8 RGB images of the model's size -> the float32 batch ``forward`` takes."""
        images = images.astype(np.float32)
        if self.metadata is not None:  # as MediaPipe feeds it: the model's own normalisation
            return (images - np.float32(self.metadata.mean)) / np.float32(self.metadata.std)
        return BACKBONES[self.info.backbone].preprocess(images)

    def predict(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Class probabilities, one row per uint8 RGB image of the model's size."""
        batches = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
        outputs = [self.forward(self.preprocess(batch)) for batch in batches]
        return np.concatenate(outputs) if outputs else np.zeros((0, len(self.info.classes)), np.float32)

    def predict_files(self, paths: Sequence[str | Path]) -> np.ndarray:
        return self.predict(load_images(paths, self.info.image_size))


def class_indices(labels: Sequence[str], classes: list[str], source: str) -> np.ndarray:
    """Each label's position in ``classes``; labels outside ``classes`` are one clear error naming ``source``."""
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise PipelineError(f"{source}: classes the model does not know: {unknown}")
    index = {name: i for i, name in enumerate(classes)}
    return np.array([index[label] for label in labels], dtype=np.int64)


def info_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


def save_classifier(model: keras.Model, info: ModelInfo, path: str | Path) -> None:
    """Save ``model`` so that the same weights give the same bytes (and so the same hash in dvc.lock)."""
    with atomic_file(path) as tmp:
        saved = tmp.with_suffix(".keras")  # Keras insists on the suffix
        try:
            model.save(saved)
            _without_save_time(saved, tmp)
        finally:
            saved.unlink(missing_ok=True)
    write_json(info_path(path), asdict(info))


def _without_save_time(saved: Path, target: Path) -> None:
    """Keras writes the time of saving twice: ``date_saved`` in metadata.json and the weights' zip date."""
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(target, "w") as out:
        for entry in source.infolist():
            data = source.read(entry)
            if entry.filename == "metadata.json":
                data = json.dumps(json.loads(data) | {"date_saved": None}).encode()
            out.writestr(zip_entry(entry.filename), data, compress_type=entry.compress_type)


def load_classifier(path: str | Path, threads: int | None = None) -> Classifier:
    """Load ``.keras`` or ``.tflite`` (with ``threads`` interpreter threads, default all usable cores).

    A ``.tflite`` with metadata (quantize writes it) brings its own labels and input
    normalisation; otherwise the classes file beside the model (``model.json``) says them.
    """
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: no such model file")
    described = _tflite_metadata(path) if path.suffix == ".tflite" else None
    try:
        if path.suffix == ".tflite":
            forward, image_size = tflite_forward(path, threads)
            info = _model_info(path, described, image_size)
            return Classifier(info, forward, metadata=described)
        info = _model_info(path, None, None)
        from clothing.tf import keras  # only here: TensorFlow takes seconds to import

        model = keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras and LiteRT raise many kinds for a corrupt or foreign file.
        raise PipelineError(f"{path}: cannot load model ({' '.join(str(error).split())[:200]})") from None
    return Classifier(info, lambda batch: model.predict_on_batch(batch), model)


def _tflite_metadata(path: Path) -> Metadata | None:
    try:
        return read_metadata(path)
    except Exception as error:  # a flatbuffer or zip that does not parse: not a usable model file
        raise PipelineError(f"{path}: cannot load model ({' '.join(str(error).split())[:200]})") from None


def _model_info(path: Path, described: Metadata | None, image_size: int | None) -> ModelInfo:
    if described is not None and image_size is not None:
        backbone = None
        if info_path(path).is_file():
            backbone = json.loads(info_path(path).read_text()).get("backbone")
        return ModelInfo(described.classes, backbone, image_size)
    if not info_path(path).is_file():
        without = "no TFLite metadata and " if path.suffix == ".tflite" else ""
        raise PipelineError(
            f"{path}: {without}its classes file {info_path(path).name} is missing: "
            "copy it from beside the original model"
        )
    try:
        return ModelInfo(**json.loads(info_path(path).read_text()))
    except (OSError, ValueError, TypeError) as error:
        raise PipelineError(f"{info_path(path)}: cannot read model info ({error})") from None


def tflite_forward(path: Path, threads: int | None = None) -> tuple[Callable[[np.ndarray], np.ndarray], int]:
    """The LiteRT interpreter (XNNPACK) on whole batches, and its input size; int8 inputs and outputs
    quantized here."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads or usable_cores())
    with native_logs_silenced():  # "Created TensorFlow Lite XNNPACK delegate for CPU."
        interpreter.allocate_tensors()
    (source,), (sink,) = interpreter.get_input_details(), interpreter.get_output_details()

    def forward(batch: np.ndarray) -> np.ndarray:
        if interpreter.get_input_details()[0]["shape"][0] != len(batch):
            interpreter.resize_tensor_input(source["index"], [len(batch), *batch.shape[1:]])
            interpreter.allocate_tensors()
        interpreter.set_tensor(source["index"], _quantize(batch, source))
        interpreter.invoke()
        return _dequantize(interpreter.get_tensor(sink["index"]), sink)

    return forward, int(source["shape"][1])


def _quantize(values: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if detail["dtype"] == np.float32 or scale == 0:
        return values.astype(detail["dtype"])
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(values / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if detail["dtype"] == np.float32 or scale == 0:
        return values.astype(np.float32)
    return (values.astype(np.float32) - zero_point) * scale
