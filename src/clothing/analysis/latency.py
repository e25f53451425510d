"""Wall-clock latency of one forward pass, measured the same way for every model."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def single_image_latency(forward: Callable[[np.ndarray], object], image: np.ndarray, warmup: int, runs: int) -> dict:
    """Median and 90th percentile milliseconds for ``forward`` on a batch of one, after warm-up."""
    batch = image[None]
    for _ in range(warmup):
        forward(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        forward(batch)
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1000
    return {"median_ms": round(float(np.median(ms)), 3), "p90_ms": round(float(np.percentile(ms, 90)), 3)}


def keras_latency(model_path: str, image: np.ndarray, threads: int, warmup: int, runs: int) -> dict:
    """Keras single-image latency with ``threads`` TensorFlow threads.

    TensorFlow fixes its thread pools when it starts, so this runs in a fresh process
    (``multiprocessing`` spawn) per thread count.
    """
    from clothing.tf import keras, tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    model = keras.models.load_model(model_path, compile=False)
    forward = tf.function(lambda x: model(x, training=False))
    return single_image_latency(lambda x: forward(x).numpy(), image, warmup, runs)
