"""Reading photos: one place that decides what a usable image is."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from pillow_heif import register_heif_opener
from tqdm import tqdm

from clothing.system import usable_cores

register_heif_opener()  # phones' HEIC/HEIF photos; Pillow itself reads AVIF


class ImageError(Exception):
    """This file is not a usable image; the message says why."""


def open_rgb(source: str | Path | bytes, size: int | None = None) -> Image.Image:
    """Decode a file (or an upload's bytes) fully into an upright RGB image, or raise :class:`ImageError`.

    With ``size``, the image comes back resized to ``size`` x ``size``, and a large JPEG is
    decoded at the smallest scale (1/2, 1/4, 1/8) that keeps both sides at least ``size``:
    a 10000 x 10000 photo decodes in milliseconds instead of seconds, and images near the
    model's size are unaffected.
    """
    if isinstance(source, bytes):
        stream = io.BytesIO(source)
        if not source:
            raise ImageError("empty file")
    else:
        stream = Path(source)
        if not stream.is_file():
            raise ImageError("no such file")
        if stream.stat().st_size == 0:
            raise ImageError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(stream) as image:
                if size is not None:
                    image.draft("RGB", (size, size))
                image.load()
                ImageOps.exif_transpose(image, in_place=True)
                if size is None:
                    return _to_rgb(image)  # a copy, which outlives the file
                # No copy of the full-size photo: each would cost half as much as decoding it.
                rgb = image if image.mode == "RGB" else _to_rgb(image)
                return rgb.resize((size, size), Image.BILINEAR)
    except UnidentifiedImageError:
        raise ImageError("not an image file") from None
    except Image.DecompressionBombError:
        raise ImageError("image too large to decode safely") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"cannot decode ({error})") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Composite onto white, as a viewer would show it, instead of dropping alpha to black.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(source: str | Path | bytes, size: int) -> np.ndarray:
    """The photo as a ``size`` x ``size`` RGB uint8 array: the one resize every stage uses."""
    return np.asarray(open_rgb(source, size))


def load_images(paths: Sequence[str | Path], size: int, desc: str = "decode") -> np.ndarray:
    """Decode and resize many photos in parallel (PIL releases the GIL), with a progress bar."""
    with ThreadPoolExecutor(max_workers=usable_cores()) as pool:
        arrays = list(tqdm(pool.map(lambda p: load_image(p, size), paths), total=len(paths), desc=desc, unit="img"))
    return np.stack(arrays) if arrays else np.zeros((0, size, size, 3), np.uint8)
