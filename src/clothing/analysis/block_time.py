"""Where the milliseconds go: the measured time of each block of a network, beside its counted MACs.

LiteRT's Python interpreter has no per-operator profile to read, so a block's time is
measured by difference. The network is truncated after each block (input to the end of
block k), each truncated model is converted to TFLite, and all of them are timed on one
thread in rounds in which the models take turns run by run, so a change in the machine's
load falls on all of them alike. In each round, block k takes T(end of k) - T(end of k - 1),
T being a model's median over the round's runs; its time is the median over rounds and its
spread their interquartile range. Within one round the blocks add up to the whole model exactly (the
differences telescope); the check that means something is on the medians: their sum
against the whole model's median, within :data:`TOLERANCE`.

Blocks: layers named ``block_<k>`` / ``block<k>`` (MobileNetV2, EfficientNet-Lite; MobileNetV2's
first block is ``expanded_conv``), the stem before the first, the head after the last. A
network with no named blocks (the baseline CNN) is grouped by the resolution its layers
output, one stage per resolution, and the head.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clothing.analysis.complexity import LayerCost
from clothing.quiet import native_logs_silenced
from clothing.tf import keras

BLOCK_NAME = re.compile(r"^(?:block_?(\d+)|(expanded_conv))")
# The medians' sum may differ from the whole model's median by this share of it, or by three
# times the whole's interquartile range over rounds where the machine is noisier than that.
TOLERANCE = 0.10


def blocks_of(rows: list[LayerCost]) -> list[str]:
    """Each layer's block (``stem``, ``block_<k>`` or ``stage_<h>x<w>``, ``head``), in the counter's order."""
    leaf = [row.name.rsplit("/", 1)[-1] for row in rows]
    named = [_block_number(name) for name in leaf]
    if not any(number is not None for number in named):
        return [_stage(row.output_shape) for row in rows]
    first = next(i for i, number in enumerate(named) if number is not None)
    last = max(i for i, number in enumerate(named) if number is not None)
    blocks, current = [], "stem"
    for i, number in enumerate(named):
        if number is not None:
            current = f"block_{number}"
        blocks.append("stem" if i < first else "head" if i > last else current)
    return blocks


def _block_number(name: str) -> int | None:
    match = BLOCK_NAME.match(name)
    return None if match is None else int(match[1]) if match[1] else 0


def _stage(output_shape: str) -> str:
    shape = output_shape.strip("()").split(", ")
    return f"stage_{shape[0]}x{shape[1]}" if len(shape) == 3 else "head"


def block_ends(rows: list[LayerCost], blocks: list[str]) -> list[tuple[str, str]]:
    """(block, its last layer's name) in order; the last block ends at the model's output (name '')."""
    order = list(dict.fromkeys(blocks))
    last_layer = {block: row.name for row, block in zip(rows, blocks, strict=True)}
    return [(block, last_layer[block] if block != order[-1] else "") for block in order]


def prefix(model: keras.Model, path: str) -> keras.Model:
    """``model`` from its input to the output of layer ``path`` (``outer/inner`` inside nested models)."""
    if not path:
        return model
    outer, _, inner = path.partition("/")
    layer = model.get_layer(outer)
    if not inner:
        return keras.Model(model.input, layer.output)
    return keras.Model(model.input, prefix(layer, inner)(_fed_into(model, outer)))


def _fed_into(model: keras.Model, name: str) -> object:
    """The tensor ``model`` feeds into its layer ``name`` (a nested model, called once)."""
    (entry,) = [layer for layer in model.get_config()["layers"] if layer["name"] == name]
    source, node, tensor = entry["inbound_nodes"][0][0][:3]
    return model.get_layer(source).get_output_at(node) if tensor == 0 else model.get_layer(source).output[tensor]


@dataclass(frozen=True)
class Timed:
    """Per block: the median milliseconds over rounds and their quartiles; the whole model's median and IQR."""

    block_ms: pd.DataFrame  # index: block; columns: ms (median over rounds), q25, q75
    whole_ms: float
    whole_iqr_ms: float

    def adds_up(self) -> bool:
        return bool(abs(self.block_ms["ms"].sum() - self.whole_ms) <= self.tolerance_ms())

    def tolerance_ms(self) -> float:
        return max(TOLERANCE * self.whole_ms, 3 * self.whole_iqr_ms)


def time_blocks(invokes: list[tuple[str, Callable[[], object]]], warmup: int, runs: int, rounds: int) -> Timed:
    """``invokes``: (block, one run of the truncated model ending with it) in order, the last the whole model."""
    cumulative = np.array([_interleaved_median_ms([run for _, run in invokes], warmup, runs) for _ in range(rounds)])
    per_round = np.diff(cumulative, axis=1, prepend=0.0)
    table = pd.DataFrame(
        {
            "ms": np.median(per_round, axis=0),
            "q25": np.percentile(per_round, 25, axis=0),
            "q75": np.percentile(per_round, 75, axis=0),
        },
        index=[block for block, _ in invokes],
    ).round(4)
    whole = cumulative[:, -1]
    return Timed(table, float(np.median(whole)), float(np.subtract(*np.percentile(whole, [75, 25]))))


def _interleaved_median_ms(invokes: list[Callable[[], object]], warmup: int, runs: int) -> np.ndarray:
    """Each model's median milliseconds, the models taking turns run by run, so that a change in
    the machine's load (another process, a clock step) falls on all of them alike."""
    for _ in range(warmup):
        for invoke in invokes:
            invoke()
    seconds = np.zeros((runs, len(invokes)))
    for run in range(runs):
        for k, invoke in enumerate(invokes):
            start = time.perf_counter()
            invoke()
            seconds[run, k] = time.perf_counter() - start
    return np.median(seconds, axis=0) * 1000


def tflite_invokes(
    model: keras.Model, ends: list[tuple[str, str]], convert: Callable[[keras.Model], bytes], image: np.ndarray
) -> list[tuple[str, Callable[[], None]]]:
    """Each block's truncated model, converted by ``convert``, as a bare one-thread ``invoke`` on ``image``.

    Only ``invoke`` is timed: copying a truncated model's output out grows with the size of the
    cut tensor, not with the block's work, and would make blocks before a large cut look slow.
    """
    invokes = []
    with tempfile.TemporaryDirectory() as folder:
        for k, (block, last_layer) in enumerate(ends):
            path = Path(folder) / f"{k:02d}.tflite"
            path.write_bytes(convert(prefix(model, last_layer)))
            invokes.append((block, tflite_invoke(path, image)))
    return invokes


def tflite_invoke(path: Path, image: np.ndarray) -> Callable[[], None]:
    """The one-thread interpreter's bare ``invoke``, ``image`` set once as its input (quantized for int8)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    with native_logs_silenced():  # "Created TensorFlow Lite XNNPACK delegate for CPU."
        interpreter.allocate_tensors()
    (source,) = interpreter.get_input_details()
    scale, zero_point = source["quantization"]
    batch = image[None]
    if source["dtype"] != np.float32:
        limits = np.iinfo(source["dtype"])
        batch = np.clip(np.round(batch / scale + zero_point), limits.min, limits.max).astype(source["dtype"])
    interpreter.set_tensor(source["index"], batch)
    return interpreter.invoke


def block_table(rows: list[LayerCost], blocks: list[str], timed: dict[str, Timed]) -> pd.DataFrame:
    """block, layers, MACs, MAC share, then per variant: ms (quartiles over rounds), time share; int8 speed-up."""
    costs = pd.DataFrame({"block": blocks, "macs": [row.macs for row in rows]})
    table = costs.groupby("block", sort=False).agg(layers=("macs", "size"), macs=("macs", "sum"))
    table["mac_share"] = (table["macs"] / table["macs"].sum()).round(4)
    for variant, result in timed.items():
        times = result.block_ms.reindex(table.index)
        table[f"{variant}_ms"] = times["ms"]
        table[f"{variant}_q25_ms"], table[f"{variant}_q75_ms"] = times["q25"], times["q75"]
        table[f"{variant}_share"] = (times["ms"] / times["ms"].sum()).round(4)
    if {"float32", "int8"} <= set(timed):
        table["int8_speedup"] = (table["float32_ms"] / table["int8_ms"]).round(2)
    return table.reset_index()
