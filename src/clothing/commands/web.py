"""Build the in-browser page: a static folder that classifies photos on the user's device.

    python -m clothing.commands.web [--model models/tflite/model_int8.tflite] [--out web/dist]

``make web`` installs MediaPipe's web build from web/package-lock.json (``npm ci``) and runs
this. The folder holds the page (web/page/), MediaPipe's tasks-vision bundle and its
WebAssembly files, and the model as ``model.tflite``, whose metadata (labels,
normalisation; written by quantize) is all MediaPipe's ImageClassifier needs. The page
loads nothing from anywhere else, so any static file host serves it, and
``clothing-classify serve`` serves it at /browser/. Node is needed to build, not to use it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from clothing.commands import command_parser
from clothing.commands.server import STATIC
from clothing.errors import PipelineError, exit_code
from clothing.files import atomic_dir
from clothing.models.tflite_metadata import read_metadata

WEB = Path("web")
MODEL = Path("models/tflite/model_int8.tflite")


def build(model: Path, out: Path, web: Path = WEB) -> None:
    """Write the static site to ``out`` (all or nothing)."""
    tasks_vision = web / "node_modules/@mediapipe/tasks-vision"
    if not model.is_file():
        raise PipelineError(f"{model}: missing; dvc repro quantize writes it")
    try:
        described = read_metadata(model)
    except Exception:
        raise PipelineError(f"{model}: not a TFLite model with metadata (a quantize output)") from None
    if described is None:
        raise PipelineError(
            f"{model}: no metadata (labels, normalisation), which the page needs: a quantize output has it"
        )
    if not (tasks_vision / "vision_bundle.mjs").is_file():
        raise PipelineError(f"{tasks_vision}: missing; make web installs it (npm ci in {web})")
    with atomic_dir(out) as tmp:
        for page_file in sorted((web / "page").iterdir()):
            shutil.copyfile(page_file, tmp / page_file.name)
        (tmp / "static").mkdir()
        for shared in ("page.css", "cards.js"):  # serve's page looks and shows its cards the same way
            shutil.copyfile(STATIC / shared, tmp / "static" / shared)
        shutil.copytree(tasks_vision / "wasm", tmp / "tasks-vision/wasm")
        # An ES module under .js: hosts without a .mjs type (nginx's stock mime.types) would refuse to run it.
        shutil.copyfile(tasks_vision / "vision_bundle.mjs", tmp / "tasks-vision/vision_bundle.js")
        shutil.copyfile(tasks_vision / "package.json", tmp / "tasks-vision/package.json")  # its version and licence
        shutil.copyfile(model, tmp / "model.tflite")
        tmp.chmod(0o755)  # a temporary folder is the owner's only; a web server's user must read it
    size = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    print(f"{out}: {size / 1e6:.1f} MB, {len(described.classes)} classes from {model}; serve the folder as it is")


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("python -m clothing.commands.web", __doc__)
    parser.add_argument("--model", type=Path, default=MODEL, help="a .tflite with metadata (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=WEB / "dist", help="the folder to write (default: %(default)s)")
    args = parser.parse_args(argv)
    return exit_code(lambda: build(args.model, args.out))


if __name__ == "__main__":
    sys.exit(main())
