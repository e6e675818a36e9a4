"""The words written in photos: read by PP-OCR at index time (new photos as they are encoded, indexed ones in a
pass that encodes nothing), stored per photo, matched by searches with one ranking beside CLIP's, and quoted
phrases as exact filters, on both backends and a cluster. The photos are text_photos' (scripts/): words drawn
on sample photos in several fonts, sizes and colours, one turned, a screenshot and a receipt."""

from __future__ import annotations

import dataclasses
import http.server
import re
import threading
import uuid

import numpy as np
import pytest
from PIL import Image

from clipsearch.ingest.loader import LoadOptions
from clipsearch.library import Library
from clipsearch.model.reading import MAX_TEXT_CHARS, READER, TextReader, bounded
from clipsearch.search.results import SearchOptions
from clipsearch.search.words import words_of
from tests.conftest import PLAIN

BACKENDS = ("redisearch", "valkey-search", "cluster")


def test_the_text_kept_is_bounded_at_a_words_end() -> None:
    long = " ".join(f"word{n}" for n in range(2000))
    kept = bounded(long)
    assert len(kept) <= MAX_TEXT_CHARS and long.startswith(kept) and long[len(kept)] == " "
    assert bounded("exit 12") == "exit 12"


def test_ocr_reads_the_words_written_in_photos(text_reader: TextReader, text_photos) -> None:
    folder, written = text_photos
    wanted = found = 0
    for name, words in written.items():
        read = set(text_reader.read(Image.open(folder / name)).split())
        expected = words_of(words)
        wanted, found = wanted + len(expected), found + sum(word in read for word in expected)
        assert read & set(expected), f"{name}: nothing of {words!r} read ({read})"
    # docs/searching.md reports the rate that scripts/bench_reading.py measures on these photos.
    assert found / wanted >= 0.9, f"{found} of {wanted} words read"
    stray = [text_reader.read(Image.open(folder / f"plain-{name}")) for name in PLAIN]
    assert sum(len(text.split()) for text in stray) <= 2, stray


@pytest.fixture(scope="module")
def text_library(text_photos, search_server, onnx_cache, encoder):
    """The text photos indexed first without reading (as an index made before), then read by a pass that
    encodes nothing, once per backend: (the library, the folder, the words of each photo, the stored rows)."""
    folder, written = text_photos
    flat = search_server.settings(index_name=f"test-{uuid.uuid4().hex[:10]}", onnx_cache=onnx_cache, algorithm="FLAT")
    library = Library(flat, text_encoder=lambda: encoder, image_encoder=lambda: encoder)
    first = library.index_folder(folder, LoadOptions(), show_bar=False).report
    assert (first.indexed, first.read) == (len(written) + len(PLAIN), 0)
    vectors = {row.path: row.vector for _, row in library.store().scan(("path", "vector"))}

    def no_model():
        pytest.fail("the pass reads text: it encodes nothing")

    reading = Library(flat, text_encoder=lambda: encoder, image_encoder=no_model)
    report = reading.index_folder(folder, LoadOptions(read_text=True), show_bar=False).report
    assert (report.indexed, report.read, report.with_text) == (0, len(written) + len(PLAIN), len(written))
    rows = {row.path: row for _, row in library.store().scan(("path", "vector", "text", "text_read"))}
    assert all(np.array_equal(rows[path].vector, vector) for path, vector in vectors.items())  # byte for byte
    assert {row.text_read for row in rows.values()} == {READER}
    library.store().wait_indexed()
    return library, folder, written, rows


def searched(library: Library, encoder, text: str, words: bool = True, k: int = 6):
    vector = encoder.encode_text([text.replace('"', "")])[0]
    return library.search_vector(vector, SearchOptions(k=k, fold=False), text=text if words else None)


def test_a_search_for_the_words_in_a_photo_ranks_it_first(text_library, encoder) -> None:
    library, _, written, rows = text_library
    for name, words in written.items():
        found = searched(library, encoder, words.lower())
        assert found.shown[0].hit.path == name, (words, rows[name].text)
        assert any(said.startswith("text: ") for said in found.shown[0].matched)
    alone = searched(library, encoder, "harbour ferry", words=False)
    assert all(result.matched == () for result in alone.shown)


def test_a_photo_without_the_words_keeps_its_clip_rank(text_library, encoder) -> None:
    library, *_ = text_library
    for text in ("sunset over the mountains", "a dog running on grass"):  # words no photo carries
        with_words = [result.hit.path for result in searched(library, encoder, text).shown]
        assert with_words == [result.hit.path for result in searched(library, encoder, text, words=False).shown]


@pytest.mark.parametrize("phrase", ["exit 12", "corner grocery", "17 40", "bakery", "ferry harbour", "12 exit"])
def test_quoted_words_filter_exactly(text_library, encoder, phrase: str) -> None:
    """Brute force: the photos whose stored text or names hold the words one after the other, by similarity."""
    library, _, _, rows = text_library
    store = library.store()
    fields = ("path", "text", "name_words", "folder_words")
    holding = []
    pattern = re.compile(rf"(^| ){re.escape(phrase)}( |$)")
    for _, row in store.scan(fields):
        if any(pattern.search(getattr(row, field) or "") for field in fields[1:]):
            holding.append(row.path)
    vector = encoder.encode_text([phrase])[0]
    found = library.search_vector(vector, SearchOptions(k=10, fold=False), text=f'"{phrase}"')
    expected = sorted(holding, key=lambda path: -float(rows[path].vector @ vector))
    assert [result.hit.path for result in found.shown] == expected
    assert (phrase in ("exit 12", "corner grocery", "17 40", "bakery")) == bool(expected)


def test_an_interrupted_pass_reads_only_what_is_left(backend: str, text_photos, settings, encoder, monkeypatch) -> None:
    if backend != "redisearch":
        pytest.skip("the loader's bookkeeping, the same on every backend")
    folder, written = text_photos
    library = Library(dataclasses.replace(settings, algorithm="FLAT"), image_encoder=lambda: encoder)
    library.index_folder(folder, LoadOptions(), show_bar=False)
    calls = []
    read = TextReader.read

    def killed_after_three(self, image):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt  # as a kill: the photos read so far are stored, each whole
        return read(self, image)

    monkeypatch.setattr(TextReader, "read", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        library.index_folder(folder, LoadOptions(read_text=True, workers=1), show_bar=False)
    monkeypatch.undo()
    done = [row for _, row in library.store().scan(("text_read",)) if row.text_read == READER]
    assert len(done) == 3
    report = library.index_folder(folder, LoadOptions(read_text=True), show_bar=False).report
    assert report.read == len(written) + len(PLAIN) - 3


def test_photos_from_urls_are_read_as_they_are_encoded(backend: str, text_photos, settings, encoder, tmp_path):
    if backend != "redisearch":
        pytest.skip("the loader's bookkeeping, the same on every backend")
    folder, _ = text_photos
    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=str(folder))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/receipt.jpg"
        (tmp_path / "photos.csv").write_text(f"url\n{url}\n")
        library = Library(settings, image_encoder=lambda: encoder)
        options = LoadOptions(read_text=True, allow_private_hosts=True)
        report = library.index_csv(tmp_path / "photos.csv", options=options, show_bar=False).report
        assert (report.indexed, report.read, report.with_text) == (1, 1, 1)
        [(_, row)] = list(library.store().scan(("path", "text", "text_read")))
        assert row.path == url and "grocery" in (row.text or "").split() and row.text_read == READER
    finally:
        server.shutdown()
