"""Figures as PNG files, written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # Files only; never open a window, even where a display exists.
import matplotlib.pyplot as plt

from clothing.files import atomic_file


def save_png(figure: plt.Figure, path: str | Path) -> None:
    if figure.get_layout_engine() is None:
        figure.tight_layout()
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)


def save_gallery(images: Sequence[np.ndarray], titles: Sequence[str], heading: str, path: str | Path) -> None:
    """Photos in rows of four, each under its own title, the whole under ``heading``."""
    columns = 4
    rows = max(1, -(-len(images) // columns))
    # Constrained layout leaves room for the suptitle above the first row's titles.
    figure, grid = plt.subplots(rows, columns, figsize=(3 * columns, 3.3 * rows), squeeze=False, layout="constrained")
    for axes in grid.flat:
        axes.axis("off")
    for axes, image, title in zip(grid.flat, images, titles, strict=False):
        axes.imshow(image)
        axes.set_title(title, fontsize=9)
    figure.suptitle(heading)
    save_png(figure, path)
