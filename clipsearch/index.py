"""Opening an index, the one way every caller does it: settings → client → encoder → schema → store."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import valkey

from clipsearch.connection import connect
from clipsearch.engine import ModelEncoding
from clipsearch.identity import ModelIdentity
from clipsearch.settings import Settings
from clipsearch.store import IndexSchema, PhotoStore

E = TypeVar("E", bound=ModelEncoding)


def open_index(
    settings: Settings,
    encoder: Callable[[Settings], E] | E,
    *,
    client: valkey.Valkey | None = None,
    create: bool = False,
    rebuild: bool = False,
) -> tuple[PhotoStore, E]:
    """The index of `settings`, checked against the encoder's model, and that encoder.

    Give a function that loads the encoder (engine.load_text_encoder, engine.load_image_encoder), or an
    encoder already loaded (the page keeps one cached), and likewise a client or none. A new client is
    connected before the model loads, so an unreachable server is reported before the model takes seconds
    to load.
    """
    client = client or connect(settings)
    loaded = encoder(settings) if callable(encoder) else encoder
    return open_store(settings, loaded.identity, client=client, create=create, rebuild=rebuild), loaded


def open_store(
    settings: Settings,
    model: ModelIdentity,
    *,
    client: valkey.Valkey | None = None,
    create: bool = False,
    rebuild: bool = False,
) -> PhotoStore:
    """open_index's second half, for a caller that knows the model's identity but may not need the model
    (a loader run with nothing to encode)."""
    schema = IndexSchema.from_settings(settings, model)
    client = client or connect(settings)
    if rebuild:
        PhotoStore(client, schema).drop()
    return PhotoStore.open(client, schema, create=create or rebuild)
