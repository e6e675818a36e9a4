"""What a photo's file says of when, where and with what it was taken (EXIF, headers only), and the days a
date filter takes."""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from PIL import Image

# A broken EXIF block is a fact read_facts reports (the file time stands in), not a warning on stderr for
# each such photo. A filter, not catch_warnings: the loader reads photos in threads.
warnings.filterwarnings("ignore", category=UserWarning, module="PIL.TiffImagePlugin")


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
