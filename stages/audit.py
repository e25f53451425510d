"""audit: out-of-fold probabilities -> metrics/label_issues.csv, metrics/audit.json, metrics/audit/.

Confident learning (cleanlab) on cross-validated probabilities: each photo is scored by
the fold model that did not train on it (``python -m clothing.commands.crossval`` writes them to
metrics/cv/<name>_probabilities.csv), so a photo whose given label its model finds
unlikely, beyond what that class's estimated noise explains, is a suspect. The audit
only proposes: a person looks at the suspects (metrics/audit/suspects.png), and writes
the corrections they are sure of to data/relabel.csv, which clean applies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
from cleanlab.dataset import rank_classes_by_label_quality
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from pydantic import Field

from clothing.analysis.plots import save_gallery
from clothing.data.images import load_images
from clothing.data.sources import fetch_source, written_for
from clothing.errors import PipelineError, run_stage
from clothing.files import read_table, write_csv, write_json
from clothing.params import Section, load_section

CROSS_VALIDATION = Path("metrics/cv")
CORRECTIONS = Path("data/relabel.csv")
LABELS = Path("data/clean/labels.csv")
OUT = Path("metrics/audit")


class AuditParams(Section):
    cross_validation: str  # the crossval run's name: metrics/cv/<name>_probabilities.csv
    gallery_size: Annotated[int, Field(ge=0)]
    thumbnail_size: Annotated[int, Field(ge=16)]


def main() -> None:
    params = load_section("audit", AuditParams)
    source = CROSS_VALIDATION / f"{params.cross_validation}_probabilities.csv"
    scored = read_probabilities(source)
    paths = photo_paths(scored["image"], source)  # before any output: a run on other photos writes nothing
    classes = [column for column in scored.columns if column not in ("image", "label", "fold")]
    given = given_labels(scored, classes, source)
    probabilities = scored[classes].to_numpy(float)

    issues = label_issues(scored, given, probabilities, classes)
    corrections = read_table(CORRECTIONS)
    reviewed = corrections[written_for(corrections["source"], fetch_source())].set_index("image")["label"]
    issues["reviewed"] = issues["image"].map(reviewed).fillna("")
    write_csv("metrics/label_issues.csv", issues)
    pairs = issues.groupby(["given_label", "suggested_label"]).size().rename("count").reset_index()
    write_csv(OUT / "class_pairs.csv", pairs.sort_values("count", ascending=False, kind="stable"))
    noise = class_noise(given, probabilities, classes)
    write_csv(OUT / "per_class.csv", noise_table(noise))
    write_json("metrics/audit.json", summary(scored, issues, noise))

    top = issues.head(params.gallery_size)
    thumbnails = load_images(paths[top["image"]].tolist(), params.thumbnail_size)
    titles = [
        f"#{row.rank} given {row.given_label}\nsuggested {row.suggested_label} ({row.suggested_probability:.2f})"
        + (f"\nreviewed: {row.reviewed}" if row.reviewed else "")
        for row in top.itertuples()
    ]
    heading = f"Likeliest label errors ({params.cross_validation} out-of-fold probabilities)"
    save_gallery(thumbnails, titles, heading, OUT / "suspects.png")
    flagged = int(issues["cleanlab_issue"].sum())
    print(f"audit: {len(issues)} suspects, {flagged} flagged by cleanlab, among {len(scored)} photos ({source})")


def read_probabilities(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise PipelineError(f"{path}: missing; run python -m clothing.commands.crossval first (docs/evaluation.md)")
    scored = read_table(path, text_columns=("image", "label"))
    if scored["image"].duplicated().any():
        raise PipelineError(f"{path}: a photo is scored twice")
    return scored


def photo_paths(images: pd.Series, source: Path) -> pd.Series:
    """Where each scored photo is: a run on other photos (another fetch.source) is one clear error."""
    paths = read_table(LABELS).set_index("image")["path"]
    unknown = sorted(set(images) - set(paths.index))
    if unknown:
        raise PipelineError(
            f"{source}: scored photos that are not in {LABELS}, e.g. {unknown[0]}: cross-validate this "
            "data (python -m clothing.commands.crossval) and set audit.cross_validation to that run"
        )
    return paths


def given_labels(scored: pd.DataFrame, classes: list[str], source: Path) -> np.ndarray:
    index = scored["label"].map({name: i for i, name in enumerate(classes)})
    if index.isna().any():
        unknown = sorted(set(scored["label"]) - set(classes))
        raise PipelineError(f"{source}: labels without a probability column: {unknown}")
    return index.to_numpy(int)


def label_issues(
    scored: pd.DataFrame, given: np.ndarray, probabilities: np.ndarray, classes: list[str]
) -> pd.DataFrame:
    """The suspects, likeliest error first (lowest out-of-fold probability of the given label).

    Suspects are the photos cleanlab's confident learning flags (``cleanlab_issue``) and
    the photos whose out-of-fold prediction is another class: on small classes the
    per-class thresholds can miss an obvious one, which a reviewer should still see.
    """
    flagged = find_label_issues(given, probabilities, n_jobs=1)
    quality = get_label_quality_scores(given, probabilities, method="self_confidence")
    others = probabilities.copy()
    others[np.arange(len(given)), given] = -1
    suggested = others.argmax(axis=1)
    listed = np.flatnonzero(flagged | (probabilities.argmax(axis=1) != given))
    listed = listed[np.argsort(quality[listed], kind="stable")]
    return pd.DataFrame({
        "rank": np.arange(1, len(listed) + 1),
        "image": scored["image"].to_numpy()[listed],
        "given_label": np.array(classes)[given[listed]],
        "suggested_label": np.array(classes)[suggested[listed]],
        "given_probability": quality[listed].round(4),
        "suggested_probability": probabilities[listed, suggested[listed]].round(4),
        "cleanlab_issue": flagged[listed],
    })  # fmt: skip


def class_noise(given: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """cleanlab's per-class estimate: the share of each given label that is wrong."""
    ranked = rank_classes_by_label_quality(labels=given, pred_probs=probabilities)
    return ranked.assign(label=[classes[i] for i in ranked["Class Index"]]).set_index("label")


def noise_table(noise: pd.DataFrame) -> pd.DataFrame:
    """Per class: cleanlab's count of its label issues and the share of its labels estimated wrong."""
    table = noise.sort_index()[["Label Issues", "Label Noise"]].round(4).reset_index()
    return table.set_axis(["label", "label_issues", "estimated_noise"], axis=1)


def summary(scored: pd.DataFrame, issues: pd.DataFrame, noise: pd.DataFrame) -> dict:
    """The DVC metric: counts people compare between runs (per class and per pair: the CSVs beside it)."""
    return {
        "photos": len(scored),
        "suspects": len(issues),
        "cleanlab_issues": int(issues["cleanlab_issue"].sum()),
        "reviewed": int((issues["reviewed"] != "").sum()),
        "estimated_noise": round(float(noise["Label Issues"].sum()) / len(scored), 4),
    }


if __name__ == "__main__":
    run_stage(main)
