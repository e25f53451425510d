"""clothing-classify serve: the API, bad uploads, every model variant, the page in Chromium, a bounded load."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import VARIANTS, chromium, free_port
from fastapi.testclient import TestClient
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from clothing.commands.cli import main as cli_main
from clothing.commands.cli import parser
from clothing.commands.loadtest import run_load
from clothing.commands.server import Limits, check_free, create_app
from clothing.files import read_table

LIMITS = Limits(max_files=3, max_file_bytes=100_000)
STARTUP_BOUND_S = 300  # loading TensorFlow and the model takes seconds; a hang is not waited out
SERVE = [sys.executable, "-m", "clothing.commands.cli", "serve", "--model", "models/model.keras"]  # as a user starts it


def photos_of(project: Path, count: int = 4) -> list[Path]:
    test = read_table(project / "data/split/test.csv")
    return [project / path for path in test["path"].head(count)]


def predicted_by_cli(model: Path, photos: list[Path], tmp_path: Path) -> dict[str, list[dict]]:
    """photo name -> ``clothing-classify predict --format json``'s predictions for it."""
    out = tmp_path / "predicted.json"
    assert (
        cli_main(["predict", "--model", str(model), "--format", "json", "--output", str(out), *map(str, photos)]) == 0
    )
    return {Path(r["file"]).name: r["predictions"] for r in json.loads(out.read_text())}


@pytest.fixture(scope="module")
def client(trained: Path) -> Iterator[TestClient]:
    with TestClient(create_app(trained / "models/model.keras", LIMITS)) as client:
        yield client


def upload(*photos: tuple[str, bytes]) -> list[tuple[str, tuple[str, bytes]]]:
    return [("files", photo) for photo in photos]


def test_health_and_page(client: TestClient) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["classes"] == ["Pants", "Shoes", "T-Shirt"]
    page = client.get("/")
    assert page.status_code == 200 and 'id="picker"' in page.text


def test_the_api_answers_as_predict_does(client: TestClient, trained: Path, tmp_path: Path) -> None:
    photos = photos_of(trained, 3)
    answer = client.post("/predict", files=upload(*[(p.name, p.read_bytes()) for p in photos]))
    assert answer.status_code == 200
    records = answer.json()
    assert [r["file"] for r in records] == [p.name for p in photos]
    assert {r["file"]: r["predictions"] for r in records} == predicted_by_cli(
        trained / "models/model.keras", photos, tmp_path
    )
    assert all(len(r["predictions"]) == 3 for r in records)
    assert (
        len(client.post("/predict?top_k=1", files=upload(("a.jpg", photos[0].read_bytes()))).json()[0]["predictions"])
        == 1
    )


