"""TFLite metadata as MediaPipe Model Maker writes it: an image input, its normalisation, the labels.

With it a ``.tflite`` is self-describing: MediaPipe Tasks' ``ImageClassifier`` and the
TFLite Task Library run it as it is, and ``load_classifier`` needs no classes file beside
it. Written by tflite-support's metadata writer; read here with only the flatbuffers
schema modules (no TensorFlow, which tflite-support's reader would import).

tflite-support 0.4.4 is installed without its dependencies (requirements.lock): it pins
protobuf < 4, which only its Task Library half needs; the metadata half used here does
not import it.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clothing.errors import PipelineError
from clothing.files import atomic_file
from clothing.quiet import native_logs_silenced

LABELS = "labels.txt"


@dataclass(frozen=True)
class Metadata:
    classes: list[str]
    mean: list[float]  # the network's input is (pixel - mean) / std, per channel or for all three
    std: list[float]


def normalization(preprocess: Callable[[np.ndarray], np.ndarray]) -> tuple[list[float], list[float]]:
    """(mean, std) with ``preprocess(x) == (x - mean) / std`` per channel; an error if it is not that."""
    zero = preprocess(np.zeros((1, 1, 1, 3)))[0, 0, 0]  # float64: no rounding in mean and std
    unit = preprocess(np.ones((1, 1, 1, 3)))[0, 0, 0] - zero
    probe = np.array([[[[0.0, 100.0, 200.0]]]])
    if not np.allclose(preprocess(probe)[0, 0, 0], zero + unit * probe[0, 0, 0], rtol=1e-5, atol=1e-4):
        raise PipelineError(f"{preprocess.__name__}: not a per-channel (x - mean) / std, which TFLite metadata needs")
    std = 1.0 / unit
    mean = -zero * std + 0.0  # no -0.0
    same = np.allclose(mean, mean[0]) and np.allclose(std, std[0])
    mean, std = mean.round(6), std.round(6)
    return ([float(mean[0])], [float(std[0])]) if same else (mean.tolist(), std.tolist())


def write_metadata(model: Path, info: Metadata) -> None:
    """Add the metadata to ``model`` in place (atomically)."""
    with native_logs_silenced():  # the writer imports TensorFlow
        from tensorflow_lite_support.metadata.python.metadata_writers import image_classifier

    with tempfile.TemporaryDirectory() as folder:
        labels = Path(folder) / LABELS
        labels.write_text("".join(f"{name}\n" for name in info.classes))
        writer = image_classifier.MetadataWriter.create_for_inference(
            bytearray(model.read_bytes()), info.mean, info.std, [str(labels)]
        )
        populated = writer.populate()
    with atomic_file(model) as tmp:
        tmp.write_bytes(populated)


def read_metadata(model: Path) -> Metadata | None:
    """The metadata of ``model``, or None if it has none."""
    from tensorflow_lite_support.metadata import metadata_schema_py_generated as metadata_fb
    from tensorflow_lite_support.metadata import schema_py_generated as schema_fb

    data = model.read_bytes()
    flat = schema_fb.Model.GetRootAsModel(data, 0)
    buffers = [
        flat.Metadata(i).Buffer() for i in range(flat.MetadataLength()) if flat.Metadata(i).Name() == b"TFLITE_METADATA"
    ]
    if not buffers:
        return None
    described = metadata_fb.ModelMetadata.GetRootAsModelMetadata(flat.Buffers(buffers[0]).DataAsNumpy().tobytes(), 0)
    image = described.SubgraphMetadata(0).InputTensorMetadata(0)
    mean, std = [0.0], [1.0]
    for i in range(image.ProcessUnitsLength()):
        unit = image.ProcessUnits(i)
        if unit.OptionsType() == metadata_fb.ProcessUnitOptions.NormalizationOptions:
            options = metadata_fb.NormalizationOptions()
            options.Init(unit.Options().Bytes, unit.Options().Pos)
            mean, std = options.MeanAsNumpy().tolist(), options.StdAsNumpy().tolist()
    with zipfile.ZipFile(io.BytesIO(data)) as packed:  # associated files are a zip appended to the model
        classes = packed.read(LABELS).decode().splitlines()
    return Metadata(classes, mean, std)
