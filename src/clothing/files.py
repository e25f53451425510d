"""Atomic outputs and content digests.

Every stage writes through these helpers so that a crash or Ctrl-C never leaves a
half-written file or directory where DVC (or the next stage) would read it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd  # only for annotations: predict must start without importing pandas


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces ``target`` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path that replaces ``target`` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def zip_entry(name: str) -> zipfile.ZipInfo:
    """A zip member dated 1980-01-01 (the earliest a zip can say): the same content gives the same bytes."""
    return zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))


def write_json(path: str | Path, data: Any) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_table(source: str | Path | io.StringIO, text_columns: Iterable[str] | None = None) -> pd.DataFrame:
    """A CSV of the pipeline, each cell as written: a label "NA" or "None" stays that label.

    Every column is text, or only ``text_columns`` are and the others numbers (probabilities).
    """
    import pandas as pd

    dtype = str if text_columns is None else dict.fromkeys(text_columns, str)
    return pd.read_csv(source, dtype=dtype, keep_default_na=False)


def write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    with atomic_file(path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_digest(root: str | Path) -> str:
    """SHA-256 over every file's relative path and content digest, in sorted order.

    Unlike the archive's own checksum, this is the same for any archive of the same
    files, whatever its timestamps or compression.
    """
    root = Path(root)
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:
        relative = path.relative_to(root).as_posix()
        digest.update(f"{relative}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()
