"""``clothing-classify serve``: the classifier over HTTP, and a page to try it on photos.

    GET  /          a page: drop or pick photos, see each with its top-3 classes
    GET  /browser/  the in-browser page (``make web``: web/dist/), if built: the int8 model
                    runs on the user's device, and its photos never reach this server
    GET  /health    {"status": "ok", "model": ..., "classes": [...]}
    POST /predict   multipart field ``files`` (one or more images), ``?top_k=3``:
                    the same JSON records as ``clothing-classify predict --format json``

A bad upload (not an image, empty, truncated, too large, too many files) is a 4xx whose
``detail`` is one line naming the file; the server keeps serving. Photos are decoded and
resized exactly as ``predict`` does (:func:`clothing.data.images.load_image`), so both answer
alike for the same file. One model call runs at a time: the LiteRT interpreter is not
thread-safe, and on a small CPU a second concurrent call would only share its cores.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile

from clothing.data.images import ImageError, load_image
from clothing.errors import PipelineError
from clothing.models.classifier import Classifier, load_classifier
from clothing.models.results import json_records, ranked


@dataclass(frozen=True)
class Limits:
    max_files: int = 16
    max_file_bytes: int = 20 * 1024 * 1024

    @property
    def max_body_bytes(self) -> int:
        """The most a request may send: every file at its limit, and room for the form's own lines."""
        return self.max_files * self.max_file_bytes + FORM_OVERHEAD


FORM_OVERHEAD = 64 * 1024
# The page's files: index.html, and its look and cards (page.css, cards.js), which the in-browser page shares.
STATIC = Path(str(resources.files("clothing.commands").joinpath("static")))


def create_app(model: Path, limits: Limits = Limits(), threads: int | None = None, web: Path | None = None) -> FastAPI:
    classifier = load_classifier(model, threads=threads)
    one_at_a_time = threading.Lock()
    page = (STATIC / "index.html").read_text()
    app = FastAPI(title="clothing-classify", docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if web is not None:
        app.mount("/browser", StaticFiles(directory=web, html=True), name="browser")

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": model.name, "classes": classifier.info.classes}

    @app.post("/predict")
    async def predict(request: Request, top_k: int = 3) -> list[dict]:
        if not 1 <= top_k <= len(classifier.info.classes):
            raise HTTPException(400, f"top_k must be between 1 and {len(classifier.info.classes)}")
        uploads = await _uploads(request, limits)
        images = [await _decoded(upload, classifier, limits) for upload in uploads]

        def forward() -> np.ndarray:
            with one_at_a_time:
                return classifier.predict(np.stack(images))

        probabilities = await run_in_threadpool(forward)
        names = [upload.filename or f"file{i}" for i, upload in enumerate(uploads)]
        return json_records(ranked(list(zip(names, probabilities, strict=True)), classifier.info.classes, top_k, 0.0))

    return app


async def _uploads(request: Request, limits: Limits) -> list[UploadFile]:
    # Starlette answers a malformed form, or too many files, with a 400 of one line itself.
    form = await _capped(request, limits.max_body_bytes).form(max_files=limits.max_files, max_fields=limits.max_files)
    uploads = [item for item in form.getlist("files") if isinstance(item, UploadFile)]
    if not uploads:
        raise HTTPException(400, "no photos: send one or more as multipart/form-data, field 'files'")
    return uploads


def _capped(request: Request, limit: int) -> Request:
    """``request``, refused with a 413 before its body is read if it says it is too large, or while it streams past."""
    too_large = HTTPException(413, f"request larger than {limit // 2**20} MiB: send fewer or smaller photos")
    if int(request.headers.get("content-length") or 0) > limit:
        raise too_large
    received = 0

    async def receive() -> dict:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > limit:  # chunked uploads say no length: count as they come
            raise too_large
        return message

    return Request(request.scope, receive)


async def _decoded(upload: UploadFile, classifier: Classifier, limits: Limits) -> np.ndarray:
    data = await upload.read(limits.max_file_bytes + 1)
    if len(data) > limits.max_file_bytes:
        raise HTTPException(413, f"{upload.filename}: larger than {limits.max_file_bytes // 2**20} MiB")
    try:
        return await run_in_threadpool(load_image, data, classifier.info.image_size)
    except ImageError as error:
        status = 415 if str(error) == "not an image file" else 400
        raise HTTPException(status, f"{upload.filename}: {error}") from None


def serve(model: Path, host: str, port: int, threads: int | None = None, web: Path | None = None) -> None:
    """Serve until Ctrl-C (uvicorn finishes the requests in flight, then returns)."""
    import uvicorn

    check_free(host, port)
    if web is not None and not (web / "index.html").is_file():
        raise PipelineError(f"{web}: no built page; make web builds it")
    app = create_app(model, threads=threads, web=web)
    browser = f", the in-browser page on http://{host}:{port}/browser/" if web else ""
    print(f"serving {model} on http://{host}:{port}/{browser} (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def check_free(host: str, port: int) -> None:
    """One clear line, before the model loads, if the address cannot be served on."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # As uvicorn binds: a port whose last connections are still in TIME_WAIT can be served on again.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            reason = (error.strerror or str(error)).lower()
            raise PipelineError(f"cannot serve on {host}:{port}: {reason}; try another --port") from None
