"""Photo files: finding them under a folder, reading them safely (regular files only, within a size), where
one may be served from, and how a path is shown."""

from __future__ import annotations

import hashlib
import os
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from clipsearch.display import without_bidi_controls

PHOTO_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".hif", ".avif"}
)
# Far above any real photo (a 100-Mpx 16-bit TIFF is about 600 MB uncompressed, its JPEG a few dozen MB).
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


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


def folders_of(relpath: str) -> list[str]:
    """The folders a photo is in, each as a path from the collection's root: "2021/japan/x.jpg" is in
    "2021" and "2021/japan", so that a folder filter takes in its subfolders."""
    parts = PurePosixPath(relpath).parts[:-1]
    return ["/".join(parts[: depth + 1]) for depth in range(len(parts))]
