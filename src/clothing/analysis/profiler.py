"""An independent FLOP count: the model's frozen graph through keras-flops (tf.profiler).

keras-flops 0.1.2 registers tf.profiler statistics for ``AddV2``, which TensorFlow now
registers itself, so ``import keras_flops`` raises ``KeyError: Registering two
statistical functions with name 'AddV2,flops'``. :func:`import_keras_flops` imports it
with duplicate statistics registrations skipped, leaving TensorFlow's own in place.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from types import ModuleType

from clothing.tf import keras, tf

# TensorFlow internals are imported where used, after clothing.tf's import of TensorFlow,
# which silences its start-up lines.


@contextlib.contextmanager
def _skip_duplicate_statistics() -> Iterator[None]:
    from tensorflow.python.framework import ops, registry

    original = registry.Registry.register

    def register(self: registry.Registry, candidate: object, name: str | None = None) -> None:
        if self is ops._stats_registry and name in self.list():
            return
        original(self, candidate, name)

    registry.Registry.register = register
    try:
        yield
    finally:
        registry.Registry.register = original


def import_keras_flops() -> ModuleType:
    with _skip_duplicate_statistics():
        return importlib.import_module("keras_flops")


def keras_flops_total(model: keras.Model) -> int:
    """keras-flops' total for one image."""
    return int(import_keras_flops().get_flops(model, batch_size=1))


def flops_by_op_type(model: keras.Model) -> dict[str, int]:
    """tf.profiler's FLOPs per TensorFlow op type, on the same frozen graph keras-flops builds."""
    from tensorflow.python.framework import ops
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2_as_graph

    import_keras_flops()  # its statistics for FusedBatchNormV3 and Max count too
    spec = [tf.TensorSpec([1, *i.shape[1:]], i.dtype) for i in model.inputs]
    frozen, _ = convert_variables_to_constants_v2_as_graph(tf.function(model).get_concrete_function(spec))
    by_type: dict[str, int] = {}
    for op in frozen.graph.get_operations():
        flops = ops.get_stats_for_node_def(frozen.graph, op.node_def, "flops").value
        if flops:
            by_type[op.type] = by_type.get(op.type, 0) + int(flops)
    return by_type
