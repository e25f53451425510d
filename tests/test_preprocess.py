"""Our NumPy preprocessing equals each backbone's Keras preprocess_input."""

from __future__ import annotations

import numpy as np
import pytest

from clothing.models.backbones import BACKBONES
from clothing.tf import keras

KERAS_PREPROCESS = {
    "mobilenet_v2": keras.applications.mobilenet_v2.preprocess_input,
    "efficientnet_b0": keras.applications.efficientnet.preprocess_input,
    "resnet50": keras.applications.resnet50.preprocess_input,
    "convnext_tiny": keras.applications.convnext.preprocess_input,
}


@pytest.mark.parametrize("backbone", sorted(KERAS_PREPROCESS))
def test_preprocess_matches_keras(backbone: str) -> None:
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    expected = KERAS_PREPROCESS[backbone](images.copy())
    np.testing.assert_allclose(BACKBONES[backbone].preprocess(images.copy()), expected, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_every_backbone_builds(backbone: str) -> None:
    from clothing.models.networks import build_backbone

    model = build_backbone(backbone, 32)
    assert model.output_shape[0] is None and len(model.output_shape) == 4
