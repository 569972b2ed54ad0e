"""One user image file -> one uint8 image at a run's size: the only reader, for every entry point.

``aelab edit --image`` and the explorer's upload read files here, so the same photo
gets the same pixels, hence the same code, whichever way it comes in. The policy:

1. open only the formats in ``IMAGE_FORMATS`` (none of PIL's plugins that run an external
   program: EPS runs Ghostscript), and refuse a header that declares more than ``MAX_PIXELS``
   before any pixel is decoded (a decompression bomb costs nothing);
2. transparent pixels become white (not whatever colour they happen to hold), then the image is
   converted to the run's channel count (L, RGB or RGBA);
3. centre-crop to the run's aspect ratio, then resize (Lanczos when shrinking, bicubic when
   enlarging): a photo keeps its proportions rather than being stretched, which is what people
   expect from a "resize to fit" and what the model saw in training (square crops of faces).

Errors are ``ImageFileError`` (a ``DataError``) with an HTTP-like ``status``: 404 no such file,
413 too many pixels, 415 not a readable image or an unconvertible colour mode, 400 a run whose
channel count no image file has. The explorer answers with that status; the CLI prints one line.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aelab.errors import DataError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
"""What a ``folder:`` source reads."""
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "PPM")
"""Formats a user's image file may be in; only these PIL plugins are ever tried."""
MAX_PIXELS = 40_000_000
"""Image files whose header declares more pixels than this are refused before they are decoded."""
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


class ImageFileError(DataError):
    """A user's image file that cannot be used; ``status`` is what an HTTP server answers."""

    def __init__(self, message: str, status: int = 415):
        super().__init__(message)
        self.status = status


def _too_many_pixels(what: str, size: str) -> ImageFileError:
    return ImageFileError(f"{what} is {size}; at most {MAX_PIXELS:,} pixels are accepted", 413)


def open_image_file(source: str | Path | bytes, what: str = "image") -> PILImage:
    """The file as a loaded PIL image, decoded only after its header's size passed ``MAX_PIXELS``.

    ``Image.open`` reads just the header. PIL has its own, looser decompression-bomb guard in it:
    a warning past ~89 MP (an exception where warnings are errors) and an error past twice that.
    Both mean what ours does, so both are a 413 too; anything else that fails is not an image (415).
    (The warnings filters are left alone: they are process-wide and uploads are read in threads.)"""
    from PIL import Image

    if not isinstance(source, bytes | bytearray):
        path = Path(source)
        if not path.is_file():
            raise ImageFileError(f"image file not found: {path}", 404)
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, bytes | bytearray) else Path(source),
                         formats=IMAGE_FORMATS)
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise _too_many_pixels(what, f"{w}×{h} pixels")
        if w < 1 or h < 1:
            raise ImageFileError(f"{what} is {w}×{h} pixels: it has none", 415)
        img.load()
        return img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        count = re.search(r"\((\d+) pixels\)", str(exc))
        raise _too_many_pixels(what, f"{int(count[1]):,} pixels" if count else "larger than PIL's own limit") \
            from None
    except ImageFileError:
        raise
    except Exception:  # PIL raises many types for files that are not images
        raise ImageFileError(f"{what} is not a readable image (PNG, JPEG, GIF, BMP, WebP, TIFF, PPM)", 415) from None


def read_image_file(source: str | Path | bytes, shape: tuple[int, int, int], what: str | None = None) -> np.ndarray:
    """A file (path or its bytes) -> uint8 H×W×C of ``shape`` (a run's ``image_shape``): centre-cropped
    to its aspect ratio, resized and converted to its channel count (see the module's policy).

    ``what`` names the file in errors (default: the path, or "image" for bytes)."""
    from PIL import Image

    what = what or (str(source) if isinstance(source, str | Path) else "image")
    height, width, channels = shape
    mode = _MODES.get(channels)
    if mode is None:
        raise ImageFileError(f"this run takes {channels}-channel images; image files can only give 1, 3 or 4 "
                             f"channels", 400)
    img = open_image_file(source, what)
    try:
        if img.mode in ("RGBA", "LA", "P") and mode != "RGBA":
            rgba = img.convert("RGBA")
            img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        img = img.convert(mode)
    except (ValueError, OSError):  # modes PIL cannot convert (LAB, La ...)
        raise ImageFileError(f"{what}: colour mode {img.mode} cannot be converted to {mode}", 415) from None
    w, h = img.size
    target = width / height
    if w / h > target:  # too wide: crop the sides
        cw = max(1, round(h * target))
        img = img.crop(((w - cw) // 2, 0, (w - cw) // 2 + cw, h))
    elif w / h < target:
        ch = max(1, round(w / target))
        img = img.crop((0, (h - ch) // 2, w, (h - ch) // 2 + ch))
    img = img.resize((width, height), Image.Resampling.LANCZOS if img.size[0] > width else Image.Resampling.BICUBIC)
    arr = np.array(img, dtype=np.uint8)  # a writable copy (torch warns about read-only arrays)
    return arr[..., None] if arr.ndim == 2 else arr


@contextmanager
def open_image(path: str | Path) -> Iterator[Any]:
    """A PIL image opened from ``path`` (header read, pixels not yet decoded), or one-line DataError.

    Refuses decompression bombs from the header alone: a small file that
    declares more pixels than PIL's ``Image.MAX_IMAGE_PIXELS`` (89 million by
    default; PIL itself only warns up to twice that). Errors raised while the
    caller decodes inside the ``with`` become "not a readable image" too."""
    from PIL import Image

    try:
        im = Image.open(path, formats=IMAGE_FORMATS)  # no plugin that runs an outside program
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: too large to decode safely ({exc}); shrink the image first") from None
    except Exception as exc:  # PIL raises many types for malformed files (OSError, ValueError, SyntaxError...)
        raise DataError(f"{path}: not a readable image ({exc})") from None
    with im:
        width, height = im.size
        limit = Image.MAX_IMAGE_PIXELS
        if limit and width * height > limit:
            raise DataError(f"{path}: its header declares {width}×{height} pixels ({width * height:,}), more than "
                            f"the {limit:,} aelab decodes (a decompression bomb?); shrink the image first")
        try:
            yield im
        except DataError:
            raise
        except Exception as exc:  # decoding a damaged file: truncated data, bad chunks
            raise DataError(f"{path}: not a readable image ({exc})") from None
