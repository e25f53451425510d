"""Exact per-layer cost and receptive field of a tf_keras model.

Conventions (stated in the report too):
- MACs: multiply-accumulates of convolutions and dense layers only.
- FLOPs: 2 x MACs for those, plus ``elementwise_ops``: one operation per output element
  for a bias, an activation or each extra input of an add/multiply; two for batch norm
  (scale and shift, as folded at inference) and for rescaling/normalisation; a pooling
  window's size per output element; one per input element for global pooling.
- Receptive field, along the height axis (every backbone here is square): ``rf_size``
  input pixels seen by one output element, ``rf_jump`` input pixels between neighbouring
  outputs (the effective stride), ``rf_start`` the centre of the first output's field in
  input pixel coordinates. Where branches meet, the larger field is kept.

Nested models (a backbone inside the classifier) are flattened; their layers are named
``outer/inner``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from clothing.tf import keras

layers = keras.layers


@dataclass(frozen=True)
class Field:
    size: float = 1.0
    jump: float = 1.0
    start: float = 0.5

    def through(self, kernel: int, stride: int, dilation: int, pad_before: float) -> Field:
        span = dilation * (kernel - 1) + 1
        return Field(
            size=self.size + (span - 1) * self.jump,
            jump=self.jump * stride,
            start=self.start + ((span - 1) / 2 - pad_before) * self.jump,
        )


@dataclass
class LayerCost:
    name: str
    type: str
    input_shape: str
    output_shape: str
    kernel: str = ""
    stride: str = ""
    dilation: str = ""
    padding: str = ""
    groups: int = 1
    depth_multiplier: int = 1
    params: int = 0
    macs: int = 0
    elementwise_ops: int = 0
    rf_size: float = 1.0
    rf_jump: float = 1.0
    rf_start: float = 0.5
    _field: Field = field(default_factory=Field, repr=False)

    @property
    def flops(self) -> int:
        return 2 * self.macs + self.elementwise_ops

    def row(self) -> dict:
        values = asdict(self)
        values.pop("_field")
        return values | {"flops": self.flops}


def count(model: keras.Model) -> list[LayerCost]:
    """One :class:`LayerCost` per layer of ``model``, nested models flattened, in graph order."""
    return _walk(model, "", Field())[0]


def _walk(model: keras.Model, prefix: str, input_field: Field) -> tuple[list[LayerCost], Field]:
    fields: dict[str, Field] = {}
    rows: list[LayerCost] = []
    for layer, sources in _graph(model):
        inputs = [fields[name] for name in sources] or [input_field]
        if isinstance(layer, keras.Model):
            inner_rows, out = _walk(layer, f"{prefix}{layer.name}/", inputs[0])
            rows += inner_rows
        elif isinstance(layer, layers.InputLayer):
            out = inputs[0]
        else:
            cost = measure(layer, f"{prefix}{layer.name}", inputs)
            rows.append(cost)
            out = cost._field
        fields[layer.name] = out
    return rows, out if isinstance(model, keras.Sequential) else fields[model.output_names[0]]


def _graph(model: keras.Model) -> list[tuple[layers.Layer, list[str]]]:
    """Each layer with the names of the layers it reads from, in an order that respects them."""
    if isinstance(model, keras.Sequential):
        chain = model.layers
        return [(layer, [chain[i - 1].name] if i else []) for i, layer in enumerate(chain)]
    return [
        (model.get_layer(config["name"]), [inbound[0] for node in config["inbound_nodes"] for inbound in node])
        for config in model.get_config()["layers"]
    ]


def measure(layer: layers.Layer, name: str, input_fields: list[Field]) -> LayerCost:
    """Cost and receptive field of one (non-nested) layer."""
    in_shapes = _shapes(layer.input_shape)
    out_shape = tuple(layer.output_shape)
    out_elements = _elements(out_shape)
    cost = LayerCost(
        name=name,
        type=type(layer).__name__,
        input_shape=" ".join(str(s[1:]) for s in in_shapes),
        output_shape=str(out_shape[1:]),
        params=layer.count_params(),
    )
    widest = max(input_fields, key=lambda f: f.size)
    cost._field = widest
    in_shape = in_shapes[0]

    if isinstance(layer, layers.SeparableConv2D | layers.DepthwiseConv2D | layers.Conv2D):
        kernel, stride, dilation = layer.kernel_size[0], layer.strides[0], layer.dilation_rate[0]
        cost.kernel, cost.stride, cost.dilation = (
            _pair(layer.kernel_size),
            _pair(layer.strides),
            _pair(layer.dilation_rate),
        )
        cost.padding = layer.padding
        spatial = out_shape[1] * out_shape[2]
        in_channels = in_shape[-1]
        window = layer.kernel_size[0] * layer.kernel_size[1]
        if isinstance(layer, layers.SeparableConv2D):
            cost.depth_multiplier = layer.depth_multiplier
            depthwise = in_channels * layer.depth_multiplier
            cost.macs = spatial * depthwise * window + spatial * depthwise * out_shape[-1]
        elif isinstance(layer, layers.DepthwiseConv2D):
            cost.depth_multiplier = layer.depth_multiplier
            cost.groups = in_channels
            cost.macs = spatial * out_shape[-1] * window
        else:
            cost.groups = layer.groups
            cost.macs = spatial * out_shape[-1] * window * in_channels // layer.groups
        cost.elementwise_ops = out_elements if layer.use_bias else 0
        cost.elementwise_ops += out_elements if _has_activation(layer) else 0
        pad = _pad_before(layer.padding, in_shape[1], out_shape[1], kernel, stride, dilation)
        cost._field = widest.through(kernel, stride, dilation, pad)
    elif isinstance(layer, layers.Dense):
        cost.macs = _elements(in_shape) * layer.units
        cost.elementwise_ops = (out_elements if layer.use_bias else 0) + (out_elements if _has_activation(layer) else 0)
    elif isinstance(layer, layers.MaxPooling2D | layers.AveragePooling2D):
        kernel, stride = layer.pool_size[0], layer.strides[0]
        cost.kernel, cost.stride, cost.padding = _pair(layer.pool_size), _pair(layer.strides), layer.padding
        cost.elementwise_ops = out_elements * layer.pool_size[0] * layer.pool_size[1]
        pad = _pad_before(layer.padding, in_shape[1], out_shape[1], kernel, stride, 1)
        cost._field = widest.through(kernel, stride, 1, pad)
    elif isinstance(layer, layers.GlobalAveragePooling2D | layers.GlobalMaxPooling2D):
        cost.elementwise_ops = _elements(in_shape)
        cost._field = widest.through(in_shape[1], 1, 1, 0)
    elif isinstance(layer, layers.ZeroPadding2D):
        top = layer.padding[0][0]
        cost.padding = str(layer.padding)
        cost._field = Field(widest.size, widest.jump, widest.start - top * widest.jump)
    elif isinstance(layer, layers.BatchNormalization | layers.Rescaling | layers.Normalization):
        cost.elementwise_ops = 2 * out_elements
    elif isinstance(layer, layers.Add | layers.Multiply | layers.Subtract | layers.Average | layers.Maximum):
        cost.elementwise_ops = out_elements * (len(in_shapes) - 1)
    elif isinstance(layer, layers.ReLU | layers.Activation | layers.Softmax | layers.LeakyReLU | layers.PReLU):
        cost.elementwise_ops = out_elements
    # Everything else (reshape, concatenate, dropout, flatten, identity-like layers) moves data only.

    cost.rf_size, cost.rf_jump, cost.rf_start = cost._field.size, cost._field.jump, cost._field.start
    return cost


def totals(rows: list[LayerCost]) -> dict[str, int]:
    return {
        "params": sum(r.params for r in rows),
        "macs": sum(r.macs for r in rows),
        "flops": sum(r.flops for r in rows),
        "conv_dense_flops": sum(2 * r.macs for r in rows),
        "elementwise_ops": sum(r.elementwise_ops for r in rows),
    }


def _pad_before(padding: str, size_in: int, size_out: int, kernel: int, stride: int, dilation: int) -> float:
    if padding != "same" or size_in is None:
        return 0
    span = dilation * (kernel - 1) + 1
    return max((size_out - 1) * stride + span - size_in, 0) // 2


def _has_activation(layer: layers.Layer) -> bool:
    activation = getattr(layer, "activation", None)
    return activation is not None and activation.__name__ != "linear"


def _shapes(shape: tuple | list) -> list[tuple]:
    return [tuple(s) for s in shape] if isinstance(shape, list) else [tuple(shape)]


def _elements(shape: tuple) -> int:
    return int(math.prod(d for d in shape[1:] if d is not None))


def _pair(values: tuple) -> str:
    return "x".join(str(v) for v in values)
