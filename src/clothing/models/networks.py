"""Building a backbone from the registry, and cutting a network in two.

Training freezes the bottom of a backbone and fine-tunes the top. :func:`split_at_fraction`
cuts the network where that boundary lies, so the frozen part can be run once per
image (and augmented view) instead of once per epoch.
"""

from __future__ import annotations

from pathlib import Path

from clothing.errors import PipelineError
from clothing.models.backbones import BACKBONES
from clothing.models.efficientnet_lite import efficientnet_lite0, efficientnet_lite1, efficientnet_lite2
from clothing.tf import keras


def baseline_cnn(input_shape: tuple[int, int, int], include_top: bool = False, weights: None = None) -> keras.Model:
    """A small CNN trained from scratch: the honest floor the transfer-learned models must beat.

    Five stages that halve the resolution (16 to 256 filters). The last three add a
    second convolution, so the last layer sees 175 px of a 224 px photo, not 63 px. Its
    batch norm starts from nothing, so its running statistics follow the batches faster
    (momentum 0.9, not Keras' 0.99): after a few hundred steps they are the data's.
    """
    inputs = keras.Input(input_shape)
    x = inputs
    for stage, filters in enumerate((16, 32, 64, 128, 256)):
        for stride in (2, 1) if stage >= 2 else (2,):
            x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
            x = keras.layers.BatchNormalization(momentum=0.9)(x)
            x = keras.layers.ReLU()(x)
    return keras.Model(inputs, x, name="baseline_cnn")


# The constructors the registry names that keras.applications does not have.
OURS = {f.__name__: f for f in (baseline_cnn, efficientnet_lite0, efficientnet_lite1, efficientnet_lite2)}


def build_backbone(name: str, image_size: int, weights: str | Path | None = None, **options: float) -> keras.Model:
    """The backbone without its top: random weights, or those of a Keras weights file.

    ``options`` go to the constructor (``alpha=0.5`` for a narrower MobileNetV2).
    """
    constructor = BACKBONES[name].constructor
    build = OURS[constructor] if constructor in OURS else getattr(keras.applications, constructor)
    shape = (image_size, image_size, 3)
    try:
        return build(input_shape=shape, include_top=False, weights=None if weights is None else str(weights), **options)
    except (OSError, ValueError) as error:
        raise PipelineError(f"cannot load weights {weights}: {' '.join(str(error).split())[:200]}") from None


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
