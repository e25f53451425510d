"""The backbone registry: for each name, its constructor, its input preprocessing and its ImageNet weights.

The one list of backbone names: ``params.yaml`` is validated against it, and nothing else
enumerates them. Importing this module does not import TensorFlow (predict on a TFLite
model needs only the preprocessing); :mod:`clothing.networks` builds the models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import AfterValidator

from clothing.preprocess import caffe, scale_to_symmetric, scale_to_unit, unchanged

KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications"


@dataclass(frozen=True)
class Backbone:
    constructor: str  # a keras.applications function, or one in clothing.networks
    preprocess: Callable[[np.ndarray], np.ndarray]  # uint8-valued float32 RGB -> the network's input
    weights_url: str | None  # ImageNet weights without the top; the file name is the URL's last part

    @property
    def weights_file(self) -> str | None:
        return self.weights_url.rsplit("/", 1)[-1] if self.weights_url else None


BACKBONES: dict[str, Backbone] = {
    "mobilenet_v2": Backbone(
        "MobileNetV2",
        scale_to_symmetric,
        f"{KERAS_WEIGHTS}/mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
    ),
    "efficientnet_b0": Backbone(
        "EfficientNetB0", unchanged, "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5"
    ),
    "resnet50": Backbone(
        "ResNet50", caffe, f"{KERAS_WEIGHTS}/resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    ),
    "convnext_tiny": Backbone("ConvNeXtTiny", unchanged, f"{KERAS_WEIGHTS}/convnext/convnext_tiny_notop.h5"),
    "baseline_cnn": Backbone("baseline_cnn", scale_to_unit, None),
}


def _known(name: str) -> str:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone '{name}', expected one of: {', '.join(BACKBONES)}")
    return name


BackboneName = Annotated[str, AfterValidator(_known)]