def test_bad_uploads_get_a_4xx_with_one_line_and_the_server_keeps_serving(client: TestClient, trained: Path) -> None:
    good = photos_of(trained, 1)[0].read_bytes()
    bad = {
        "not an image": (upload(("notes.jpg", b"this is not a photo")), 415, "notes.jpg: not an image file"),
        "empty": (upload(("empty.jpg", b"")), 400, "empty.jpg: empty file"),
        "truncated": (upload(("cut.jpg", good[: len(good) // 2])), 400, "cut.jpg: cannot decode"),
        "too large": (upload(("big.jpg", good + b"\0" * LIMITS.max_file_bytes)), 413, "big.jpg: larger than"),
        "too many": (upload(*[(f"{i}.jpg", good) for i in range(4)]), 400, "Too many files"),
        "no files": ([], 400, "no photos"),
    }
    for name, (files, status, reason) in bad.items():
        answer = client.post("/predict", files=files) if files else client.post("/predict")
        detail = answer.json()["detail"]
        assert (answer.status_code, detail.startswith(reason)) == (status, True), name
        assert "\n" not in detail, name
    assert client.post("/predict?top_k=0", files=upload(("a.jpg", good))).status_code == 400
    assert client.post("/predict", files=upload(("a.jpg", good))).status_code == 200  # still serving


def test_a_request_over_the_body_limit_is_refused_before_it_is_parsed(client: TestClient, trained: Path) -> None:
    """Each file under its limit, but a request larger than all files at their limit: the length alone refuses it."""
    good = photos_of(trained, 1)[0].read_bytes()
    padding = {"note": "x" * LIMITS.max_body_bytes}  # a form field: no file limit applies to it
    answer = client.post("/predict", files=upload(("a.jpg", good)), data=padding)
    assert answer.status_code == 413 and answer.json()["detail"].startswith("request larger than")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap counts the stream
        yield b"--x\r\nContent-Disposition: form-data; name=note\r\n\r\n"
        for _ in range(LIMITS.max_body_bytes // 65536 + 2):
            yield b"x" * 65536

    streamed = client.post("/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert streamed.status_code == 413 and "content-length" not in streamed.request.headers
    assert client.post("/predict", files=upload(("a.jpg", good))).status_code == 200  # still serving


def test_a_port_whose_connections_are_in_time_wait_can_be_served_on(tmp_path: Path) -> None:
    """A server restarted right after it closed connections: uvicorn can bind, so the probe must agree."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client_side:
            accepted, _ = listener.accept()
            accepted.close()  # the server closes first: its end of the connection waits in TIME_WAIT
            client_side.recv(1)
    check_free("127.0.0.1", port)  # no "address already in use"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_tflite_variant_serves_as_predict_answers(quantized: Path, variant: str, tmp_path: Path) -> None:
    model = quantized / f"models/tflite/model_{variant}.tflite"
    photos = photos_of(quantized, 3)
    with TestClient(create_app(model, LIMITS)) as client:
        records = client.post("/predict", files=upload(*[(p.name, p.read_bytes()) for p in photos])).json()
    assert {r["file"]: r["predictions"] for r in records} == predicted_by_cli(model, photos, tmp_path)


@pytest.fixture()
def server(trained: Path) -> Iterator[str]:
    """``clothing-classify serve`` in its own process, as a user starts it."""
    port = free_port()
    command = [*SERVE, "--port", str(port)]
    process = subprocess.Popen(command, cwd=trained, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_BOUND_S  # a server that never answers fails the test, not CI
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    else:
        process.kill()
        _, stderr = process.communicate()
        pytest.fail(f"serve did not answer /health within {STARTUP_BOUND_S} s: {stderr[-500:]}")
    yield url
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0 and "Traceback" not in stderr, stderr  # Ctrl-C stops it cleanly


def test_serve_binds_this_machine_only_by_default() -> None:
    assert parser().parse_args(["serve"]).host == "127.0.0.1"


def test_a_port_in_use_is_one_clear_line(trained: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [*SERVE, "--port", str(port)]
        result = subprocess.run(command, cwd=trained, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr == f"error: cannot serve on 127.0.0.1:{port}: address already in use; try another --port\n"


def test_a_bounded_load_gets_no_errors_and_the_answers_of_predict(server: str, trained: Path, tmp_path: Path) -> None:
    photos = photos_of(trained)
    report = run_load(server, photos, clients=4, requests=40)
    # Every request answered within the client's 60 s (a later one raises in run_load), none an error.
    assert report["errors"] == 0
    expected = predicted_by_cli(trained / "models/model.keras", photos, tmp_path)
    assert report["answers"] == {name: [json.dumps(predictions)] for name, predictions in expected.items()}


def test_the_page_shows_each_photo_with_the_top_3_of_predict(server: str, trained: Path, tmp_path: Path) -> None:
    photos = photos_of(trained, 2)
    browser = chromium(tmp_path / "profile")
    try:
        browser.get(server)
        browser.find_element(By.ID, "picker").send_keys("\n".join(str(p) for p in photos))
        WebDriverWait(browser, 60).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".result")) == len(photos))
        shown = {
            result.get_attribute("data-file"): [
                {
                    "class": row.find_element(By.CLASS_NAME, "class").text,
                    "probability": float(row.find_element(By.CLASS_NAME, "probability").get_attribute("data-value")),
                }
                for row in result.find_elements(By.CLASS_NAME, "prediction")
            ]
            for result in browser.find_elements(By.CSS_SELECTOR, ".result")
        }
        status = browser.find_element(By.ID, "status").text
    finally:
        browser.quit()
    assert shown == predicted_by_cli(trained / "models/model.keras", photos, tmp_path)
    assert status == "Done: 2 photos."
