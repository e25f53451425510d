"""The in-browser page on the real test photos: agreement with predict's int8 top-1, and time per photo.

    python tools/web_benchmark.py [--site web/dist]      # after make repro and make web

A benchmark, not a test. It serves the built page from a local static server, gives it every
photo of data/split/test.csv in headless Chromium, and reads each card's classes and the page's
own time for the photo (decode, resize, MediaPipe's ImageClassifier). In the same run it times
predict's way with the same int8 model on one thread (the page's WebAssembly runs on one),
decode included. Prints one JSON summary; quote it with the commit and the CPU.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_web import StaticFiles, shown_on_the_page

from clothing.files import read_table
from clothing.models.classifier import load_classifier
from clothing.system import cpu_description

MODEL = Path("models/tflite/model_int8.tflite")


def predict_way(photos: list[Path]) -> tuple[list[str], np.ndarray, list[float]]:
    """predict's top-1, probabilities and milliseconds for each photo, one at a time, one thread."""
    classifier = load_classifier(MODEL, threads=1)
    classifier.predict_files(photos[:5])  # warm up
    rows, ms = [], []
    for photo in photos:
        started = time.perf_counter()
        rows.append(classifier.predict_files([photo])[0])
        ms.append(1000 * (time.perf_counter() - started))
    probabilities = np.array(rows)
    return classifier.info.top1(probabilities), probabilities, ms


def spread(ms: list[float]) -> dict[str, float]:
    return {"median": round(float(np.median(ms)), 1), "mean": round(float(np.mean(ms)), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=Path("web/dist"))
    args = parser.parse_args()
    photos = [Path(path).resolve() for path in read_table("data/split/test.csv")["path"]]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(StaticFiles, directory=args.site))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as profile:
        started = time.perf_counter()
        cards, status = shown_on_the_page(
            f"http://127.0.0.1:{httpd.server_address[1]}/", photos, Path(profile), bound_s=3600
        )
        driven_s = time.perf_counter() - started
    httpd.shutdown()
    if not status.startswith("Done"):
        sys.exit(f"error: the page did not finish: {status}")
    top1, probabilities, predict_ms = predict_way(photos)
    page_top1 = [card["predictions"][0][0] for card in cards]  # cards come in the order the photos were given
    page_ms = [card["ms"] for card in cards]
    ranked = np.sort(probabilities, axis=1)
    # Where the two disagree: predict's margin between its two likeliest classes (a near tie is small).
    disagree = {
        photo.name: round(float(margin[-1] - margin[-2]), 4)
        for photo, a, b, margin in zip(photos, page_top1, top1, ranked, strict=True)
        if a != b
    }
    labels = read_table("data/split/test.csv")["label"].tolist()
    print(json.dumps({
        "photos": len(photos),
        "status": status,
        "top1_agreement": round(1 - len(disagree) / len(photos), 4),
        "disagreements_predict_margin": disagree,
        "accuracy_page": round(float(np.mean(np.array(page_top1) == np.array(labels))), 4),
        "accuracy_predict": round(float(np.mean(np.array(top1) == np.array(labels))), 4),
        "page_ms_per_photo": spread(page_ms),
        "predict_ms_per_photo_one_thread": spread(predict_ms),
        # Chromium's start, the page's and model's load, the photos, and reading every card back through WebDriver.
        "driven_s": round(driven_s, 1),
        "site_mb": round(sum(p.stat().st_size for p in args.site.rglob("*") if p.is_file()) / 1e6, 1),
        "cpu": cpu_description(),
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
