"""Figures as PNG files, written atomically."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # Files only; never open a window, even where a display exists.
import matplotlib.pyplot as plt

from clothing.files import atomic_file


def save_png(figure: plt.Figure, path: str | Path) -> None:
    if figure.get_layout_engine() is None:
        figure.tight_layout()
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
