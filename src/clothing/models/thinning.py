"""Fewer filters: a copy of a network with channels really removed, so it costs fewer MACs.

Magnitude pruning (:mod:`clothing.models.pruning`) zeroes weights but leaves every channel,
so MACs and int8 latency stay. Here a convolution loses whole filters, chosen by the L1
norm of their kernels (the smallest go, as in Li et al., "Pruning filters for efficient
ConvNets", 2017), and the layers that read those channels lose them too.

A convolution can lose filters when its channels reach, through channel-by-channel layers
only (batch norm, activations, padding, depthwise convolution), either one convolution or
dense layer that reads them or the network's output. In MobileNetV2 and EfficientNet-Lite
that is each block's expansion (through its depthwise convolution to its projection), the
last 1x1 convolution, and a projection that feeds it directly (MobileNetV2's
``block_16_project``); not a projection whose channels meet a residual add.
"""

from __future__ import annotations

import numpy as np

from clothing.tf import keras

layers = keras.layers
CHANNEL_BY_CHANNEL = (layers.BatchNormalization, layers.ReLU, layers.ZeroPadding2D)  # not Activation: softmax mixes


def is_full_convolution(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, layers.Conv2D) and not isinstance(layer, layers.DepthwiseConv2D) and layer.groups == 1


def thinned(model: keras.Model, keep: float) -> keras.Model:
    """A copy of ``model`` whose every thinnable convolution keeps ``keep`` of its filters (at least one).

    ``keep`` = 1 returns ``model`` itself. The kept filters keep their weights, as do the
    channels they feed; nothing is retrained here.
    """
    if keep >= 1:
        return model
    kept, read = kept_filters(model, keep)
    config = model.get_config()
    for layer in config["layers"]:
        if is_full_convolution(model.get_layer(layer["name"])) and layer["name"] in kept:
            layer["config"]["filters"] = len(kept[layer["name"]])
    thin = keras.Model.from_config(config)
    for layer in thin.layers:
        weights = model.get_layer(layer.name).get_weights()
        layer.set_weights(_sliced(model.get_layer(layer.name), weights, read.get(layer.name), kept.get(layer.name)))
    return thin


def kept_filters(model: keras.Model, keep: float) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The channels kept: at each thinned convolution's output and through its chain, and at each reader's input."""
    kept = {}  # layer name -> channel indices kept at its output (convolutions) or throughout (the rest)
    read = {}  # reader name -> channel indices kept at its input
    graph = Graph(model)
    for source in model.layers:
        chain = graph.channel_chain(source) if is_full_convolution(source) else None
        if chain is None:
            continue
        passed, reader = chain
        kernel = source.get_weights()[0]
        strongest = np.argsort(-np.abs(kernel).sum(axis=(0, 1, 2)), kind="stable")
        indices = np.sort(strongest[: max(1, round(keep * source.filters))])
        for name in [source.name, *passed]:
            kept[name] = indices
        if reader is not None:
            read[reader] = indices
    return kept, read


class Graph:
    """Who reads each layer's output, from a functional model's config."""

    def __init__(self, model: keras.Model) -> None:
        self.model = model
        config = model.get_config()
        self.outputs = {output[0] for output in config["output_layers"]}
        self.readers: dict[str, list[str]] = {}
        for layer in config["layers"]:
            for inbound in (entry for node in layer["inbound_nodes"] for entry in node):
                self.readers.setdefault(inbound[0], []).append(layer["name"])

    def channel_chain(self, source: keras.layers.Layer) -> tuple[list[str], str | None] | None:
        """The channel-by-channel layers after ``source`` and the one layer reading their channels
        (None: the model's output), or None when the channels meet anything else (an add, a branch)."""
        passed, name = [], source.name
        while True:
            readers = self.readers.get(name, [])
            if name in self.outputs:
                return (passed, None) if not readers else None
            if len(readers) != 1:
                return None
            layer = self.model.get_layer(readers[0])
            if is_full_convolution(layer) or isinstance(layer, layers.Dense):
                return passed, layer.name
            depthwise = isinstance(layer, layers.DepthwiseConv2D) and layer.depth_multiplier == 1
            if not (depthwise or isinstance(layer, CHANNEL_BY_CHANNEL)):
                return None
            passed.append(layer.name)
            name = layer.name


def _sliced(
    layer: keras.layers.Layer, weights: list[np.ndarray], inputs: np.ndarray | None, outputs: np.ndarray | None
) -> list[np.ndarray]:
    """``weights`` restricted to the kept input channels (a reader) and kept channels (the rest)."""
    if is_full_convolution(layer) or isinstance(layer, layers.Dense):
        kernel, *bias = weights
        if inputs is not None:
            kernel = kernel[..., inputs, :]
        if outputs is not None:
            kernel, bias = kernel[..., outputs], [b[outputs] for b in bias]
        return [kernel, *bias]
    if outputs is None:
        return weights
    # Depthwise kernels are (height, width, channels, 1); batch norm's and biases are (channels,).
    return [w[:, :, outputs] if w.ndim == 4 else w[outputs] for w in weights]
