"""Photo files: finding them, decoding them safely into RGB, and making thumbnails."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
# Pillow's own bomb limit is about 89 Mpx; the check below refuses before any pixel is decoded.
DEFAULT_MAX_PIXELS = 100_000_000
THUMBNAIL_QUALITY = 85


class BadPhoto(Exception):
    """A file that cannot become a photo document; the message is the reason shown to the user."""


@dataclass(frozen=True)
class PhotoFile:
    """A photo file found under a folder, or (with `problem` set) a path that could not be looked at."""

    path: Path
    relpath: str
    size: int = 0
    mtime: float = 0.0
    problem: str | None = None


def walk_photos(root: Path) -> Iterator[PhotoFile]:
    """Every photo file under root (sorted, hidden folders skipped), and each path that could not be read."""
    errors: list[OSError] = []
    for folder, subfolders, files in os.walk(root, onerror=errors.append):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or Path(name).suffix.lower() not in PHOTO_SUFFIXES:
                continue
            path = Path(folder, name)
            relpath = path.relative_to(root).as_posix()
            try:
                info = path.stat()
            except OSError as error:
                yield PhotoFile(path, relpath, problem=f"cannot stat: {error.strerror or error}")
                continue
            yield PhotoFile(path, relpath, info.st_size, info.st_mtime)
        while errors:
            failure = errors.pop()
            path = Path(failure.filename)
            yield PhotoFile(path, path.relative_to(root).as_posix(), problem=f"cannot list folder: {failure.strerror}")


def file_under(root: Path, relpath: str) -> Path | None:
    """root/relpath if that file exists and the stored path does not climb out of root."""
    relative = Path(relpath)
    if relative.is_absolute() or ".." in relative.parts:
        return None
    path = root / relative
    return path if path.is_file() else None


def display_path(path: str) -> str:
    """A path fit to print: bytes that are not UTF-8 become U+FFFD."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except PermissionError:
        raise BadPhoto("permission denied") from None
    except OSError as error:
        raise BadPhoto(f"cannot read: {error.strerror or error}") from None


def decode_photo(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Bytes to an upright RGB image, or BadPhoto with a reason a person understands."""
    if not data:
        raise BadPhoto("empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as error:
            raise BadPhoto(f"refused as a decompression bomb: {error}") from None
        except UnidentifiedImageError:
            raise BadPhoto("not an image (unrecognised format)") from None
        except (OSError, ValueError, SyntaxError) as error:
            raise BadPhoto(f"unreadable image header: {error}") from None
        pixels = image.width * image.height
        if pixels > max_pixels:
            raise BadPhoto(
                f"refused as a decompression bomb: {image.width}x{image.height} = {pixels:,} pixels "
                f"(limit {max_pixels:,})"
            )
        try:
            image.seek(0)  # the first frame of an animation
            image.load()
            rgb = to_rgb(ImageOps.exif_transpose(image))
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombWarning) as error:
            raise BadPhoto(f"corrupt or truncated image: {error}") from None
    return rgb


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB: transparency over white, CMYK, 16-bit and float greyscale scaled."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float64)
        peak = float(values.max(initial=0))
        top = max(peak, 1.0) if image.mode == "F" else 255.0 if peak <= 255 else 65535.0
        grey = np.clip(values / top * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def make_thumbnail(image: Image.Image, long_side: int) -> bytes:
    """A JPEG whose longer side is at most long_side pixels."""
    thumbnail = image.copy()
    thumbnail.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    thumbnail.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return buffer.getvalue()
