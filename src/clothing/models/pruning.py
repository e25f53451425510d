"""Magnitude pruning with fine-tuning, by tensorflow-model-optimization (tfmot).

Training fine-tunes only the top of the backbone and the head, on cached features; pruning
works on the same part, so it costs seconds per epoch. The pointwise convolutions and the
dense layer lose their smallest weights, the sparsity rising from 0 to the target over the
first two thirds of the epochs and then held while the rest recover. Depthwise kernels
(9 or 25 weights per channel) and the frozen bottom stay dense. The result is an ordinary
Keras model with zeros in it: smaller once compressed, no faster on a dense runtime.
"""

from __future__ import annotations

from clothing.tf import keras


def is_prunable(layer: keras.layers.Layer) -> bool:
    """Pointwise (and other full) convolutions and dense layers; not depthwise ones."""
    return isinstance(layer, keras.layers.Conv2D | keras.layers.Dense) and not isinstance(
        layer, keras.layers.DepthwiseConv2D
    )


def prunable_copy(head: keras.Model, sparsity: float, steps: int) -> keras.Model:
    """A copy of ``head`` (input, nested top, pooling, dropout, dense) with tfmot's pruning wrappers."""
    import tensorflow_model_optimization as tfmot  # after clothing.tf: it must see tf_keras

    ramp = max(1, steps * 2 // 3)
    every = max(1, ramp // 20)  # about 20 mask updates, the last one at the ramp's end
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, sparsity, 0, ramp - ramp % every, frequency=every)

    def wrap(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, keras.Model):
            return keras.models.clone_model(layer, clone_function=wrap)
        copy = layer.__class__.from_config(layer.get_config())
        return tfmot.sparsity.keras.prune_low_magnitude(copy, pruning_schedule=schedule) if is_prunable(layer) else copy

    pruned = keras.models.clone_model(head, clone_function=wrap)
    copy_weights(head, pruned)
    return pruned


def copy_weights(source: keras.Model, target: keras.Model) -> None:
    """Layer by layer, through nested models and pruning wrappers (which hold the real layer)."""
    for a, b in zip(source.layers, target.layers, strict=True):
        a, b = getattr(a, "layer", a), getattr(b, "layer", b)
        if isinstance(a, keras.Model):
            copy_weights(a, b)
        elif a.weights:
            b.set_weights(a.get_weights())


def pruning_step() -> keras.callbacks.Callback:
    import tensorflow_model_optimization as tfmot

    return tfmot.sparsity.keras.UpdatePruningStep()


def sparsity_of(model: keras.Model) -> dict[str, float]:
    """Zero fraction of the prunable kernels, and of all the model's weights."""
    kernels = [w for layer in all_layers(model) if is_prunable(layer) for w in layer.get_weights()[:1]]
    weights = model.get_weights()
    zeros = sum(int((w == 0).sum()) for w in kernels)
    return {
        "prunable_kernels": round(zeros / max(1, sum(w.size for w in kernels)), 4),
        "all_weights": round(sum(int((w == 0).sum()) for w in weights) / sum(w.size for w in weights), 4),
    }


def all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    return [
        inner for layer in model.layers for inner in (all_layers(layer) if isinstance(layer, keras.Model) else [layer])
    ]
