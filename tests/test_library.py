"""Library: the use cases the CLI and the page call, against a real server and a real (random) model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from clipsearch.errors import IndexMissing, ServerUnreachable
from clipsearch.library import Library
from clipsearch.loader import LoadOptions
from clipsearch.query import BadQuery
from clipsearch.schema import PhotoRecord
from clipsearch.settings import Settings

ENGINES = ("redisearch", "valkey-search", "cluster")  # the store's operations on a cluster too


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
