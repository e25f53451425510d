"""Lay the clothing dataset's photos out as class folders, the layout your own photos come in.

    python -m clothing.commands.class_folders OUT [--classes T-Shirt Pants ...]

Reads data/raw (``dvc repro fetch`` with the default ``fetch.source``) and writes
OUT/<class>/<photo>.jpg for the classes named (default: the dataset's ten commonest), so
``dvc exp run -S fetch.source=OUT`` trains on real photos as a user's own folder would be
read (docs/own-photos.md). The labels are the dataset's own, spelled as clean normalises
them; the reviewed corrections (data/relabel.csv) are the default source's and are not applied.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tqdm import tqdm

from clothing.commands import command_parser
from clothing.data.sources import normalise_labels
from clothing.errors import PipelineError, exit_code
from clothing.files import atomic_dir, read_table

RAW = Path("data/raw")
TEN_CLASSES = ["T-Shirt", "Longsleeve", "Pants", "Shoes", "Shirt", "Dress", "Outwear", "Shorts", "Hat", "Skirt"]


def lay_out(out: Path, classes: list[str]) -> None:
    """OUT/<class>/<image>.jpg for every photo of data/raw labelled one of ``classes``."""
    if out.exists():
        raise PipelineError(f"{out}: exists; name a new folder")
    if not (RAW / "images.csv").is_file() or (RAW / "source.json").is_file():  # missing, or your own photos
        raise PipelineError(f"{RAW}: not the clothing dataset; run dvc repro fetch with the default fetch.source first")
    rows = read_table(RAW / "images.csv")
    rows["label"] = normalise_labels(rows["label"])
    unknown = sorted(set(classes) - set(rows["label"]))
    if unknown:
        raise PipelineError(f"{RAW}/images.csv: no photo labelled {unknown}")
    chosen = rows[
        rows["label"].isin(classes) & rows["image"].map(lambda image: (RAW / f"images/{image}.jpg").is_file())
    ]
    with atomic_dir(out) as tmp:
        for label in classes:
            (tmp / label).mkdir()
        for image, label in tqdm(zip(chosen["image"], chosen["label"], strict=True), total=len(chosen), unit="photo"):
            shutil.copyfile(RAW / f"images/{image}.jpg", tmp / label / f"{image}.jpg")
    print(f"{out}: {len(chosen)} photos in {len(classes)} class folders")
    print(f"train on them: dvc exp run -S fetch.source={out} evaluate quantize")


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("python -m clothing.commands.class_folders", __doc__)
    parser.add_argument("out", type=Path, help="a new folder to write")
    parser.add_argument("--classes", nargs="+", default=TEN_CLASSES, help="the classes (default: the ten commonest)")
    args = parser.parse_args(argv)
    return exit_code(lambda: lay_out(args.out, list(dict.fromkeys(args.classes))))


if __name__ == "__main__":
    sys.exit(main())
