"""The in-browser page: built from the tiny int8 model, served as static files, run by MediaPipe in Chromium."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, chromium
from fastapi.testclient import TestClient
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from clothing.commands.server import create_app
from clothing.commands.web import build, main
from clothing.errors import PipelineError
from clothing.files import read_table
from clothing.models.classifier import load_classifier

PAGE_BOUND_S = 120  # loading the WebAssembly and the model takes seconds; a hang is not waited out
NEAR_TIE = 0.05  # top-1 may differ from predict's only where predict's two best are this close


@pytest.fixture(scope="module")
def site(quantized: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built(quantized, tmp_path_factory.mktemp("web") / "dist")


def built(quantized: Path, out: Path) -> Path:
    build(quantized / "models/tflite/model_int8.tflite", out, web=REPO / "web")
    return out


class StaticFiles(SimpleHTTPRequestHandler):
    """A plain static file host, as the page would be put on; quiet."""

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def static_host(site: Path) -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(StaticFiles, directory=site))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def shown_on_the_page(
    url: str, photos: list[Path], profile: Path, before: str = "", bound_s: float = PAGE_BOUND_S
) -> tuple[list, str]:
    """Each photo's card, in the order given ({"predictions": [(class, probability)], "ms": the page's
    time}, or its error), and the status line at the end. tools/web_benchmark.py reads the real test
    photos with it."""
    browser = chromium(profile)
    try:
        if before:
            browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": before})
        browser.get(url)
        status = browser.find_element(By.ID, "status")
        WebDriverWait(browser, PAGE_BOUND_S).until(lambda _: status.text != "Loading the model…")
        if status.text != "Ready.":
            return [], status.text
        browser.find_element(By.ID, "picker").send_keys("\n".join(str(p) for p in photos))
        WebDriverWait(browser, bound_s).until(lambda _: status.text.startswith("Done"))
        return [read_card(card) for card in browser.find_elements(By.CSS_SELECTOR, ".result")], status.text
    finally:
        browser.quit()


def read_card(card: WebElement) -> dict | str:
    if "failed" in card.get_attribute("class"):
        return card.find_element(By.CLASS_NAME, "error").text
    rows = card.find_elements(By.CLASS_NAME, "prediction")
    predictions = [
        (row.find_element(By.CLASS_NAME, "class").text,
         float(row.find_element(By.CLASS_NAME, "probability").get_attribute("data-value")))
        for row in rows
    ]  # fmt: skip
    return {"predictions": predictions, "ms": float(card.get_attribute("data-ms"))}


def test_the_page_classifies_each_photo_as_predict_does(quantized: Path, static_host: str, tmp_path: Path) -> None:
    photos = [quantized / path for path in read_table(quantized / "data/split/test.csv")["path"]]
    (tmp_path / "notes.jpg").write_text("not a photo\n")
    cards, status = shown_on_the_page(static_host, [*photos, tmp_path / "notes.jpg"], tmp_path / "profile")

    assert status == f"Done: {len(photos)} photos, 1 not an image."
    assert cards.pop() == "Not an image this browser can read."
    model = load_classifier(quantized / "models/tflite/model_int8.tflite")
    probabilities = model.predict_files(photos)
    for photo, predicted, card in zip(photos, probabilities, cards, strict=True):
        shown = card["predictions"]
        assert len(shown) == 3
        assert shown[0][0] == model.info.classes[predicted.argmax()] or (
            np.sort(predicted)[-1] - np.sort(predicted)[-2] < NEAR_TIE
        ), (photo.name, shown, predicted)
        assert abs(shown[0][1] - predicted.max()) < NEAR_TIE  # the same model, the photo resized a little differently


def test_a_browser_without_webassembly_is_told_so(static_host: str, tmp_path: Path) -> None:
    cards, status = shown_on_the_page(static_host, [], tmp_path / "profile", before="delete window.WebAssembly;")
    assert cards == [] and status.startswith("This browser cannot run WebAssembly")


def test_serve_offers_the_page_at_browser(quantized: Path, site: Path) -> None:
    with TestClient(create_app(quantized / "models/tflite/model_int8.tflite", web=site)) as client:
        assert "in your browser" in client.get("/browser/").text
        wasm = client.get("/browser/tasks-vision/wasm/vision_wasm_internal.wasm")
        assert wasm.headers["content-type"] == "application/wasm"  # WebAssembly's streaming compile needs it
        bundle = client.get("/browser/tasks-vision/vision_bundle.js")  # a module script needs a JavaScript type
        assert bundle.headers["content-type"].startswith("text/javascript")
        assert "in your browser" not in client.get("/").text  # the server's own page stays the default


def test_a_build_without_mediapipe_installed_is_one_line_and_writes_nothing(quantized: Path, tmp_path: Path) -> None:
    (tmp_path / "web/page").mkdir(parents=True)
    with pytest.raises(PipelineError, match="missing; make web installs it"):
        build(quantized / "models/tflite/model_int8.tflite", tmp_path / "dist", web=tmp_path / "web")
    assert not (tmp_path / "dist").exists()


def test_the_build_command_exits_0_and_its_folder_is_readable_by_a_web_server(quantized: Path, tmp_path: Path) -> None:
    model = quantized / "models/tflite/model_int8.tflite"
    assert main(["--model", str(model), "--out", str(tmp_path / "dist")]) == 0
    assert (tmp_path / "dist").stat().st_mode & 0o777 == 0o755


def test_a_model_that_is_not_tflite_is_one_line(trained: Path, tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="not a TFLite model with metadata"):
        build(trained / "models/model.keras", tmp_path / "dist", web=REPO / "web")
