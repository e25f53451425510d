"""fetch: from a mirror folder and over HTTP from a server on 127.0.0.1, good and bad."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import Archive, error_line, stage, update_params, update_source


class Server:
    """Serves the tiny archive in several ways of succeeding and failing."""

    def __init__(self, archive: Archive, tampered: bytes) -> None:
        self.good = archive.zip_path.read_bytes()
        self.tampered = tampered
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                server.respond(self, self.path, server.hits[self.path])

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"

    def respond(self, handler: BaseHTTPRequestHandler, path: str, hit: int) -> None:
        body = self.tampered if path == "/tampered.zip" else self.good
        if path == "/missing.zip":
            handler.send_error(404)
            return
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if path == "/broken.zip" or (path == "/flaky.zip" and hit == 1):
            handler.wfile.write(body[: len(body) // 2])  # then the connection drops
            return
        if path == "/slow.zip":
            for start in range(0, len(body), 1024):
                handler.wfile.write(body[start : start + 1024])
                time.sleep(0.05)
            return
        handler.wfile.write(body)


@pytest.fixture()
def server(archive: Archive, tmp_path: Path) -> Iterator[Server]:
    tampered_zip = tmp_path / "tampered.zip"
    with zipfile.ZipFile(archive.zip_path) as good, zipfile.ZipFile(tampered_zip, "w") as bad:
        for item in good.infolist():
            data = good.read(item)
            bad.writestr(item, data + b"!" if item.filename.endswith("images.csv") else data)
    server = Server(archive, tampered_zip.read_bytes())
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    server.httpd.shutdown()


def use_url(project: Path, url: str, retries: int = 0) -> None:
    update_params(project, {"mirrors": [str(project / "no-mirror-here")], "fetch": {"retries": retries}})
    update_source(project, {"url": url})


def leftovers(project: Path) -> list[str]:
    """What fetch left in data/ (the committed corrections file is not fetch's)."""
    return sorted(p.name for p in (project / "data").iterdir() if p.name != "relabel.csv")


def test_fetch_from_mirror(project: Path) -> None:
    result = stage(project, "fetch")
    raw = project / "data/raw"
    assert (raw / "images.csv").is_file()
    assert len(list((raw / "images").glob("*.jpg"))) == 30 + 6
    assert "content verified" in result.stdout
    assert leftovers(project) == ["raw"]


def test_fetch_over_http_when_mirror_lacks_archive(project: Path, server: Server) -> None:
    use_url(project, f"{server.url}/good.zip")
    stage(project, "fetch")
    assert (project / "data/raw/images.csv").is_file()
    assert server.hits == {"/good.zip": 1}


def test_fetch_retries_a_download_that_broke(project: Path, server: Server) -> None:
    use_url(project, f"{server.url}/flaky.zip", retries=2)
    result = stage(project, "fetch")
    assert server.hits["/flaky.zip"] == 2
    assert "retrying" in result.stderr
    assert (project / "data/raw/images.csv").is_file()


def test_fetch_fails_cleanly_when_every_download_breaks(project: Path, server: Server) -> None:
    use_url(project, f"{server.url}/broken.zip", retries=1)
    result = stage(project, "fetch", check=False)
    assert result.returncode == 1
    line = error_line(result)
    assert line.startswith("error: could not fetch the dataset")
    assert "download broke" in line and "gave up after 2 attempts" in line
    assert leftovers(project) == []


def test_fetch_rejects_content_that_fails_verification(project: Path, server: Server) -> None:
    use_url(project, f"{server.url}/tampered.zip")
    result = stage(project, "fetch", check=False)
    assert "content checksum mismatch" in error_line(result)
    assert leftovers(project) == []


def test_fetch_failure_keeps_previous_raw_data(project: Path, server: Server) -> None:
    (project / "data/raw").mkdir(parents=True)
    (project / "data/raw/marker").write_text("kept")
    use_url(project, f"{server.url}/missing.zip")
    result = stage(project, "fetch", check=False)
    assert "HTTP 404" in error_line(result)
    assert (project / "data/raw/marker").read_text() == "kept"


def test_fetch_uses_mirror_before_url(project: Path, server: Server) -> None:
    update_source(project, {"url": f"{server.url}/good.zip"})
    stage(project, "fetch")
    assert server.hits == {}


def test_fetch_interrupted_leaves_nothing_behind(project: Path, server: Server) -> None:
    use_url(project, f"{server.url}/slow.zip")
    # A shell starts background jobs with SIGINT ignored, and the stage would inherit that.
    # A handler set here resets to the default in the child, so Ctrl-C reaches it as it would a user's run.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen([sys.executable, "stages/fetch.py"], cwd=project, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    while not server.hits.get("/slow.zip"):
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate()
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1] == "error: interrupted"
    assert leftovers(project) == []


def test_a_bad_archive_description_names_the_key(project: Path) -> None:
    update_source(project, {"content_sha256": "abc"})
    line = error_line(stage(project, "fetch", check=False))
    assert line.startswith("error: sources/clothing-dataset.yaml: archive.content_sha256: String should match pattern")
