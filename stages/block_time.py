"""block_time: models/model.keras -> metrics/complexity/block_time.{csv,png,md}: measured time per block.

Counted MACs say where the multiplications are, not where the milliseconds go: a depthwise
convolution has few MACs but moves much memory, and int8 kernels speed some layer types
more than others. Each block is timed by difference of truncated models, float32 and full
int8 TFLite on one thread (method: :mod:`clothing.analysis.block_time`). A stage of its
own: its 38 conversions of MobileNetV2 take about 12 minutes on a 2-core EPYC, which
analyze_complexity's seconds should not pay for on every run. The times are timings,
beside the metrics, with the CPU named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
from pydantic import Field, NonNegativeInt, field_validator

from clothing.analysis.block_time import Timed, block_ends, block_table, blocks_of, tflite_invokes, time_blocks
from clothing.analysis.complexity import count
from clothing.analysis.plots import plt, save_png
from clothing.errors import run_stage
from clothing.files import atomic_file, write_csv, write_json
from clothing.models.classifier import load_classifier
from clothing.models.conversion import convert, representative_sample
from clothing.params import Section, load_section
from clothing.system import cpu_description

MODEL = Path("models/model.keras")
TRAIN = Path("data/split/train.csv")
OUT = Path("metrics/complexity")
TIMING = Path("metrics/timing/block_time.json")


class BlockTimeParams(Section):
    variants: Annotated[list[Literal["float32", "int8"]], Field(min_length=1)]
    representative_size: Annotated[int, Field(ge=1)]  # train photos that calibrate each truncated int8 model
    seed: NonNegativeInt
    warmup_runs: NonNegativeInt
    runs: Annotated[int, Field(ge=1)]  # timed runs of each truncated model per round: their median is its time
    rounds: Annotated[int, Field(ge=1)]  # rounds over all truncated models: a block's spread is their quartiles

    @field_validator("variants")
    @classmethod
    def _each_variant_once(cls, variants: list[str]) -> list[str]:
        if len(set(variants)) < len(variants):
            raise ValueError("name each variant once")
        return variants


def main() -> None:
    params = load_section("block_time", BlockTimeParams)
    classifier = load_classifier(MODEL)
    model = classifier.keras_model
    rows = count(model)
    blocks = blocks_of(rows)
    ends = block_ends(rows, blocks)
    calibration = representative_sample(TRAIN, params.representative_size, params.seed, classifier)
    timed: dict[str, Timed] = {}
    for variant in params.variants:
        # int8 in and out: a float interface would add a dequantize op sized by each cut, not by its block
        invokes = tflite_invokes(
            model, ends, lambda m, v=variant: convert(m, v, calibration, int8_io=True), calibration[0]
        )
        timed[variant] = time_blocks(invokes, params.warmup_runs, params.runs, params.rounds)
        print(f"block_time: {variant}: {len(ends)} blocks, whole model {timed[variant].whole_ms:.3f} ms")
    table = block_table(rows, blocks, timed)
    cpu = cpu_description()
    write_csv(OUT / "block_time.csv", table)
    plot(table, list(timed), cpu, OUT / "block_time.png")
    with atomic_file(OUT / "block_time.md") as tmp:
        tmp.write_text(report(table, timed, cpu, params))
    write_json(TIMING, {"cpu": cpu} | {v: whole(result) for v, result in timed.items()})


def whole(result: Timed) -> dict:
    return {
        "whole_ms": round(result.whole_ms, 4),
        "whole_iqr_ms": round(result.whole_iqr_ms, 4),
        "blocks_sum_ms": round(float(result.block_ms["ms"].sum()), 4),
        "tolerance_ms": round(result.tolerance_ms(), 4),
        "adds_up": result.adds_up(),
    }


def plot(table: pd.DataFrame, variants: list[str], cpu: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 6))
    for variant, marker in zip(variants, "os", strict=False):
        ax.scatter(table["mac_share"], table[f"{variant}_share"], marker=marker, label=f"{variant}, 1 thread")
    for _, row in table.iterrows():
        ax.annotate(row["block"], (row["mac_share"], row[f"{variants[-1]}_share"]), fontsize=7)
    top = max(table["mac_share"].max(), *(table[f"{v}_share"].max() for v in variants)) * 1.1
    ax.plot([0, top], [0, top], color="grey", linewidth=0.8, label="time follows MACs")
    ax.set_xlabel("share of counted MACs")
    ax.set_ylabel("share of measured time")
    ax.set_title(f"Time against MACs per block ({cpu['model']}, {', '.join(cpu['extensions'])})", fontsize=9)
    ax.legend(fontsize=8)
    save_png(fig, path)


def report(table: pd.DataFrame, timed: dict[str, Timed], cpu: dict, params: BlockTimeParams) -> str:
    cpu_name = f"{cpu['model']} ({', '.join(cpu['extensions'])}), 1 thread"
    by_macs = table.loc[table["macs"].idxmax()]
    lines = [
        "# Time per block",
        "",
        f"Measured on {cpu_name}. Each block's time is the difference between the TFLite models truncated",
        "after it and after the block before, timed in interleaved rounds "
        f"({params.rounds} rounds of {params.runs} runs after {params.warmup_runs} warm-up runs each; "
        "median over rounds; q25 and q75 its quartiles).",
        "",
        f"Most MACs: **{by_macs['block']}** ({by_macs['mac_share']:.1%} of {table['macs'].sum() / 1e6:.1f} MMACs).",
    ]
    for variant, result in timed.items():
        slowest = table.loc[table[f"{variant}_ms"].idxmax()]
        verdict = "within" if result.adds_up() else "OUTSIDE"
        lines += [
            f"Most {variant} time: **{slowest['block']}** ({slowest[f'{variant}_ms']:.3f} ms, "
            f"{slowest[f'{variant}_share']:.1%}). The blocks add up to {result.block_ms['ms'].sum():.3f} ms against "
            f"{result.whole_ms:.3f} ms for the whole model, {verdict} the tolerance of {result.tolerance_ms():.3f} ms.",
        ]
    lines += ["", table.to_markdown(index=False), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    run_stage(main)
