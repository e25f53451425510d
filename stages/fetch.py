"""fetch: the clothing dataset archive -> data/raw/ (images.csv, images/).

Sources are tried in order: each mirror directory from params that holds the archive,
then the canonical URL. Whatever the source, the extracted content must match
``fetch.content_sha256``; data/raw appears only once it does.
"""

from __future__ import annotations

import shutil
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import requests
from pydantic import Field, NonNegativeInt, PositiveFloat
from tqdm import tqdm

from clothing.errors import PipelineError, run_stage
from clothing.files import atomic_dir, tree_digest
from clothing.params import Section, load_section, mirror_folders

OUT = Path("data/raw")


class FetchParams(Section):
    url: str
    archive: str
    # SHA-256 of the extracted files' paths and contents (clothing.files.tree_digest).
    content_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    retries: NonNegativeInt
    timeout_s: PositiveFloat


class SourceError(Exception):
    """This source did not deliver the dataset; the next one may."""


class TransientError(Exception):
    """A download failure worth retrying."""


def main() -> None:
    params = load_section("fetch", FetchParams)
    failures = []
    with atomic_dir(OUT) as dest:
        for name, get_archive in sources(params, mirror_folders()):
            scratch = dest / ".download"
            scratch.mkdir()
            try:
                unpack_verified(get_archive(scratch), dest, params.content_sha256)
            except SourceError as error:
                failures.append(f"{name}: {error}")
                print(f"fetch: {name}: {error}", file=sys.stderr)
                continue
            finally:
                shutil.rmtree(scratch)
            print(f"fetch: {OUT} from {name}, content verified")
            return
        raise PipelineError("could not fetch the dataset. " + "; ".join(failures))


def sources(params: FetchParams, mirrors: list[Path]) -> Iterator[tuple[str, Callable[[Path], Path]]]:
    """Yield (description, function that puts the archive in a scratch dir and returns its path)."""
    for mirror in mirrors:
        path = mirror / params.archive
        yield str(path), lambda _scratch, path=path: from_mirror(path)
    yield params.url, lambda scratch: download(params, scratch / params.archive)


def from_mirror(path: Path) -> Path:
    if not path.is_file():
        raise SourceError("not found")
    return path


def download(params: FetchParams, target: Path) -> Path:
    for attempt in range(params.retries + 1):
        try:
            stream_to_file(params.url, target, params.timeout_s)
            return target
        except TransientError as error:
            if attempt == params.retries:
                raise SourceError(f"{error} (gave up after {attempt + 1} attempts)") from None
            wait = min(2**attempt, 30)
            print(f"fetch: {error}; retrying in {wait}s", file=sys.stderr)
            time.sleep(wait)
    raise AssertionError("unreachable")


def stream_to_file(url: str, target: Path, timeout_s: float) -> None:
    try:
        with requests.get(url, stream=True, timeout=timeout_s) as response:
            if response.status_code >= 500:
                raise TransientError(f"HTTP {response.status_code}")
            if response.status_code >= 400:
                raise SourceError(f"HTTP {response.status_code}")
            expected = int(response.headers.get("Content-Length", 0)) or None
            received = 0
            with (
                open(target, "wb") as out,
                tqdm(total=expected, unit="B", unit_scale=True, desc="download") as bar,
            ):
                for chunk in response.iter_content(chunk_size=1 << 20):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except requests.RequestException as error:
        raise TransientError(f"download broke: {type(error).__name__}") from None
    if expected is not None and received != expected:
        raise TransientError(f"download broke after {received} of {expected} bytes")


def unpack_verified(archive: Path, dest: Path, content_sha256: str) -> None:
    """Extract the archive's single top-level folder into ``dest`` if its content matches."""
    unpacked = dest / ".unpack"
    try:
        with zipfile.ZipFile(archive) as zipped:
            for member in tqdm(zipped.infolist(), desc="extract", unit="file"):
                zipped.extract(member, unpacked)
        tops = list(unpacked.iterdir())
        if len(tops) != 1 or not tops[0].is_dir():
            raise SourceError("archive does not hold exactly one top-level folder")
        actual = tree_digest(tops[0])
        if actual != content_sha256:
            raise SourceError(f"content checksum mismatch: got {actual}, expected {content_sha256}")
        for required in ("images.csv", "images"):
            if not (tops[0] / required).exists():
                raise SourceError(f"archive has no {required}")
        for child in tops[0].iterdir():
            child.rename(dest / child.name)
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise SourceError(f"not a readable zip archive ({error})") from None
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)


if __name__ == "__main__":
    run_stage(main)
