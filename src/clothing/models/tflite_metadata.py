"""TFLite metadata as MediaPipe Model Maker writes it: an image input, its normalisation, the labels.

With it a ``.tflite`` is self-describing: MediaPipe Tasks' ``ImageClassifier`` and the
TFLite Task Library run it as it is, and ``load_classifier`` needs no classes file beside
it. Built and read with the pure-Python half of tflite-support (``metadata_info`` and the
flatbuffers schema modules), with no TensorFlow import.

tflite-support's own writer (``image_classifier.MetadataWriter``) packs the same metadata,
but its populator imports two native modules that link libusb-1.0, a library a fresh
Debian machine lacks; :func:`write_metadata` does the populator's two steps itself (put
the metadata buffer in the model, append the labels as a zip). tflite-support 0.4.4 is
installed without its dependencies (requirements.lock): it pins protobuf < 4, which only
its Task Library half needs.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import flatbuffers
import numpy as np
from tensorflow_lite_support.metadata import metadata_schema_py_generated as metadata_fb
from tensorflow_lite_support.metadata import schema_py_generated as schema_fb
from tensorflow_lite_support.metadata.python.metadata_writers import metadata_info, writer_utils

from clothing.errors import PipelineError
from clothing.files import atomic_file, zip_entry

LABELS = "labels.txt"
METADATA_NAME = b"TFLITE_METADATA"
MODEL_DESCRIPTION = "Identify the most prominent object in the image from a known set of categories."
# What tflite-support's native GetMinimumMetadataParserVersion answers for these fields (checked
# against tflite-support 0.4.4's writer; tests/test_metadata.py reads it back).
MIN_PARSER_VERSION = "1.0.0"


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
    """Add the metadata to ``model`` in place (atomically), as tflite-support's ImageClassifier writer does."""
    buffer = bytearray(model.read_bytes())
    described = metadata_info.GeneralMd(name="ImageClassifier", description=MODEL_DESCRIPTION).create_metadata()
    image = metadata_info.InputImageTensorMd(
        name="image",
        description="Input image to be classified.",
        norm_mean=info.mean,
        norm_std=info.std,
        color_space_type=metadata_fb.ColorSpaceType.RGB,
        tensor_type=writer_utils.get_input_tensor_types(buffer)[0],
    ).create_metadata()
    probability = metadata_info.ClassificationTensorMd(
        name="probability",
        description="Probabilities of the labels respectively.",
        label_files=[metadata_info.LabelFileMd(file_path=LABELS)],
        tensor_type=writer_utils.get_output_tensor_types(buffer)[0],
    ).create_metadata()
    subgraph = metadata_fb.SubGraphMetadataT()
    subgraph.inputTensorMetadata, subgraph.outputTensorMetadata = [image], [probability]
    described.subgraphMetadata = [subgraph]
    described.minParserVersion = MIN_PARSER_VERSION
    with atomic_file(model) as tmp:
        tmp.write_bytes(with_metadata(buffer, packed(described, b"M001")) + labels_zip(info.classes))


def with_metadata(buffer: bytearray, metadata: bytes) -> bytes:
    """The model with ``metadata`` as its TFLITE_METADATA buffer, in place of any it had; no files appended."""
    flat = schema_fb.ModelT.InitFromObj(schema_fb.Model.GetRootAsModel(buffer, 0))
    flat.buffers, flat.metadata = flat.buffers or [], flat.metadata or []
    stored = schema_fb.BufferT()
    stored.data = metadata
    existing = [entry for entry in flat.metadata if entry.name == METADATA_NAME]
    if existing:
        flat.buffers[existing[0].buffer] = stored
    else:
        entry = schema_fb.MetadataT()
        entry.name, entry.buffer = METADATA_NAME, len(flat.buffers)
        flat.buffers.append(stored)
        flat.metadata.append(entry)
    return packed(flat, b"TFL3")


def packed(table: object, identifier: bytes) -> bytes:
    builder = flatbuffers.Builder(0)
    builder.Finish(table.Pack(builder), identifier)
    return bytes(builder.Output())


def labels_zip(classes: list[str]) -> bytes:
    """The labels file as the zip appended to the model."""
    stream = io.BytesIO()
    with zipfile.ZipFile(stream, "w") as packed_files:
        packed_files.writestr(zip_entry(LABELS), "".join(f"{name}\n" for name in classes))
    return stream.getvalue()


def read_metadata(model: Path) -> Metadata | None:
    """The metadata of ``model``, or None if it has none."""
    data = model.read_bytes()
    flat = schema_fb.Model.GetRootAsModel(data, 0)
    buffers = [
        flat.Metadata(i).Buffer() for i in range(flat.MetadataLength()) if flat.Metadata(i).Name() == METADATA_NAME
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
