"""The backbone registry, ImageNet weight resolution, and cutting a network in two.

Training freezes the bottom of a backbone and fine-tunes the top. :func:`split_at_fraction`
cuts the network where that boundary lies, so the frozen part can be run once per
image (and augmented view) instead of once per epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clothing.errors import PipelineError
from clothing.tf import keras

KERAS_CACHE = Path.home() / ".keras" / "models"


@dataclass(frozen=True)
class Backbone:
    build: Callable[..., keras.Model]  # keras.applications-style: input_shape, include_top, weights
    weights_file: str | None  # ImageNet weights as Keras names them in its cache


def baseline_cnn(input_shape: tuple[int, int, int], include_top: bool = False, weights: None = None) -> keras.Model:
    """A small CNN trained from scratch: the honest floor the transfer-learned models must beat.

    Five stages that halve the resolution (16 to 256 filters). The last three add a
    second convolution, so the last layer sees 175 px of a 224 px photo, not 63 px.
    """
    inputs = keras.Input(input_shape)
    x = inputs
    for stage, filters in enumerate((16, 32, 64, 128, 256)):
        for stride in (2, 1) if stage >= 2 else (2,):
            x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
            x = keras.layers.BatchNormalization()(x)
            x = keras.layers.ReLU()(x)
    return keras.Model(inputs, x, name="baseline_cnn")


# Each backbone's preprocess_input is in clothing.preprocess (NumPy, shared with TFLite).
apps = keras.applications
BACKBONES: dict[str, Backbone] = {
    "mobilenet_v2": Backbone(apps.MobileNetV2, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"),
    "efficientnet_b0": Backbone(apps.EfficientNetB0, "efficientnetb0_notop.h5"),
    "resnet50": Backbone(apps.ResNet50, "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "convnext_tiny": Backbone(apps.ConvNeXtTiny, "convnext_tiny_notop.h5"),
    "baseline_cnn": Backbone(baseline_cnn, None),
}


def build_backbone(name: str, image_size: int, weights: str | None, mirrors: list[str]) -> keras.Model:
    """The backbone without its top, with weights ``None``, ``"imagenet"`` or a file path."""
    backbone = BACKBONES[name]
    shape = (image_size, image_size, 3)
    if weights is None:
        return backbone.build(input_shape=shape, include_top=False, weights=None)
    if weights != "imagenet":
        if not Path(weights).is_file():
            raise PipelineError(f"train.weights: no such file: {weights}")
        return _load_with(backbone, shape, weights)
    if backbone.weights_file is None:
        raise PipelineError(f"train.weights: {name} has no ImageNet weights; use weights: null")
    local = imagenet_weights_file(backbone.weights_file, mirrors)
    if local is not None:
        return _load_with(backbone, shape, str(local))
    try:
        return backbone.build(input_shape=shape, include_top=False, weights="imagenet")
    except Exception as error:  # Keras' download wraps every network failure in a bare Exception.
        places = ", ".join(str(p) for p in _weight_places(backbone.weights_file, mirrors))
        reason = " ".join(str(error).split())[:200]
        raise PipelineError(
            f"ImageNet weights for {name} not found: looked for {places}; Keras' download failed: {reason}"
        ) from None


def weights_used(name: str, weights: str | None, mirrors: list[str]) -> Path | None:
    """The file :func:`build_backbone` loaded (Keras' download lands in its cache), or None."""
    file_name = BACKBONES[name].weights_file
    if weights == "imagenet":
        return imagenet_weights_file(file_name, mirrors) if file_name else None
    return None if weights is None else Path(weights)


def imagenet_weights_file(file_name: str, mirrors: list[str]) -> Path | None:
    """The first copy of a Keras weights file in Keras' cache or a mirror's ``keras/models``."""
    return next((path for path in _weight_places(file_name, mirrors) if path.is_file()), None)


def _weight_places(file_name: str, mirrors: list[str]) -> list[Path]:
    return [KERAS_CACHE / file_name] + [Path(m) / "keras" / "models" / file_name for m in mirrors]


def _load_with(backbone: Backbone, shape: tuple[int, int, int], path: str) -> keras.Model:
    try:
        return backbone.build(input_shape=shape, include_top=False, weights=path)
    except (OSError, ValueError) as error:
        raise PipelineError(f"cannot load weights {path}: {' '.join(str(error).split())[:200]}") from None


def cut_points(model: keras.Model) -> list[str]:
    """Layers whose output every path from input to output goes through, in order.

    The model can be split after any of them into a frozen part and a trainable part.
    """
    config = model.get_config()
    order = [layer["name"] for layer in config["layers"]]
    position = {name: i for i, name in enumerate(order)}
    # The furthest-back layer each layer reads from; a cut after i is clean if nothing after i reads before i.
    reads_from = [
        min((position[source] for source in _sources(layer)), default=i) for i, layer in enumerate(config["layers"])
    ]
    cuts = []
    earliest_read_after = len(order)
    for i in range(len(order) - 1, -1, -1):
        if earliest_read_after >= i:
            cuts.append(order[i])
        earliest_read_after = min(earliest_read_after, reads_from[i])
    return cuts[::-1]


def split_at_fraction(model: keras.Model, trainable_fraction: float) -> tuple[keras.Model, keras.Model]:
    """Split into (frozen prefix, trainable suffix) so about this fraction of layers is in the suffix."""
    names = [layer.name for layer in model.layers]
    wanted = round(len(names) * (1 - trainable_fraction)) - 1
    cut = min(cut_points(model), key=lambda name: abs(names.index(name) - wanted))
    return split_at(model, cut)


def split_at(model: keras.Model, cut: str) -> tuple[keras.Model, keras.Model]:
    """Two models, ``prefix`` (input to ``cut``) and ``suffix`` (``cut`` to output), with the weights."""
    prefix = keras.Model(model.input, model.get_layer(cut).output, name=f"{model.name}_frozen")
    config = model.get_config()
    names = [layer["name"] for layer in config["layers"]]
    after = names[names.index(cut) + 1 :]
    cut_shape = model.get_layer(cut).output.shape
    entry = {
        "class_name": "InputLayer",
        "name": cut,
        "config": {"batch_input_shape": tuple(cut_shape), "dtype": "float32", "name": cut},
        "inbound_nodes": [],
    }
    config["layers"] = [entry] + [layer for layer in config["layers"] if layer["name"] in after]
    config["input_layers"] = [[cut, 0, 0]]
    config["name"] = f"{model.name}_top"
    suffix = keras.Model.from_config(config)
    for layer in suffix.layers[1:]:
        layer.set_weights(model.get_layer(layer.name).get_weights())
    return prefix, suffix


def _sources(layer_config: dict) -> list[str]:
    return [inbound[0] for node in layer_config["inbound_nodes"] for inbound in node]
