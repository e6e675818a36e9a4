"""Photo files: finding them, decoding them safely into RGB, and making thumbnails."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

# HEIC/HEIF (phones) through pillow-heif, which applies the container's rotation itself; AVIF is Pillow's own.
pillow_heif.register_heif_opener()
PHOTO_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".hif", ".avif"}
)
DEFAULT_MAX_PIXELS = 100_000_000
# Far above any real photo (a 100-Mpx 16-bit TIFF is about 600 MB uncompressed, its JPEG a few dozen MB).
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
THUMBNAIL_QUALITY = 85
# decode_photo refuses by pixel count before decoding, with the caller's limit; Pillow's own, fixed bomb
# check (a warning at 89 Mpx, an error at 179 Mpx) would make that limit wrong in both directions.
Image.MAX_IMAGE_PIXELS = None


class BadPhoto(Exception):
    """A file that cannot become a photo document; the message is the reason shown to the user."""


@dataclass(frozen=True)
class PhotoFile:
    """A photo file found under a folder, or (with `problem` set) a path that could not be looked at:
    a file, or with `folder` set a folder that could not be listed."""

    path: Path
    relpath: str
    size: int = 0
    mtime: float = 0.0
    problem: str | None = None
    folder: bool = False


def walk_photos(root: Path, skipped: Counter[str] | None = None) -> Iterator[PhotoFile]:
    """Every photo file under root (sorted, hidden folders skipped), and each path that could not be read.

    Files of other types (videos, RAW, documents) are counted in `skipped` by suffix, so that nothing
    disappears without a word.
    """
    errors: list[OSError] = []
    for folder, subfolders, files in os.walk(root, onerror=errors.append):
        yield from _unlisted(root, errors)
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            suffix = Path(name).suffix.lower()
            if suffix not in PHOTO_SUFFIXES:
                if skipped is not None:
                    skipped[suffix or "(no suffix)"] += 1
                continue
            path = Path(folder, name)
            relpath = path.relative_to(root).as_posix()
            try:
                info = path.stat()
            except OSError as error:
                yield PhotoFile(path, relpath, problem=f"cannot stat: {error.strerror or error}")
                continue
            if not stat.S_ISREG(info.st_mode):  # a FIFO would block a reader, a device never end
                yield PhotoFile(path, relpath, problem="not a regular file (a pipe, device or socket)")
                continue
            yield PhotoFile(path, relpath, info.st_size, info.st_mtime)
    yield from _unlisted(root, errors)  # os.walk reports a folder it cannot list after its last yield too


def _unlisted(root: Path, errors: list[OSError]) -> Iterator[PhotoFile]:
    while errors:
        failure = errors.pop()
        path = Path(failure.filename)
        problem = f"cannot list folder: {failure.strerror}"
        yield PhotoFile(path, path.relative_to(root).as_posix(), problem=problem, folder=True)


def file_under(root: Path, relpath: str) -> Path | None:
    """root/relpath if that file exists and neither the stored path nor a symbolic link leads out of root."""
    relative = Path(relpath)
    if relative.is_absolute() or ".." in relative.parts:
        return None
    try:
        path = (root / relative).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a link loop
        return None
    return path if path.is_relative_to(root.resolve()) and path.is_file() else None


def display_path(path: str) -> str:
    """A path fit to print: bytes that are not UTF-8 become U+FFFD."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of a regular file of at most max_bytes; a pipe or device is refused before it is read."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # opening a FIFO must not wait for a writer
    except PermissionError:
        raise BadPhoto("permission denied") from None
    except OSError as error:
        raise BadPhoto(f"cannot read: {error.strerror or error}") from None
    with open(descriptor, "rb") as handle:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise BadPhoto("not a regular file (a pipe, device or socket)")
        if info.st_size > max_bytes:
            raise BadPhoto(f"file of {info.st_size:,} bytes, over the limit of {max_bytes:,} (--max-bytes)")
        try:
            data = handle.read(max_bytes + 1)
        except OSError as error:
            raise BadPhoto(f"cannot read: {error.strerror or error}") from None
    if len(data) > max_bytes:  # it grew while being read
        raise BadPhoto(f"file over the limit of {max_bytes:,} bytes (--max-bytes)")
    return data


def decode_photo(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, at_least: int | None = None) -> Image.Image:
    """Bytes to an upright RGB image, or BadPhoto with a reason a person understands.

    With `at_least`, a JPEG is decoded at the smallest of its DCT scales (1/2, 1/4, 1/8 of the full size)
    whose sides are still at least that many pixels: a 12-megapixel photo decodes several times faster,
    for a model input or a thumbnail that needs far fewer pixels.
    """
    return decode_photo_scaled(data, max_pixels, at_least)[0]


def decode_photo_scaled(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, at_least: int | None = None
) -> tuple[Image.Image, tuple[int, int]]:
    """decode_photo, and the photo's full size (upright) whatever scale it was decoded at."""
    if not data:
        raise BadPhoto("empty file (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise BadPhoto("not an image (unrecognised format)") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise BadPhoto(f"unreadable image header: {error}") from None
    pixels = image.width * image.height
    if pixels > max_pixels:
        raise BadPhoto(
            f"refused as a decompression bomb: {image.width}x{image.height} = {pixels:,} pixels (limit {max_pixels:,})"
        )
    full_size = image.size
    try:
        image.seek(0)  # the first frame of an animation
        if at_least is not None and image.format == "JPEG":
            image.draft(image.mode, (at_least, at_least))
        image.load()
        scale = image.size
        upright = ImageOps.exif_transpose(image)
        if upright.size != scale:  # turned a quarter: so is the full size
            full_size = full_size[::-1]
        return to_rgb(upright), full_size
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise BadPhoto(f"corrupt or truncated image: {error}") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB: transparency over white, CMYK, 16-bit and float greyscale scaled."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # Scaled by Pillow in C, 4 bytes a pixel at most: no float64 copies (8 bytes a pixel, several times over).
        wide = image.convert("F" if image.mode == "F" else "I")
        low_high = wide.getextrema()  # one band: (low, high)
        peak = float(low_high[1])  # type: ignore[arg-type]
        top = max(peak, 1.0) if image.mode == "F" else 255.0 if peak <= 255 else 65535.0
        grey = wide.point(lambda value: value * (255.0 / top))
        del wide
        return grey.convert("L").convert("RGB")
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
