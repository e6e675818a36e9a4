"""Where photos come from besides a folder: the rows of a CSV or TSV, paths and http(s) URLs, and the
downloader with its guards: only http and https, no loopback, private or link-local host unless allowed
(redirects checked too), within a size and a deadline, retried on a server's errors."""

from __future__ import annotations

import csv
import ipaddress
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from http.client import HTTPMessage, HTTPResponse
from pathlib import Path, PurePosixPath
from typing import IO
from urllib.parse import urlsplit

from clipsearch.ingest.files import BadPhoto, PhotoFile, read_file

CSV_COLUMNS = ("photo_image_url", "image_url", "url", "path", "file", "filename")
MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024
DOWNLOAD_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class Source:
    """Where one photo's bytes come from; size and mtime are known up front for files only."""

    path: str
    read: Callable[[], bytes]
    kind: str = "file"
    size: int | None = None
    mtime: float | None = None

    @property
    def name(self) -> str:
        return PurePosixPath(urlsplit(self.path).path if self.kind == "url" else self.path).name


@dataclass(frozen=True)
class Fetching:
    """What reading a CSV's rows may do: read files of at most max_bytes; take absolute paths and paths that
    climb out of the CSV's folder (allow_any_path); download from this machine or its private network
    (allow_private_hosts); and how long a download may take (each connect and read, the whole) and how often
    it is tried. LoadOptions.fetching makes one, with the loader's defaults."""

    max_bytes: int
    allow_any_path: bool
    allow_private_hosts: bool
    download_timeout: float
    download_deadline: float
    download_retries: int


def file_source(photo: PhotoFile, max_bytes: int) -> Source:
    """A file of a folder walk, read within max_bytes when its turn comes."""
    return Source(photo.relpath, partial(read_file, photo.path, max_bytes), "file", photo.size, photo.mtime)


def csv_sources(csv_path: Path, column: str | None, options: Fetching) -> list[Source]:
    """One source per row: http(s) URLs are downloaded, anything else is a path relative to the CSV.

    A local row is stored under its resolved path, so it never shares a key with a folder's photo
    of the same relative name. Absolute paths, and paths that climb out of the CSV's folder, are
    refused unless options.allow_any_path; URLs are fetched as check_download_url allows.
    """
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        sample = handle.read(64 * 1024)
        handle.seek(0)
        try:
            dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",\t;")
        except csv.Error:  # no delimiter to find: a single column
            dialect = csv.excel
        rows = list(csv.DictReader(handle, dialect=dialect))
    header = list(rows[0]) if rows else []
    if column is None:
        column = next((name for name in CSV_COLUMNS if name in header), None)
    if column is None or column not in header:
        raise ValueError(
            f"{csv_path}: no column {column!r}" if column else f"{csv_path}: no column named one of {CSV_COLUMNS}"
        )
    sources = []
    for row in rows:
        value = (row.get(column) or "").strip()
        if not value:
            continue
        if urlsplit(value).scheme.lower() in DOWNLOAD_SCHEMES:
            sources.append(Source(value, downloader(value, options), "url"))
            continue
        path = (csv_path.parent / value).resolve()
        if not options.allow_any_path and (Path(value).is_absolute() or ".." in Path(value).parts):
            sources.append(
                Source(str(path), partial(_refuse, "refused: outside the CSV's folder (allow with --allow-any-path)"))
            )
            continue
        try:
            info = path.stat()
        except OSError:
            sources.append(Source(str(path), partial(read_file, path, options.max_bytes)))
            continue
        read = partial(read_file, path, options.max_bytes)
        sources.append(Source(str(path), read, "file", info.st_size, info.st_mtime))
    first_of_each: dict[str, Source] = {}  # a photo listed twice is read once
    for source in sources:
        first_of_each.setdefault(source.path, source)
    return list(first_of_each.values())


def _refuse(reason: str) -> bytes:
    raise BadPhoto(reason)


def check_download_url(url: str, allow_private_hosts: bool) -> None:
    """Refuse what a CSV should not make the loader fetch: other schemes, and (unless allowed) this machine
    or its private network. Names are resolved here and again when connecting: a host that answers
    differently the second time (DNS rebinding) is not caught, so do not load untrusted CSVs on a machine
    whose network holds secrets."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in DOWNLOAD_SCHEMES:
        raise BadPhoto(f"refused: {parts.scheme or 'no'} scheme (only http and https are downloaded)")
    if allow_private_hosts:
        return
    for *_, address in socket.getaddrinfo(parts.hostname or "", parts.port or 443, proto=socket.IPPROTO_TCP):
        ip = ipaddress.ip_address(address[0])
        if not ip.is_global:
            raise BadPhoto(
                f"refused: {parts.hostname} is a loopback, private or link-local address ({ip}); "
                "allow such hosts with --allow-private-hosts"
            )


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    def __init__(self, allow_private_hosts: bool) -> None:
        self.allow_private_hosts = allow_private_hosts

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        check_download_url(newurl, self.allow_private_hosts)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def downloader(url: str, options: Fetching) -> Callable[[], bytes]:
    """What downloads one URL when its turn comes: checked, redirects too, retried, within its size and time."""

    def download() -> bytes:
        check_download_url(url, options.allow_private_hosts)
        opener = urllib.request.build_opener(_CheckedRedirects(options.allow_private_hosts))
        last_error: Exception | None = None
        for attempt in range(options.download_retries):
            if attempt:
                time.sleep(min(0.5 * 2**attempt, 8.0))
            try:
                request = urllib.request.Request(url, headers={"User-Agent": "clipsearch-loader"})
                with opener.open(request, timeout=options.download_timeout) as response:
                    return _read_within(response, time.monotonic() + options.download_deadline)
            except urllib.error.HTTPError as error:
                if error.code < 500 and error.code != 429:
                    raise BadPhoto(f"download failed: HTTP {error.code} {error.reason}") from None
                last_error = error
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
                last_error = error
        raise BadPhoto(f"download failed after {options.download_retries} tries: {last_error}")

    return download


def _read_within(response: HTTPResponse, deadline: float) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while chunk := response.read1(64 * 1024):  # whatever has arrived: read() would wait for all 64 KiB
        total += len(chunk)
        if total > MAX_DOWNLOAD_BYTES:
            raise BadPhoto(f"download larger than {MAX_DOWNLOAD_BYTES // 2**20} MiB")
        if time.monotonic() > deadline:
            raise BadPhoto("download too slow: it did not finish within its time limit")
        chunks.append(chunk)
    return b"".join(chunks)
