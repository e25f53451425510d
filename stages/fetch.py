"""fetch: ``fetch.source`` -> data/raw/ (images.csv, images/), the layout clean reads.

An archive description (.yaml, the default: the clothing dataset): each mirror folder from
params that holds the archive is tried, then its URL. Whatever the source, the extracted
content must match the description's ``content_sha256``; data/raw appears only once it does.

Your own photos (a folder or a CSV, clothing.data.sources): copied into data/raw/images/
under their paths in the source, with images.csv naming each one's class, group and given
split, skipped.csv what was passed over, and source.json the content's digest.
"""

from __future__ import annotations

import shutil
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import pandas as pd
import requests
from pydantic import Field, NonNegativeInt, PositiveFloat
from tqdm import tqdm

from clothing.data.sources import SKIPPED_COLUMNS, Listing, list_photos
from clothing.errors import PipelineError, run_stage
from clothing.files import atomic_dir, tree_digest, write_csv, write_json
from clothing.params import Section, load_section, mirror_folders

OUT = Path("data/raw")


class FetchParams(Section):
    source: str  # an archive description (.yaml), a folder of photos or a CSV
    retries: NonNegativeInt
    timeout_s: PositiveFloat


class ArchiveSource(Section):
    url: str
    file: str  # its name in a mirror folder
    # SHA-256 of the extracted files' paths and contents (clothing.files.tree_digest).
    content_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class SourceError(Exception):
    """This source did not deliver the dataset; the next one may."""


class TransientError(Exception):
    """A download failure worth retrying."""


def main() -> None:
    params = load_section("fetch", FetchParams)
    source = Path(params.source)
    if not source.exists():
        raise PipelineError(f"fetch.source: {source}: no such file or folder")
    if source.suffix.lower() in (".yaml", ".yml"):
        fetch_archive(load_section("archive", ArchiveSource, path=source), params)
        return
    try:
        listing = list_photos(source)
    except OSError as error:  # a folder that cannot be listed
        raise PipelineError(f"fetch.source: cannot read {error.filename} ({error.strerror})") from None
    copy_own_photos(listing, source)


def fetch_archive(archive: ArchiveSource, params: FetchParams) -> None:
    failures = []
    with atomic_dir(OUT) as dest:
        for name, get_archive in sources(archive, params, mirror_folders()):
            scratch = dest / ".download"
            scratch.mkdir()
            try:
                unpack_verified(get_archive(scratch), dest, archive.content_sha256)
            except SourceError as error:
                failures.append(f"{name}: {error}")
                print(f"fetch: {name}: {error}", file=sys.stderr)
                continue
            finally:
                shutil.rmtree(scratch)
            print(f"fetch: {OUT} from {name}, content verified")
            return
        raise PipelineError("could not fetch the dataset. " + "; ".join(failures))


def sources(
    archive: ArchiveSource, params: FetchParams, mirrors: list[Path]
) -> Iterator[tuple[str, Callable[[Path], Path]]]:
    """Yield (description, function that puts the archive in a scratch dir and returns its path)."""
    for mirror in mirrors:
        path = mirror / archive.file
        yield str(path), lambda _scratch, path=path: from_mirror(path)
    yield archive.url, lambda scratch: download(archive.url, params, scratch / archive.file)


def from_mirror(path: Path) -> Path:
    if not path.is_file():
        raise SourceError("not found")
    return path


def download(url: str, params: FetchParams, target: Path) -> Path:
    for attempt in range(params.retries + 1):
        try:
            stream_to_file(url, target, params.timeout_s)
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


def copy_own_photos(listing: Listing, source: Path) -> None:
    """The listed photos under data/raw/images/, and the tables clean reads beside them."""
    uncopied = []
    with atomic_dir(OUT) as dest:
        for row in tqdm(listing.photos.itertuples(), total=len(listing.photos), desc="copy", unit="photo"):
            origin = Path(row.origin)
            if origin.is_file():  # a missing one is clean's missing_image
                (dest / "images" / row.file).parent.mkdir(parents=True, exist_ok=True)
                try:
                    shutil.copyfile(origin, dest / "images" / row.file)
                except OSError as error:
                    uncopied.append((row.Index, row.image, row.label, f"cannot read the file ({error.strerror})"))
        skipped = pd.DataFrame([(*row[1:3], "unreadable_image", row[3]) for row in uncopied], columns=SKIPPED_COLUMNS)
        photos = listing.photos.drop(index=[row[0] for row in uncopied])
        given_split = ["split"] if (photos["split"] != "").any() else []
        write_csv(
            dest / "images.csv",
            photos.assign(kids="False")[["image", "sender_id", "label", "kids", "file", *given_split]],
        )
        write_csv(dest / "skipped.csv", pd.concat([listing.skipped, skipped], ignore_index=True))
        digest = tree_digest(dest)
        write_json(dest / "source.json", {"source": str(source), "layout": listing.kind, "content_sha256": digest})
    print(f"fetch: {OUT} from {source} ({listing.kind}): {len(listing.photos)} photos, content {digest[:12]}")


if __name__ == "__main__":
    run_stage(main)
