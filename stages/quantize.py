"""quantize: models/model.keras -> models/tflite/model_<variant>.tflite, measured on the test split.

Variants: float32, float16, dynamic-range int8, and full-integer int8 calibrated on a
sample of the *train* split. Each is scored with the same metric code as evaluate, its
agreement with the Keras model's predictions counted, and its size, single-image
latency (one thread and all cores, LiteRT with XNNPACK) and throughput measured, with
the Keras model measured the same way as the reference row. Each file carries TFLite
metadata (labels, input normalisation), so MediaPipe's ImageClassifier runs it as it is. Timings go to their own
file with the CPU named (``metrics/timing/quantize.json``), apart from the scores, so a
rerun that reproduces the model diffs clean in ``dvc metrics diff``.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import Field, NonNegativeInt

from clothing.analysis.latency import keras_latency, single_image_latency
from clothing.analysis.metrics import scores
from clothing.data.images import load_images
from clothing.errors import run_stage
from clothing.files import atomic_dir, read_table, write_csv, write_json
from clothing.models.backbones import BACKBONES
from clothing.models.classifier import Classifier, class_indices, info_path, load_classifier
from clothing.models.conversion import convert, representative_sample
from clothing.models.tflite_metadata import Metadata, normalization, write_metadata
from clothing.params import Section, load_section
from clothing.system import cpu_description, usable_cores

MODEL = Path("models/model.keras")
OUT = Path("models/tflite")
SPLIT = Path("data/split")
# Each test photo's predicted class under every variant, for checking predict against this run.
PREDICTIONS = Path("metrics/quantize/predictions.csv")
TIMING = Path("metrics/timing/quantize.json")
THREADS = ((1, "latency_1_thread"), (usable_cores(), "latency_all_cores"))


class QuantizeParams(Section):
    variants: list[Literal["float32", "float16", "dynamic_int8", "int8"]]
    representative_size: Annotated[int, Field(ge=1)]  # train photos that calibrate full int8
    seed: NonNegativeInt
    int8_io: bool  # int8 tensors at the model's input and output too
    warmup_runs: NonNegativeInt
    latency_runs: Annotated[int, Field(ge=1)]


def main() -> None:
    params = load_section("quantize", QuantizeParams)
    reference = load_classifier(MODEL)
    info = reference.info
    test = read_table(SPLIT / "test.csv")
    labels = class_indices(test["label"], info.classes, str(SPLIT / "test.csv"))
    images = load_images(test["path"], info.image_size, desc="decode test")
    calibration = representative_sample(SPLIT / "train.csv", params.representative_size, params.seed, reference)
    one_image = reference.preprocess(images[:1])[0]

    keras_probabilities, keras_row, keras_speed = measure(reference, images, labels, None)
    keras_row["size_mb"] = round(MODEL.stat().st_size / 1e6, 3)
    table, timing = {"keras": keras_row}, {"keras": keras_speed | keras_latencies(params, one_image)}
    keras_predicted = keras_probabilities.argmax(axis=1)
    predictions = pd.DataFrame({"image": test["image"], "actual": test["label"]})
    predictions["keras"] = info.top1(keras_probabilities)
    # Labels and input normalisation inside each .tflite, as MediaPipe Model Maker writes them.
    described = Metadata(info.classes, *normalization(BACKBONES[info.backbone].preprocess))
    with atomic_dir(OUT) as out:
        for variant in params.variants:
            path = out / f"model_{variant}.tflite"
            path.write_bytes(convert(reference.keras_model, variant, calibration, params.int8_io))
            write_metadata(path, described)
            write_json(info_path(path), asdict(info))
            probabilities, row, speed = measure(load_classifier(path), images, labels, keras_predicted)
            predictions[variant] = info.top1(probabilities)
            row["size_mb"] = round(path.stat().st_size / 1e6, 3)
            for threads, key in THREADS:
                forward = load_classifier(path, threads=threads).forward
                speed[key] = single_image_latency(forward, one_image, params.warmup_runs, params.latency_runs)
            table[variant], timing[variant] = row, speed
            print(f"quantize: {variant}: accuracy {row['accuracy']:.4f}, {row['size_mb']} MB, "
                  f"{speed['latency_1_thread']['median_ms']} ms on one thread")  # fmt: skip
    write_json("metrics/quantize.json", table)
    write_csv("metrics/quantize.csv", flat_table(table))
    write_csv(PREDICTIONS, predictions)
    write_json(TIMING, {"cpu": cpu_description(), "variants": timing})


def measure(classifier: Classifier, images: np.ndarray, labels: np.ndarray, reference: np.ndarray | None) -> tuple:
    """Scores on the whole test split and agreement with the Keras predictions; throughput apart."""
    classifier.predict(images[:64])  # the first call traces and allocates: not part of the throughput
    start = time.perf_counter()
    probabilities = classifier.predict(images)
    seconds = time.perf_counter() - start
    summary = scores(labels, probabilities)
    agreement = 1.0 if reference is None else float((probabilities.argmax(axis=1) == reference).mean())
    row = {
        "accuracy": summary["accuracy"],
        "macro_f1": summary["macro_f1"],
        "agreement_with_keras": round(agreement, 4),
    }
    return probabilities, row, {"throughput_img_per_s": round(len(images) / seconds, 1)}


def keras_latencies(params: QuantizeParams, image: np.ndarray) -> dict:
    """Keras' thread pools are fixed at start-up: one fresh process per thread count."""
    result = {}
    for threads, key in THREADS:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            job = pool.submit(keras_latency, str(MODEL), image, threads, params.warmup_runs, params.latency_runs)
            result[key] = job.result()
    return result


def flat_table(table: dict[str, dict]) -> pd.DataFrame:
    return pd.DataFrame([{"variant": variant} | row for variant, row in table.items()])


if __name__ == "__main__":
    run_stage(main)
