"""Each backbone's ``preprocess_input`` in plain NumPy, so that a TFLite model runs without
importing TensorFlow (seconds of start-up). :data:`clothing.models.backbones.BACKBONES` says which
backbone uses which; tests/test_preprocess.py checks each against the Keras function it replaces.
"""

from __future__ import annotations

import numpy as np

CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], np.float32)


def scale_to_symmetric(images: np.ndarray) -> np.ndarray:
    """MobileNetV2 ("tf" mode): 0..255 -> -1..1."""
    return images / 127.5 - 1.0


def center_127_over_128(images: np.ndarray) -> np.ndarray:
    """EfficientNet-Lite: (x - 127) / 128, as Google's TF Lite builder trained it.

    Not the ImageNet mean/std that the torch port's docstring suggests (EfficientNet-B0 to B7's
    recipe): with that, the first batch norm sees 4x the variance it was trained on.
    """
    return (images - 127.0) / 128.0


def caffe(images: np.ndarray) -> np.ndarray:
    """ResNet50 ("caffe" mode): RGB -> BGR, minus the ImageNet mean per channel."""
    return images[..., ::-1] - CAFFE_BGR_MEAN


def unchanged(images: np.ndarray) -> np.ndarray:
    """EfficientNet and ConvNeXt normalise inside the model."""
    return images


def scale_to_unit(images: np.ndarray) -> np.ndarray:
    """The from-scratch baseline: 0..255 -> 0..1."""
    return images / 255.0
