"""Photo files: finding them, decoding them safely into RGB, and making thumbnails."""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import threading
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath

import pillow_heif
from PIL import Image, UnidentifiedImageError

from clipsearch.display import without_bidi_controls

# HEIC/HEIF (phones) through pillow-heif, which applies the container's rotation itself; AVIF is Pillow's own.
pillow_heif.register_heif_opener()
PHOTO_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".hif", ".avif"}
)
DEFAULT_MAX_PIXELS = 100_000_000
# Far above any real photo (a 100-Mpx 16-bit TIFF is about 600 MB uncompressed, its JPEG a few dozen MB).
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
THUMBNAIL_QUALITY = 85
# A photo for the model is decoded at no less than twice its input side: enough for its resize and crop.
DECODE_MARGIN = 2
# Pillow keeps these modes in 1 or 2 bytes a pixel, every other mode in 4.
BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
UNAVERAGED_MODES = ("1", "P", "PA")  # bits and palette indexes: converted before they are shrunk
ALPHA_MODES = ("LA", "RGBA", "PA")  # shrunk through a full-size premultiplied copy (Image.reduce's way)
# Codecs that decode into a frame of their own, which Pillow then copies.
FRAME_COPYING_FORMATS = ("WEBP", "HEIF", "AVIF")
ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}  # EXIF orientation: what turns the stored pixels upright (ImageOps.exif_transpose's table)
ORIENTATION = 0x0112
# decode_photo refuses by pixel count before decoding, with the caller's limit; Pillow's own, fixed bomb
# check (a warning at 89 Mpx, an error at 179 Mpx) would make that limit wrong in both directions.
Image.MAX_IMAGE_PIXELS = None
# A broken EXIF block is a fact read_facts reports (the file time stands in), not a warning on stderr for
# each such photo. A filter, not catch_warnings: the loader reads photos in threads.
warnings.filterwarnings("ignore", category=UserWarning, module="PIL.TiffImagePlugin")


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
    """A path fit to print: bytes that are not UTF-8 become U+FFFD, and bidirectional controls are left out."""
    return without_bidi_controls(path.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))


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


def decode_photo(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, at_least: int | None = None, max_memory: int | None = None
) -> Image.Image:
    """Bytes to an upright RGB image, or BadPhoto with a reason a person understands.

    With `at_least`, the photo is decoded, or shrunk as soon as it is decoded, to no less than that many
    pixels a side: a JPEG at the smallest of its DCT scales (1/2, 1/4, 1/8) that is still large enough,
    other formats by a whole factor before anything else is done to them. With `max_memory` (bytes), a
    photo whose decoding would take more is refused from its header, before any pixel is decoded.
    """
    return decode_photo_scaled(data, max_pixels, at_least, max_memory)[0]


