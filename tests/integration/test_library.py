"""Library: the use cases the CLI and the page call, against a real server and a real (random) model."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from clipsearch.errors import IndexMismatch, IndexMissing, ServerUnreachable
from clipsearch.index.schema import PhotoRecord
from clipsearch.ingest.loader import LoadOptions
from clipsearch.library import Library, NotInIndex, QueryPhoto, SearchRequest, UnusablePhoto
from clipsearch.search.query import BadQuery
from clipsearch.search.results import Results, SearchOptions
from clipsearch.settings import Settings

BACKENDS = ("redisearch", "valkey-search", "cluster")  # the store's operations on a cluster too


def test_encoders_are_made_once_by_their_functions(settings: Settings, random_checkpoint: Path, encoder) -> None:
    settings = dataclasses.replace(settings, pretrained=str(random_checkpoint))
    made = []

    def load():
        made.append(1)
        return encoder

    library = Library(settings, text_encoder=load)
    with pytest.raises(IndexMissing):
        library.store()
    store = library.store(create=True)
    assert store.schema.model == encoder.identity
    library.encode_terms("a dog + a beach")
    library.encode_terms("a cat")
    assert library.text_encoder is encoder and len(made) == 1


def test_the_server_is_checked_before_the_model_loads(tmp_path: Path, free_port: int) -> None:
    """An unreachable server is reported at once, before seconds of model loading (here: before the checkpoint,
    which does not exist, is even looked at)."""
    settings = Settings(valkey_url=f"redis://127.0.0.1:{free_port}", pretrained=str(tmp_path / "absent.pt"))
    with pytest.raises(ServerUnreachable):
        Library(settings).image_encoder  # noqa: B018


def test_rebuild_empties_the_index(settings: Settings, encoder) -> None:
    library = Library(settings, text_encoder=lambda: encoder)
    store = library.store(create=True)
    store.upsert([PhotoRecord("a.jpg", np.ones(512, dtype=np.float32) / np.sqrt(512))])
    assert store.count() == 1
    assert library.store(rebuild=True).count() == 0


def test_index_search_and_compose_agree_with_the_store(settings: Settings, encoder, photo_folder: Path) -> None:
    library = Library(settings, text_encoder=lambda: encoder, image_encoder=lambda: encoder)
    assert library.may_index(photo_folder) == (settings.valkey_url is None)  # the page indexes the embedded only
    assert library.pending(photo_folder) == len(list(photo_folder.glob("*.jpg")))
    indexed = library.index_folder(photo_folder, LoadOptions(prune=True), show_bar=False)
    assert indexed.count == indexed.report.indexed == len(list(photo_folder.glob("*.jpg")))
    assert library.pending(photo_folder) == 0
    terms = library.encode_terms("a harbour - 0.5:boats")
    vector = library.compose(terms)
    expected = terms.vectors[0] / np.linalg.norm(terms.vectors[0]) - 0.5 * terms.vectors[1] / np.linalg.norm(
        terms.vectors[1]
    )
    assert np.allclose(vector, expected / np.linalg.norm(expected), atol=1e-6)
    key = library.store().nearest(vector, k=1, fields=())[0].key
    stored = library.stored_vector(key)
    assert stored is not None and library.photo_name(key) is not None
    with pytest.raises(BadQuery):
        library.compose(None, [])
    assert library.stored_vector("clipsearch:meta") is None and library.photo_name("nope") is None


def keys(results: Results) -> list[str]:
    return [result.hit.key for result in results.shown]


def test_one_request_composes_words_given_photos_and_indexed_photos(
    settings: Settings, encoder, photo_folder: Path, sample_photos: Path
) -> None:
    """What the page and the CLI send: each kind of query is the vector of its terms, searched as search_vector
    searches it (the words matched as text only when they are searched alone)."""
    library = Library(settings, text_encoder=lambda: encoder, image_encoder=lambda: encoder)
    library.index_folder(photo_folder, show_bar=False)
    options = SearchOptions(k=5, fold=False)
    words = library.search(SearchRequest(words="a harbour", options=options, understand=False))
    alone = library.compose(library.encode_terms("a harbour"))
    assert np.allclose(words.vector, alone) and words.heading() == "Photos matching a harbour"
    assert keys(words.results) == keys(library.search_vector(alone, options, text="a harbour"))

    key = library.store().nearest(alone, k=1, fields=())[0].key
    chair = QueryPhoto("chair.jpg", (sample_photos / "chair.jpg").read_bytes())
    found = library.search(SearchRequest(words="- people", photos=(chair,), like=(key,), options=options))
    like = library.stored_vector(key)
    assert like is not None
    terms = library.encode_terms("- people", with_photos=True)
    vector = library.compose(terms, [like, library.photo_query(chair.data).vector])
    assert np.allclose(found.vector, vector, atol=1e-6)
    assert keys(found.results) == keys(library.search_vector(vector, options))
    assert found.heading() == f"Photos like {library.photo_name(key)} and chair.jpg - people"
    assert found.photos and found.photos[0].preview[:2] == b"\xff\xd8"  # the upload's preview, a JPEG

    paged = library.search(SearchRequest(words="a harbour", options=SearchOptions(k=2, fold=False), pages=3))
    assert len(paged.results.shown) == 6, "each page adds k results"
    with pytest.raises(NotInIndex):
        library.search(SearchRequest(like=("clipsearch:meta",)))
    with pytest.raises(UnusablePhoto, match="holiday.jpg") as refused:
        library.search(SearchRequest(photos=(QueryPhoto("holiday.jpg", b"definitely not a jpeg"),)))
    assert refused.value.name == "holiday.jpg"
    with pytest.raises(BadQuery, match="only negative"):
        library.search(SearchRequest(words="- people"))


def test_every_kind_of_search_is_checked_against_the_model(
    settings: Settings, encoder, random_checkpoint: Path, tmp_path: Path, sample_photos: Path, copy_photos
) -> None:
    """An index of one checkpoint, searched with another of the same width, by words, by a photo of the index
    alone, by a given photo alone: refused each time, never compared."""
    library = Library(settings, text_encoder=lambda: encoder, image_encoder=lambda: encoder)
    library.index_folder(copy_photos(tmp_path / "p", ["chair.jpg", "baseball.jpg"]), show_bar=False)
    key = next(iter(dict(library.store().scan(("path",)))))
    other = tmp_path / "another-model.pt"
    shutil.copy(random_checkpoint, other)
    elsewhere = Library(dataclasses.replace(settings, pretrained=str(other)))
    chair = QueryPhoto("chair.jpg", (sample_photos / "chair.jpg").read_bytes())
    for request in (SearchRequest(words="a chair"), SearchRequest(like=(key,)), SearchRequest(photos=(chair,))):
        with pytest.raises(IndexMismatch, match="does not fit|holds vectors from"):
            elsewhere.search(request)


def test_a_malformed_query_is_said_before_a_missing_index(settings: Settings, encoder) -> None:
    library = Library(settings, text_encoder=lambda: encoder)
    with pytest.raises(BadQuery, match="2x"):
        library.search(SearchRequest(words="2x:dog + cat"))
    with pytest.raises(IndexMissing):
        library.search(SearchRequest(words="a dog"))
