"""Fewer filters (clothing.models.thinning) and weight clustering (clothing.models.clustering)."""

from __future__ import annotations

import numpy as np
import pytest

from clothing.analysis.complexity import count, totals
from clothing.analysis.profiler import flops_by_op_type
from clothing.models.clustering import clusterable_copy, clustered_layers, distinct_values, stripped
from clothing.models.networks import split_at_fraction
from clothing.models.pruning import copy_weights
from clothing.models.thinning import Graph, kept_filters, thinned
from clothing.tf import keras

CONV_DENSE_OPS = ("Conv2D", "DepthwiseConv2dNative", "MatMul")


def mobilenet_top(size: int = 64) -> keras.Model:
    """The part of a random MobileNetV2 that train fine-tunes."""
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(size, size, 3), include_top=False, weights=None)
    return split_at_fraction(model, 0.42)[1]


def features(top: keras.Model) -> np.ndarray:
    return np.random.default_rng(1).uniform(0, 6, (2, *top.input_shape[1:])).astype(np.float32)


def test_thinnable_convolutions_are_expansions_and_the_last_conv_not_residual_projections() -> None:
    top = mobilenet_top()
    graph = Graph(top)
    assert graph.channel_chain(top.get_layer("block_14_expand")) == (
        ["block_14_expand_BN", "block_14_expand_relu", "block_14_depthwise", "block_14_depthwise_BN",
         "block_14_depthwise_relu"],
        "block_14_project",
    )  # fmt: skip
    assert graph.channel_chain(top.get_layer("Conv_1")) == (["Conv_1_bn", "out_relu"], None)  # the output
    assert graph.channel_chain(top.get_layer("block_14_project")) is None  # meets block_13's output in an add
    assert graph.channel_chain(top.get_layer("block_16_project")) == (["block_16_project_BN"], "Conv_1")


def test_a_thinned_network_computes_what_the_full_one_does_without_the_removed_channels() -> None:
    """Silence the removed channels where they are read: the full network then equals the thin one."""
    top = mobilenet_top()
    thin = thinned(top, 0.5)
    kept, read = kept_filters(top, 0.5)
    assert len(kept["block_14_expand"]) == len(kept["block_14_depthwise_BN"]) == 960 // 2
    for reader, channels in read.items():
        kernel, *rest = top.get_layer(reader).get_weights()
        silenced = np.zeros_like(kernel)
        silenced[..., channels, :] = kernel[..., channels, :]
        top.get_layer(reader).set_weights([silenced, *rest])
    x = features(top)
    np.testing.assert_allclose(thin(x), top(x).numpy()[..., kept["Conv_1"]], atol=1e-4)


def test_half_the_filters_goes_where_the_weakest_kernels_are() -> None:
    top = mobilenet_top()
    kernel = top.get_layer("Conv_1").get_weights()[0]
    strength = np.abs(kernel).sum(axis=(0, 1, 2))
    kept, _ = kept_filters(top, 0.25)
    assert len(kept["Conv_1"]) == 1280 // 4
    assert strength[kept["Conv_1"]].min() >= np.delete(strength, kept["Conv_1"]).max()
    assert thinned(top, 1.0) is top


def test_the_counter_counts_the_thinned_network_exactly() -> None:
    """Our MACs for the thin network against tf.profiler's, and against the full one."""
    top = mobilenet_top(96)
    thin = thinned(top, 0.5)
    profiled = flops_by_op_type(thin)
    assert totals(count(thin))["macs"] * 2 == sum(profiled.get(op, 0) for op in CONV_DENSE_OPS)
    # Each thinned block's expansion, depthwise and projection all lose half their work.
    full, half = ({row.name: row.macs for row in count(model)} for model in (top, thin))
    for layer in ("block_14_expand", "block_14_depthwise", "block_14_project"):
        assert half[layer] * 2 == full[layer]


def test_clustering_leaves_at_most_n_distinct_values_in_each_kernel() -> None:
    top = mobilenet_top(32)
    pooled = keras.layers.GlobalAveragePooling2D()(top.output)
    head = keras.Model(top.input, keras.layers.Dense(3, activation="softmax", name="classes")(pooled))
    before = {layer.name: layer.get_weights() for layer in top.layers}
    clustering = clusterable_copy(head, 8)
    names = clustered_layers(clustering)
    assert {"block_16_expand", "Conv_1", "classes"} <= set(names)
    for name, weights in before.items():  # the copy took the kernels, not the original
        for a, b in zip(weights, top.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    assert max(distinct_values(head, names).values()) > 8

    clustering.compile("adam", "categorical_crossentropy")
    x = features(top)
    clustering.fit(x, keras.utils.to_categorical([0, 2], 3), epochs=1, verbose=0)
    copy_weights(stripped(clustering), head)
    counts = distinct_values(head, names)
    assert all(2 <= n <= 8 for n in counts.values()), counts


@pytest.mark.parametrize("keep", [0.0, 1.5])
def test_keep_filters_outside_0_to_1_is_refused(keep: float) -> None:
    from conftest import stage_module

    train = stage_module("train")
    with pytest.raises(ValueError, match="keep_filters"):
        train.FineTuneParams(epochs=1, lr=0.1, unfreeze=0.5, schedule="cosine", keep_filters=keep)