def decode_photo_scaled(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, at_least: int | None = None, max_memory: int | None = None
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
        if max_memory is not None and (needed := decoding_memory(image, full_size, at_least)) > max_memory:
            raise BadPhoto(
                f"decoding this {full_size[0]}x{full_size[1]} {image.format or 'image'} would take about "
                f"{needed / 2**20:,.0f} MiB, over the {max_memory / 2**20:,.0f} MiB a photo may use here; "
                "a smaller photo, or a JPEG, works"
            )
        orientation = image.getexif().get(ORIENTATION)
        image.load()
        upright = shrunk(image, at_least)
        del image  # the full-size pixels go as soon as the small copy is made
        if orientation in ORIENTATIONS:
            upright = upright.transpose(ORIENTATIONS[orientation])
            if orientation >= 5:  # turned a quarter: so is the full size
                full_size = full_size[::-1]
        return to_rgb(upright), full_size
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise BadPhoto(f"corrupt or truncated image: {error}") from None


def shrink_factor(size: tuple[int, int], at_least: int | None) -> int:
    """The whole factor by which an image of `size` can shrink with both sides still at least `at_least`."""
    return max(1, min(size) // at_least) if at_least else 1


def shrunk(image: Image.Image, at_least: int | None) -> Image.Image:
    """A decoded image made smaller by a whole factor (each pixel the mean of a block), sides >= at_least."""
    factor = shrink_factor(image.size, at_least)
    if factor < 2:
        return image
    if image.mode in UNAVERAGED_MODES:
        image = image.convert("L" if image.mode == "1" else "RGBA" if _transparent(image) else "RGB")
    if image.mode in BYTES_PER_PIXEL:  # 16-bit grey: reduce() does not take it, a box resize is the same mean
        size = (-(-image.width // factor), -(-image.height // factor))  # rounded up, as reduce() does
        return image.resize(size, Image.Resampling.BOX)
    return image.reduce(factor)


def _transparent(image: Image.Image) -> bool:
    return image.mode == "PA" or "transparency" in image.info


def decoding_memory(image: Image.Image, full_size: tuple[int, int], at_least: int | None) -> int:
    """About how many bytes decoding an opened image takes (at its draft scale, for a JPEG), and making it
    small enough to shrink: read from its header alone, so that a small file with a huge canvas is refused
    before it takes the memory."""
    pixels = image.width * image.height
    per_pixel = BYTES_PER_PIXEL.get(image.mode, 4)
    if shrink_factor(image.size, at_least) >= 2:
        if image.mode in UNAVERAGED_MODES:
            per_pixel += 4  # converted to 1 or 4 bytes a pixel before it is shrunk
        if image.mode in ALPHA_MODES or (image.mode == "P" and _transparent(image)):
            per_pixel += 4  # and premultiplied
    needed = pixels * per_pixel
    if image.format in FRAME_COPYING_FORMATS:
        needed += pixels * 4
    if image.format == "JPEG" and image.info.get("progressive"):
        # libjpeg keeps every DCT coefficient of a progressive JPEG, 2 bytes each, at full size whatever the
        # draft scale: per component, its share of the pixels by its sampling against the largest.
        layers = getattr(image, "layer", None) or [("", 1, 1, 0)] * 3
        most = max(h for _, h, _, _ in layers) * max(v for _, _, v, _ in layers)
        needed += sum(2 * full_size[0] * full_size[1] * h * v // most for _, h, v, _ in layers)
    return needed


# One photo query decodes at a time in a process: on a public page, uploads arriving together wait for
# each other rather than each taking its memory at once.
_DECODING_QUERY = threading.Lock()


def decode_query_photo(
    data: bytes, input_side: int, max_pixels: int = DEFAULT_MAX_PIXELS, max_memory: int | None = None
) -> Image.Image:
    """A photo to search with (an upload, or `search --image`), decoded for a model whose input is
    `input_side` pixels a side, within the given limits, one at a time in this process."""
    with _DECODING_QUERY:
        return decode_photo(data, max_pixels, at_least=DECODE_MARGIN * input_side, max_memory=max_memory)


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


@dataclass(frozen=True)
class PhotoFacts:
    """When, where and with what a photo was taken, as far as its file says.

    `taken` is the capture time as the camera's clock read it (wall-clock time, as seconds since the epoch
    if that clock were UTC), so that a date filter means the date where the photo was taken; `offset` is
    that clock's UTC offset when the file records it (EXIF OffsetTimeOriginal), else empty. Without EXIF
    the file's modification time stands in, and `taken_from` says "file".
    """

    taken: float
    taken_from: str  # "exif" or "file"
    offset: str = ""  # "+09:00", or "" when unknown
    camera: str = ""  # "Apple iPhone 12", or "" when unknown
    latitude: float | None = None
    longitude: float | None = None

    def taken_iso(self) -> str:
        return taken_iso(self.taken, self.offset)


def taken_iso(taken: float, offset: str = "") -> str:
    """A PhotoFacts time in ISO 8601, with its UTC offset when it is known."""
    return datetime.fromtimestamp(taken, UTC).replace(tzinfo=None).isoformat(timespec="seconds") + offset


DAY = 86_400.0  # seconds
# The days a date filter, a link and the timeline take: photographs are younger than the first, and a camera
# clock set to year 9999 (or 1) must not stretch a timeline over ten thousand years.
FIRST_DAY, LAST_DAY = date(1800, 1, 1), date(2199, 12, 31)


def day_start(text: str) -> float:
    """YYYY-MM-DD as a PhotoFacts time: the start of that day on the wall clock (ValueError outside FIRST_DAY
    to LAST_DAY)."""
    try:
        day = datetime.strptime(text.strip(), "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"{text!r} is not a date: write it as YYYY-MM-DD, e.g. 2021-07-14") from None
    if not FIRST_DAY <= day.date() <= LAST_DAY:
        raise ValueError(f"{text!r} is outside the days a date filter takes: {FIRST_DAY} to {LAST_DAY}")
    return day.timestamp()


def on_a_day_filtered(taken: float) -> bool:
    """Whether a PhotoFacts time falls within FIRST_DAY to LAST_DAY: a photo outside counts as undated on the
    timelines (no filter could select it)."""
    return _FIRST_TIME <= taken < _AFTER_LAST_TIME


_FIRST_TIME = datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=UTC).timestamp()
_AFTER_LAST_TIME = datetime(LAST_DAY.year, LAST_DAY.month, LAST_DAY.day, tzinfo=UTC).timestamp() + DAY


EXIF_IFD = 0x8769
GPS_IFD = 0x8825
MAKE, MODEL = 0x010F, 0x0110
DATE_TIME_ORIGINAL, OFFSET_TIME_ORIGINAL = 0x9003, 0x9011
OFFSET_PATTERN = re.compile(r"^[+-]\d{2}:\d{2}$")


def read_facts(data: bytes, mtime: float) -> PhotoFacts:
    """The facts of a photo from its EXIF (headers only: no pixel is decoded). A missing or broken EXIF
    block gives what can be read, and the file time for `taken`."""
    file_time = datetime.fromtimestamp(mtime).replace(tzinfo=UTC).timestamp()  # the local wall clock
    try:
        exif = Image.open(io.BytesIO(data)).getexif()
        details = exif.get_ifd(EXIF_IFD)
    except Exception:  # Pillow raises many kinds on a broken EXIF block; none may stop a load
        return PhotoFacts(file_time, "file")
    camera = _camera(str(exif.get(MAKE, "")), str(exif.get(MODEL, "")))
    taken = _exif_time(details.get(DATE_TIME_ORIGINAL))
    offset = str(details.get(OFFSET_TIME_ORIGINAL, "")).strip()
    latitude, longitude = _gps(exif)
    if taken is None:
        return PhotoFacts(file_time, "file", camera=camera, latitude=latitude, longitude=longitude)
    offset = offset if OFFSET_PATTERN.match(offset) else ""
    return PhotoFacts(taken, "exif", offset, camera, latitude, longitude)


def _exif_time(value: object) -> float | None:
    try:
        return datetime.strptime(str(value).strip().rstrip("\x00"), "%Y:%m:%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def _camera(make: str, model: str) -> str:
    """ "Apple iPhone 12", not "Apple Apple iPhone 12": many cameras repeat the make in the model."""
    make, model = make.strip(" \x00"), model.strip(" \x00")
    return model if make and model.lower().startswith(make.split()[0].lower()) else f"{make} {model}".strip()


def _gps(exif: Image.Exif) -> tuple[float | None, float | None]:
    try:
        gps = exif.get_ifd(GPS_IFD)
        latitude = _degrees(gps[2]) * (-1 if str(gps.get(1, "N")).upper().startswith("S") else 1)
        longitude = _degrees(gps[4]) * (-1 if str(gps.get(3, "E")).upper().startswith("W") else 1)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None, None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None, None
    return latitude, longitude


def _degrees(value: Sequence[float]) -> float:
    degrees, minutes, seconds = (float(part) for part in value)
    return degrees + minutes / 60 + seconds / 3600


def folders_of(relpath: str) -> list[str]:
    """The folders a photo is in, each as a path from the collection's root: "2021/japan/x.jpg" is in
    "2021" and "2021/japan", so that a folder filter takes in its subfolders."""
    parts = PurePosixPath(relpath).parts[:-1]
    return ["/".join(parts[: depth + 1]) for depth in range(len(parts))]
