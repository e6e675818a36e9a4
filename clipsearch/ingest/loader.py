"""Turns a folder (or a CSV of URLs and paths) into photo documents, incrementally.

A photo is re-read only when its size or modification time changed, and re-encoded only when
its content hash changed; a photo moved, renamed or copied takes the vector and thumbnail stored
for the same content. The model is loaded only when a photo has to be encoded. Each photo lands
as one HSET, so a run killed at any moment leaves whole documents only, and a rerun finishes the
job. A bad file is reported and never touches the store.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from clipsearch.errors import IndexMismatch
from clipsearch.index.schema import SCHEMA_VERSION, VECTOR_FIELD, PhotoRecord
from clipsearch.index.store import CheckedStore, PhotoStore
from clipsearch.index.upgrades import upgrade
from clipsearch.ingest.decoding import DECODE_MARGIN, DEFAULT_MAX_PIXELS, decode_photo_scaled, make_thumbnail
from clipsearch.ingest.facts import PhotoFacts, read_facts
from clipsearch.ingest.files import (
    DEFAULT_MAX_BYTES,
    BadPhoto,
    content_hash,
    display_path,
    file_under,
    read_file,
    walk_photos,
)
from clipsearch.ingest.sources import Fetching, Source, csv_sources, file_source
from clipsearch.model.reading import READ_SIDE, READER, TextReader

if TYPE_CHECKING:
    import numpy as np

    from clipsearch.model.engine import ImageEncoding

ProgressCallback = Callable[[int, int], None]
# A JPEG is decoded at a DCT scale that keeps at least this many times the model's input side: its own
# resize then still shrinks the photo, and the model input differs from full decoding's by a mean 0.0035
# (normalised pixels; vectors at cosine 1.00000) on 12-megapixel photos, while decoding is 3.5x faster.


@dataclass(frozen=True)
class Part:
    """Part `number` of `count` of a collection, for loaders that run at once on several machines into one
    index: a photo belongs to the part its stored path hashes to, so the parts never overlap and their union
    is the whole collection, whatever machine computes them."""

    number: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.number <= self.count:
            raise ValueError(f"part {self.number}/{self.count}: give i/n with 1 <= i <= n, e.g. 2/3")

    @classmethod
    def parse(cls, text: str) -> Part:
        number, slash, count = text.partition("/")
        if not slash or not number.strip().isdigit() or not count.strip().isdigit():
            raise ValueError(f"part {text!r}: give i/n, e.g. 2/3 for the second of three loaders")
        return cls(int(number), int(count))

    def holds(self, path: str) -> bool:
        digest = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.count == self.number - 1

    def __str__(self) -> str:
        return f"{self.number}/{self.count}"


@dataclass(frozen=True)
class LoadOptions:
    batch_size: int = 32
    thumbnail_size: int | None = 256  # None: store no thumbnails
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES
    prune: bool = False
    allow_other_folder: bool = False  # prune even an index loaded from another folder
    allow_any_path: bool = False  # CSV rows may be absolute paths or climb out of the CSV's folder
    allow_private_hosts: bool = False  # CSV URLs may name loopback, private and link-local addresses
    workers: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))
    download_timeout: float = 20.0  # for each connect and read
    download_deadline: float = 120.0  # for a whole download, so a slow-drip server cannot hold a worker
    download_retries: int = 3
    part: Part | None = None  # only this part of the photos: one of several loaders of one index
    read_text: bool = False  # read the words written in each photo (clipsearch.model.reading), also of those indexed

    @property
    def fetching(self) -> Fetching:
        """What reading a CSV's rows may do (clipsearch.ingest.sources)."""
        return Fetching(
            self.max_bytes, self.allow_any_path, self.allow_private_hosts, self.download_timeout,
            self.download_deadline, self.download_retries,
        )  # fmt: skip

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_pixels", "max_bytes", "workers", "download_retries"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name.replace('_', '-')} must be above 0")
        if self.thumbnail_size is not None and self.thumbnail_size <= 0:
            raise ValueError("thumbnail-size must be above 0")
        if self.part is not None and self.prune:
            raise ValueError(
                f"--prune with --part {self.part}: each part sees only its own photos, so it would take every other "
                "part's photos for gone. Prune in a run over the whole folder, without --part."
            )


@dataclass(frozen=True)
class Known:
    key: str
    size: int
    mtime: float
    content_hash: str
    text_read: str = ""  # what read its text; "" for not read


