"""``clothing-classify predict PATH...``: what is in these photos? (``serve``: the same over HTTP.)

Each bad file gets one line on stderr naming it and the reason; the good files in the
same call are still classified; the exit code is 1 if any file failed.
"""

from __future__ import annotations

import argparse
import csv
import glob
import io
import json
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from tqdm import tqdm

from clothing.commands import command_parser
from clothing.errors import PipelineError, exit_code
from clothing.models.results import json_records, ranked
from clothing.quiet import VERBOSE

if TYPE_CHECKING:
    from clothing.models.classifier import Classifier

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
# The project's own model, found from any folder: the package is installed from the repo (pip -e).
PROJECT_MODEL = Path(__file__).resolve().parents[2] / "models" / "model.keras"
BUILT_PAGE = Path("web/dist")  # make web's in-browser page, which serve offers at /browser/
BATCH = 32
T = TypeVar("T")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.verbose:
        os.environ[VERBOSE] = "1"
    return exit_code(lambda: predict(args) if args.command == "predict" else serve(args))


def parser() -> argparse.ArgumentParser:
    root = command_parser("clothing-classify", __doc__)
    commands = root.add_subparsers(dest="command", required=True)
    quiet = argparse.ArgumentParser(add_help=False)  # what every command takes
    quiet.add_argument("--verbose", action="store_true", help="also show TensorFlow's and LiteRT's start-up lines")
    predict = commands.add_parser(
        "predict", parents=[quiet], help="classify photos: files, directories or glob patterns"
    )
    predict.add_argument("paths", nargs="+", metavar="PATH")
    predict.add_argument(
        "--model", type=Path, help="a .keras or .tflite file (default: models/model.keras here, else the project's)"
    )
    predict.add_argument("--top-k", type=int, default=3, help="classes shown per photo (default: %(default)s)")
    predict.add_argument("--format", choices=("table", "json", "csv"), default="table")
    predict.add_argument("--output", type=Path, help="write here instead of standard output")
    predict.add_argument("--threads", type=int, help="TFLite interpreter threads (default: all usable cores)")
    predict.add_argument(
        "--min-confidence",
        type=float,
        default=0.0,
        metavar="P",
        help="mark a photo 'uncertain' when its top probability is below P (default: %(default)s, never)",
    )

    serve = commands.add_parser(
        "serve", parents=[quiet], help="an HTTP API (POST /predict) and a web page to try photos on"
    )
    serve.add_argument("--model", type=Path, help="a .keras or .tflite file (default: as predict)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="(default: %(default)s)")
    serve.add_argument("--threads", type=int, help="TFLite interpreter threads (default: all usable cores)")
    serve.add_argument(
        "--web",
        type=Path,
        help="the built in-browser page, served at /browser/ (default: web/dist if make web built it)",
    )
    return root


def serve(args: argparse.Namespace) -> int:
    from clothing.commands import server  # FastAPI and TensorFlow load only once the arguments are good

    web = args.web or (BUILT_PAGE if (BUILT_PAGE / "index.html").is_file() else None)
    server.serve(args.model or default_model(), args.host, args.port, threads=args.threads, web=web)
    return 0


def predict(args: argparse.Namespace) -> int:
    from clothing.files import atomic_file
    from clothing.models.classifier import load_classifier  # TensorFlow loads only once the arguments are good

    if args.top_k < 1:
        raise PipelineError("--top-k must be at least 1")
    if not 0 <= args.min_confidence <= 1:
        raise PipelineError("--min-confidence must be between 0 and 1")
    files, failures = expand(args.paths)
    classifier = load_classifier(args.model or default_model(), threads=args.threads)
    rows, bad = classify(classifier, files)
    failures += bad
    for path, reason in failures:
        print(f"error: {path}: {reason}", file=sys.stderr)
    top_k = min(args.top_k, len(classifier.info.classes))
    text = render(rows, classifier.info.classes, top_k, args.format, args.min_confidence)
    if args.output:
        with atomic_file(args.output) as tmp:
            tmp.write_text(text)
    else:
        sys.stdout.write(text)
    return 1 if failures else 0


def default_model() -> Path:
    """``models/model.keras`` in this folder, else the project's; one clear error if neither exists."""
    here = Path("models/model.keras")
    for candidate in (here, PROJECT_MODEL):
        if candidate.is_file():
            return candidate
    raise PipelineError(f"no model: looked for {here.resolve()} and {PROJECT_MODEL}; run `make repro` or pass --model")


def expand(patterns: Iterable[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files named, images found in directories (recursively), glob matches; and what was not found."""
    files: list[Path] = []
    failures: list[tuple[str, str]] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            files += found
            if not found:
                failures.append((pattern, "directory has no images"))
        elif path.exists():
            files.append(path)
        elif glob.has_magic(pattern):
            matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
            files += matches
            if not matches:
                failures.append((pattern, "pattern matches no files"))
        else:
            failures.append((pattern, "no such file or directory"))
    return list(dict.fromkeys(files)), failures


def classify(classifier: Classifier, files: list[Path]) -> tuple[list[tuple[Path, np.ndarray]], list[tuple[str, str]]]:
    """Predict in batches while the next photos decode; files that do not decode are reported, not fatal."""
    from clothing.data.images import ImageError, load_image
    from clothing.system import usable_cores

    def decode(path: Path) -> np.ndarray | str:
        try:
            return load_image(path, classifier.info.image_size)
        except ImageError as error:
            return str(error)

    def predict(good: list[tuple[Path, np.ndarray]]) -> list[tuple[Path, np.ndarray]]:
        probabilities = classifier.predict(np.stack([image for _, image in good]))
        return [(path, p) for (path, _), p in zip(good, probabilities, strict=True)]

    rows, failures, good = [], [], []
    with ThreadPoolExecutor(usable_cores()) as pool, tqdm(total=len(files), unit="img", disable=len(files) <= 1) as bar:
        for path, image in decoded_ahead(pool, decode, files, ahead=2 * BATCH):
            bar.update()
            if isinstance(image, str):
                failures.append((str(path), image))
                continue
            good.append((path, image))
            if len(good) == BATCH:
                rows += predict(good)
                good = []
        if good:
            rows += predict(good)
    return rows, failures


def decoded_ahead(
    pool: Executor, decode: Callable[[Path], T], files: list[Path], ahead: int
) -> Iterator[tuple[Path, T]]:
    """``(path, decode(path))`` in order, with up to ``ahead`` decodes running meanwhile (bounded memory)."""
    pending: deque[tuple[Path, Future[T]]] = deque()
    for path in files:
        pending.append((path, pool.submit(decode, path)))
        if len(pending) > ahead:
            done, future = pending.popleft()
            yield done, future.result()
    for done, future in pending:
        yield done, future.result()


def render(rows: list[tuple[Path, np.ndarray]], classes: list[str], top_k: int, fmt: str, min_confidence: float) -> str:
    """One record per photo: its top-k classes, and whether its top probability is below ``min_confidence``."""
    ranked_rows = ranked(rows, classes, top_k, min_confidence)
    if fmt == "json":
        return json.dumps(json_records(ranked_rows), indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["file", "rank", "class", "probability", "uncertain"])
        for f, top, unsure in ranked_rows:
            writer.writerows([f, rank, c, f"{p:.4f}", unsure] for rank, (c, p) in enumerate(top, start=1))
        return out.getvalue()
    width = max((len(f) for f, _, _ in ranked_rows), default=4)
    lines = [
        f"{f:<{width}}  " + ("uncertain: " if unsure else "") + "  ".join(f"{c} {p:.1%}" for c, p in top)
        for f, top, unsure in ranked_rows
    ]
    return "".join(line + "\n" for line in lines)


if __name__ == "__main__":
    sys.exit(main())
