"""The augmented views of the training photos, the same for a student and for its teachers.

Train runs its frozen bottom once per photo and view, then trains epoch after epoch on
those cached features; distillation's teachers score the same views. View 0 is the photo,
view 1 its mirror image, later views random zoom/shift/turn of either, each drawn from
``train.seed`` and the view number. The draws are relative to the image, so a teacher at
another input size sees the same zoom, shift and turn.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from clothing.params import Section
from clothing.tf import keras


class AugmentParams(Section):
    enabled: bool
    views: Annotated[int, Field(ge=1)]  # views of each photo cached; epoch e trains on view e mod views
    strength: Annotated[float, Field(ge=0, le=2)]


def view_numbers(augment: AugmentParams) -> range:
    return range(augment.views if augment.enabled else 1)


def augmented(images: np.ndarray, view: int, augment: AugmentParams, seed: int) -> np.ndarray:
    """View ``view`` of ``images`` (uint8-valued), as float32."""
    images = images.astype(np.float32)
    if view % 2 == 1:
        images = images[:, :, ::-1]
    if view < 2 or augment.strength == 0:
        return images
    s = augment.strength
    zoom, shift, turn = (int(x) for x in np.random.SeedSequence([seed, view]).generate_state(3))
    jitter = keras.Sequential([
        keras.layers.RandomZoom((-0.2 * s, 0.1 * s), seed=zoom, fill_mode="reflect"),
        keras.layers.RandomTranslation(0.1 * s, 0.1 * s, seed=shift, fill_mode="reflect"),
        keras.layers.RandomRotation(0.03 * s, seed=turn, fill_mode="reflect"),
    ])  # fmt: skip
    batches = np.array_split(images, len(images) // 64 + 1)
    return np.concatenate([jitter(batch, training=True).numpy() for batch in batches])