@dataclass
class LoadReport:
    indexed: int = 0
    reused: int = 0  # of indexed: moved, renamed or copied photos, given the stored vector of their content
    upgraded: int = 0  # photos of an index of the previous key schema given their facts, not encoded again
    unchanged: int = 0
    pruned: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # files of other types, by suffix
    read: int = 0  # photos whose text was read (new ones, and indexed ones read for the first time)
    with_text: int = 0  # of those read, the photos with words written in them
    seconds: float = 0.0

    def summary(self) -> str:
        rate = f" ({self.indexed / self.seconds:.1f} photos/s)" if self.indexed and self.seconds else ""
        reused = f" ({self.reused} moved or copied, not encoded again)" if self.reused else ""
        lines = [
            f"indexed {self.indexed}{reused}, unchanged {self.unchanged}, failed {len(self.failed)}, "
            f"pruned {self.pruned} in {self.seconds:.1f} s{rate}"
        ]
        if self.read:
            lines.append(f"  read the text of {self.read} photos: {self.with_text} with words in them")
        if self.skipped:
            by_count = sorted(self.skipped.items(), key=lambda item: (-item[1], item[0]))
            counts = ", ".join(f"{count} {suffix}" for suffix, count in by_count)
            lines.append(f"  skipped (not photos): {counts}")
        if self.upgraded:
            lines.insert(
                0,
                f"upgraded the index to key schema v{SCHEMA_VERSION} without encoding anything again: "
                f"read the dates, cameras and folders of {self.upgraded} photos",
            )
        lines += [f"  failed: {display_path(path)}: {reason}" for path, reason in self.failed]
        return "\n".join(lines)


@dataclass
class _Prepared:
    source: Source
    known: Known | None
    content_hash: str = ""
    size: int = 0
    error: str | None = None
    pixels: np.ndarray | None = None
    width: int = 0
    height: int = 0
    thumbnail: bytes | None = None
    facts: PhotoFacts | None = None
    same_as: str | None = None  # the key of a stored photo with the same content
    text: str | None = None  # the words written in it; None: not read


