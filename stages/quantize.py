"""quantize: models/model.keras -> models/tflite/model_<variant>.tflite, measured on the test split.

Variants: float32, float16, dynamic-range int8, and full-integer int8 calibrated on a
sample of the *train* split. Each is scored with the same metric code as evaluate, its
agreement with the Keras model's predictions counted, and its size, single-image
latency (one thread and all cores, LiteRT with XNNPACK) and throughput measured, with
the Keras model measured the same way as the reference row.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from clothing.classifier import Classifier, class_indices, info_path, load_classifier
from clothing.errors import PipelineError, run_stage
from clothing.files import atomic_dir, write_csv, write_json
from clothing.images import load_images
from clothing.latency import keras_latency, single_image_latency
from clothing.metrics import scores
from clothing.params import QuantizeParams, load_params
from clothing.tf import keras, tf

MODEL = Path("models/model.keras")
OUT = Path("models/tflite")
SPLIT = Path("data/split")
# Each test photo's predicted class under every variant, for checking predict against this run.
PREDICTIONS = Path("metrics/quantize/predictions.csv")
THREADS = ((1, "latency_1_thread"), (os.cpu_count(), "latency_all_cores"))


def main() -> None:
    params = load_params().quantize
    reference = load_classifier(MODEL)
    info = reference.info
    test = pd.read_csv(SPLIT / "test.csv", dtype=str)
    labels = class_indices(test["label"], info.classes, str(SPLIT / "test.csv"))
    images = load_images(test["path"], info.image_size, desc="decode test")
    calibration = representative_sample(params, reference)
    one_image = reference.preprocess(images[:1])[0]

    keras_probabilities, keras_row = measure(reference, images, labels, None)
    keras_row |= {"size_mb": round(MODEL.stat().st_size / 1e6, 3)} | keras_latencies(params, one_image)
    table = {"keras": keras_row}
    keras_predicted = keras_probabilities.argmax(axis=1)
    predictions = pd.DataFrame({"image": test["image"], "actual": test["label"]})
    predictions["keras"] = info.top1(keras_probabilities)
    with atomic_dir(OUT) as out:
        for variant in params.variants:
            path = out / f"model_{variant}.tflite"
            path.write_bytes(convert(reference.keras_model, variant, calibration, params.int8_io))
            write_json(info_path(path), asdict(info))
            probabilities, row = measure(load_classifier(path), images, labels, keras_predicted)
            predictions[variant] = info.top1(probabilities)
            row |= {"size_mb": round(path.stat().st_size / 1e6, 3)}
            for threads, key in THREADS:
                forward = load_classifier(path, threads=threads).forward
                row[key] = single_image_latency(forward, one_image, params.warmup_runs, params.latency_runs)
            table[variant] = row
            print(f"quantize: {variant}: accuracy {row['accuracy']:.4f}, {row['size_mb']} MB, "
                  f"{row['latency_1_thread']['median_ms']} ms on one thread")  # fmt: skip
    write_json("metrics/quantize.json", table)
    write_csv("metrics/quantize.csv", flat_table(table))
    write_csv(PREDICTIONS, predictions)


def representative_sample(params: QuantizeParams, reference: Classifier) -> np.ndarray:
    train = pd.read_csv(SPLIT / "train.csv", dtype=str)
    if train.empty:
        raise PipelineError("quantize: the representative sample is empty (data/split/train.csv has no rows)")
    sample = train.sample(n=min(params.representative_size, len(train)), random_state=params.seed)
    return reference.preprocess(load_images(sample["path"], reference.info.image_size, desc="decode calibration"))


def convert(model: keras.Model, variant: str, calibration: np.ndarray, int8_io: bool) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        converter.representative_dataset = lambda: ([image[None]] for image in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


def measure(classifier: Classifier, images: np.ndarray, labels: np.ndarray, reference: np.ndarray | None) -> tuple:
    """Scores on the whole test split, agreement with the Keras predictions, throughput."""
    start = time.perf_counter()
    probabilities = classifier.predict(images)
    seconds = time.perf_counter() - start
    summary = scores(labels, probabilities)
    row = {
        "accuracy": summary["accuracy"],
        "macro_f1": summary["macro_f1"],
        "agreement_with_keras": 1.0
        if reference is None
        else round(float((probabilities.argmax(axis=1) == reference).mean()), 4),
        "throughput_img_per_s": round(len(images) / seconds, 1),
    }
    return probabilities, row


def keras_latencies(params: QuantizeParams, image: np.ndarray) -> dict:
    """Keras' thread pools are fixed at start-up: one fresh process per thread count."""
    result = {}
    for threads, key in THREADS:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            job = pool.submit(keras_latency, str(MODEL), image, threads, params.warmup_runs, params.latency_runs)
            result[key] = job.result()
    return result


def flat_table(table: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for variant, row in table.items():
        flat = {"variant": variant}
        for key, value in row.items():
            if isinstance(value, dict):
                flat |= {f"{key}_{k}": v for k, v in value.items()}
            else:
                flat[key] = value
        rows.append(flat)
    return pd.DataFrame(rows)


if __name__ == "__main__":
    run_stage(main)
