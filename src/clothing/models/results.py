"""A prediction as people read it: each photo's top classes, as ``predict`` prints and ``serve`` answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def ranked(
    rows: list[tuple[str | Path, np.ndarray]], classes: list[str], top_k: int, min_confidence: float
) -> list[tuple[str, list[tuple[str, float]], bool]]:
    """Per photo: its name, its top-k (class, probability), and whether the top one is below ``min_confidence``."""
    return [
        (str(path), [(classes[i], float(p[i])) for i in np.argsort(-p)[:top_k]], bool(p.max() < min_confidence))
        for path, p in rows
    ]


def json_records(ranking: list[tuple[str, list[tuple[str, float]], bool]]) -> list[dict]:
    """The JSON form of :func:`ranked`, as ``predict --format json`` and ``serve`` answer."""
    return [
        {"file": f, "uncertain": unsure, "predictions": [{"class": c, "probability": round(p, 4)} for c, p in top]}
        for f, top, unsure in ranking
    ]
