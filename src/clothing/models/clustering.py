"""Weight sharing by tensorflow-model-optimization's weight clustering, with fine-tuning.

Each kernel of the fine-tuned part's pointwise convolutions and dense layer is replaced by
``clusters`` shared values (k-means++ initialised on its weights), which then train as
centroids; tfmot 0.8 leaves depthwise kernels (9 weights a channel) as they are. The result
is an ordinary Keras model whose kernels hold at most that many distinct values: no smaller
as int8 (one byte a weight either way), but it compresses better, and nothing changes its
MACs or its latency. Like pruning it works on the cached-feature part only, so it costs
seconds per epoch. Frozen layers stay as they are.
"""

from __future__ import annotations

import numpy as np

from clothing.models.pruning import all_layers, copy_weights
from clothing.tf import keras


def clusterable_copy(head: keras.Model, clusters: int) -> keras.Model:
    """A copy of ``head`` with tfmot's clustering wrappers on every kernel it can cluster.

    tfmot wraps the layers it is given and takes their kernels away: it gets a copy.
    """
    import tensorflow_model_optimization as tfmot  # after clothing.tf: it must see tf_keras

    copy = keras.models.clone_model(head)
    copy_weights(head, copy)
    init = tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS
    return tfmot.clustering.keras.cluster_weights(copy, number_of_clusters=clusters, cluster_centroids_init=init)


def stripped(clustered: keras.Model) -> keras.Model:
    """The clustered model without its wrappers: plain layers holding the shared values."""
    import tensorflow_model_optimization as tfmot

    return tfmot.clustering.keras.strip_clustering(clustered)


def clustered_layers(clustered: keras.Model) -> list[str]:
    """Names of the layers whose kernel tfmot clusters (it wraps every layer, most with nothing to cluster)."""
    return [layer.layer.name for layer in all_layers(clustered) if getattr(layer, "cluster_centroids", None)]


def distinct_values(model: keras.Model, names: list[str]) -> dict[str, int]:
    """Distinct values in the kernel of each named layer of ``model`` (nested models searched too)."""
    by_name = {layer.name: layer for layer in all_layers(model)}
    return {name: int(np.unique(by_name[name].get_weights()[0]).size) for name in names}