class PhotoLoader:
    def __init__(
        self,
        store: CheckedStore,
        load_encoder: Callable[[], ImageEncoding],
        options: LoadOptions | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        show_bar: bool = True,
    ) -> None:
        """`load_encoder` returns the image encoder: it is called only if a photo needs encoding."""
        self.store = store
        self._encoder: ImageEncoding | None = None
        self._load_encoder = load_encoder
        self._encoder_lock = threading.Lock()
        self._by_content: dict[str, str] = {}
        self.options = options or LoadOptions()
        self.on_progress = on_progress
        self.show_bar = show_bar
        self.reader = TextReader(self.options.workers) if self.options.read_text else None

    def index_folder(self, root: Path) -> LoadReport:
        root = Path(root)
        if not root.is_dir():
            raise NotADirectoryError(f"{root} is not a folder")
        if self.options.prune and not self.options.allow_other_folder:
            self.store.ensure_may_prune(root)
        report = LoadReport()
        sources: list[Source] = []
        unlisted: list[str] = []  # folders that could not be listed: what they hold is unknown, not gone
        for entry in walk_photos(root, report.skipped):
            if entry.problem is None:
                sources.append(file_source(entry, self.options.max_bytes))
            else:
                report.failed.append((entry.relpath, entry.problem))
                if entry.folder:
                    unlisted.append("" if entry.relpath == "." else f"{entry.relpath}/")
        seen = {source.path for source in sources} | {path for path, _ in report.failed}
        self._upgrade(root, report)

        def gone(path: str) -> bool:
            return path not in seen and not path.startswith(tuple(unlisted))

        self._run(self._this_part(sources), report, gone if self.options.prune else None)
        self.store.record_photos_root(root)
        return report

    def index_csv(self, csv_path: Path, column: str | None = None) -> LoadReport:
        report = LoadReport()
        self._upgrade(None, report)
        self._run(self._this_part(csv_sources(Path(csv_path), column, self.options.fetching)), report, None)
        return report

    def _this_part(self, sources: list[Source]) -> list[Source]:
        part = self.options.part
        return sources if part is None else [source for source in sources if part.holds(source.path)]

    @property
    def encoder(self) -> ImageEncoding:
        """The encoder, loaded on first use (from a worker thread too), and checked against the index."""
        with self._encoder_lock:
            if self._encoder is None:
                self._encoder = self._load_encoder()
                if self._encoder.identity != self.store.schema.model:
                    raise IndexMismatch(
                        f"the loaded model is {self._encoder.identity.describe()}, "
                        f"but the index is of {self.store.schema.model.describe()}"
                    )
            return self._encoder

    def _upgrade(self, root: Path | None, report: LoadReport) -> None:
        """An index of the previous key schema gains its photos' facts from their files; vectors are kept."""
        if not self.store.needs_upgrade:
            return

        def facts_of(path: str, source: str) -> PhotoFacts | None:
            if source != "file":
                return None
            found = Path(path) if Path(path).is_absolute() else file_under(root, path) if root else None
            try:
                return read_facts(read_file(found), found.stat().st_mtime) if found else None
            except (BadPhoto, OSError):
                return None

        report.upgraded = upgrade(self.store, facts_of)

    def _run(self, sources: list[Source], report: LoadReport, gone: Callable[[str], bool] | None) -> None:
        started = time.monotonic()
        known = known_photos(self.store)
        self._by_content = {entry.content_hash: entry.key for entry in known.values() if entry.content_hash}
        todo, report.unchanged = _plan(sources, known)
        if todo:
            self._encode_all(todo, report)
        if self.reader is not None:  # indexed before text was read, or by another reader: read, not encoded
            unread = [(source, entry) for source in sources if (entry := known.get(source.path)) is not None]
            self._read_all([(source, entry) for source, entry in unread if entry.text_read != READER], report)
        if gone is not None:  # after the writes: a moved photo's new document copies the old one first
            report.pruned = self.store.delete(entry.key for path, entry in known.items() if gone(path))
        report.seconds = time.monotonic() - started

    def _encode_all(self, todo: list[tuple[Source, Known | None]], report: LoadReport) -> None:
        size = self.options.batch_size
        batches = [todo[start : start + size] for start in range(0, len(todo), size)]
        done = 0
        with (
            ThreadPoolExecutor(self.options.workers) as pool,
            tqdm(total=len(todo), unit="photo", disable=not self.show_bar, dynamic_ncols=True) as bar,
        ):
            # Decode the next batch in worker threads while the model encodes this one.
            pending = self._submit(pool, batches[0])
            for number in range(len(batches)):
                prepared = [future.result() for future in pending]
                pending = self._submit(pool, batches[number + 1]) if number + 1 < len(batches) else []
                self._write(prepared, report)
                done += len(prepared)
                bar.update(len(prepared))
                if self.on_progress:
                    self.on_progress(done, len(todo))

    def _read_all(self, todo: list[tuple[Source, Known]], report: LoadReport) -> None:
        """The text of indexed photos, read from their files (or URLs) in worker threads and stored with what
        read it, one photo at a time: a run killed part way leaves the others to the next run."""
        if not todo:
            return
        with (
            ThreadPoolExecutor(self.options.workers) as pool,
            tqdm(total=len(todo), unit="photo", desc="reading text", disable=not self.show_bar) as bar,
        ):
            futures = [pool.submit(self._read, source) for source, _ in todo]
            for (source, entry), future in zip(todo, futures, strict=True):
                try:
                    text = future.result()
                except BadPhoto as error:
                    report.failed.append((source.path, f"reading its text: {error}"))
                else:
                    self.store.touch(entry.key, text=text, text_read=READER)
                    report.read += 1
                    report.with_text += bool(text)
                bar.update(1)
                if self.on_progress:
                    self.on_progress(bar.n, len(todo))

    def _read(self, source: Source) -> str:
        """The words written in one photo, from its file (or URL)."""
        assert self.reader is not None
        image, _ = decode_photo_scaled(source.read(), self.options.max_pixels, at_least=READ_SIDE)
        return self.reader.read(image)

    def _submit(self, pool: ThreadPoolExecutor, batch: list[tuple[Source, Known | None]]) -> list[Future[_Prepared]]:
        return [pool.submit(self._prepare, source, known) for source, known in batch]

    def _prepare(self, source: Source, known: Known | None) -> _Prepared:
        item = _Prepared(source, known)
        try:
            data = source.read()
            item.size, item.content_hash = len(data), content_hash(data)
            if known is not None and known.content_hash == item.content_hash:
                return item  # touched, not changed
            if source.kind == "file":
                item.facts = read_facts(data, source.mtime or 0.0)
            if item.content_hash in self._by_content:
                item.same_as = self._by_content[item.content_hash]  # moved, renamed or copied
                return item
            # Decoded at twice the model's input side (or the thumbnail's, or the reading's, if larger), not at
            # full size.
            side = max(DECODE_MARGIN * self.encoder.input_side, self.options.thumbnail_size or 0)
            side = max(side, READ_SIDE) if self.reader is not None else side
            image, (item.width, item.height) = decode_photo_scaled(data, self.options.max_pixels, at_least=side)
            item.pixels = self.encoder.preprocess_image(image)
            if self.reader is not None:
                item.text = self.reader.read(image)
            if self.options.thumbnail_size:
                item.thumbnail = make_thumbnail(image, self.options.thumbnail_size)
        except BadPhoto as error:
            item.error = str(error)
        except Exception as error:  # a bad file must never stop the run
            item.error = f"unexpected {type(error).__name__}: {error}"
        return item

    def _write(self, prepared: Iterable[_Prepared], report: LoadReport) -> None:
        to_encode: list[tuple[_Prepared, np.ndarray]] = []
        copies: list[PhotoRecord] = []
        for item in prepared:
            if item.error is not None:
                report.failed.append((item.source.path, item.error))
            elif item.same_as is not None:
                copy = self._copy_of(item)
                if copy is None:
                    report.failed.append((item.source.path, "its twin left the index during this run; run again"))
                else:
                    copies.append(copy)
            elif item.pixels is None:
                assert item.known is not None
                self.store.touch(item.known.key, size=item.size, mtime=item.source.mtime or 0.0)
                report.unchanged += 1
            else:
                to_encode.append((item, item.pixels))
        if copies:
            self.store.upsert(copies)
            report.indexed += len(copies)
            report.reused += len(copies)
        if not to_encode:
            return
        vectors = self.encoder.encode_pixels([pixels for _, pixels in to_encode])
        self.store.upsert(
            _record(item, vector, item.width, item.height, item.thumbnail, item.text)
            for (item, _), vector in zip(to_encode, vectors, strict=True)
        )
        report.indexed += len(to_encode)
        read = [item.text for item, _ in to_encode if item.text is not None]
        report.read += len(read)
        report.with_text += sum(bool(text) for text in read)

    def _copy_of(self, item: _Prepared) -> PhotoRecord | None:
        """A document for item with the vector, size in pixels, thumbnail and text of the stored photo of the
        same content; None if that photo is gone."""
        assert item.same_as is not None
        fields = (VECTOR_FIELD, "width", "height", "thumbnail", "text", "text_read")
        [row] = self.store.get([item.same_as], fields)
        if row is None or row.vector is None:
            return None
        text = row.text if row.text_read else None  # (read by another reader: the next run reads it again)
        return _record(item, row.vector, row.width or 0, row.height or 0, row.thumbnail, text, row.text_read or "")


