"""A Keras model to TFLite: the variants quantize ships, and the train photos that calibrate full int8."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from clothing.data.images import load_images
from clothing.errors import PipelineError
from clothing.files import read_table
from clothing.models.classifier import Classifier
from clothing.tf import keras, tf

Variant = Literal["float32", "float16", "dynamic_int8", "int8"]


def convert(model: keras.Model, variant: Variant, calibration: np.ndarray, int8_io: bool = False) -> bytes:
    """The TFLite file of ``model``; full ``int8`` is calibrated on ``calibration`` (preprocessed photos)."""
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


def representative_sample(train_csv: Path, size: int, seed: int, classifier: Classifier) -> np.ndarray:
    """``size`` train photos (seeded), preprocessed as the model sees them: what calibrates full int8."""
    train = read_table(train_csv)
    if train.empty:
        raise PipelineError(f"the representative sample is empty ({train_csv} has no rows)")
    sample = train.sample(n=min(size, len(train)), random_state=seed)
    return classifier.preprocess(load_images(sample["path"], classifier.info.image_size, desc="decode calibration"))