def _record(
    item: _Prepared,
    vector: np.ndarray,
    width: int,
    height: int,
    thumbnail: bytes | None,
    text: str | None,
    text_read: str = READER,
) -> PhotoRecord:
    return PhotoRecord(
        path=item.source.path,
        vector=vector,
        name=item.source.name,
        width=width,
        height=height,
        size=item.size,
        mtime=item.source.mtime or 0.0,
        content_hash=item.content_hash,
        source=item.source.kind,
        thumbnail=thumbnail,
        facts=item.facts,
        text=text,
        text_read=text_read,
    )


def known_photos(store: PhotoStore) -> dict[str, Known]:
    """What the store holds, by path: enough to tell whether a file changed."""
    fields = ("path", "size", "mtime", "content_hash", "text_read")
    return {
        photo.path: Known(key, photo.size or 0, photo.mtime or 0.0, photo.content_hash or "", photo.text_read or "")
        for key, photo in store.scan(fields)
        if photo.path is not None
    }


def pending_photos(store: PhotoStore | None, root: Path) -> int:
    """How many photos under root a run would read (new or changed) or prune (gone); store None: none indexed."""
    sources = [file_source(entry, DEFAULT_MAX_BYTES) for entry in walk_photos(Path(root)) if entry.problem is None]
    known = known_photos(store) if store is not None else {}
    todo, _ = _plan(sources, known)
    return len(todo) + len(known.keys() - {source.path for source in sources})


def _plan(sources: list[Source], known: dict[str, Known]) -> tuple[list[tuple[Source, Known | None]], int]:
    """Split sources into those to read (with what the store knows of them) and a count of unchanged."""
    todo: list[tuple[Source, Known | None]] = []
    for source in sources:
        entry = known.get(source.path)
        if entry is None or (source.kind == "file" and (entry.size, entry.mtime) != (source.size, source.mtime)):
            todo.append((source, entry))
    return todo, len(sources) - len(todo)
