"""Opening an index, the one way every caller does it: settings → client → encoder → schema → store."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import valkey

from clipsearch.connection import connect
from clipsearch.settings import Settings
from clipsearch.store import IndexSchema, PhotoStore

if TYPE_CHECKING:
    from clipsearch.encoder import Encoder

E = TypeVar("E", bound="Encoder")


def open_index(
    settings: Settings,
    encoder: type[E] | E,
    *,
    client: valkey.Valkey | None = None,
    create: bool = False,
    rebuild: bool = False,
) -> tuple[PhotoStore, E]:
    """The index of `settings`, checked against the encoder's model, and that encoder.

    Give the encoder's class to load it, or an encoder already loaded (the page keeps one cached),
    and likewise a client or none. A new client is connected before the model loads, so an
    unreachable server is reported before the model takes seconds to load.
    """
    client = client or connect(settings)
    loaded = encoder.load(settings.model_name, settings.pretrained) if isinstance(encoder, type) else encoder
    schema = IndexSchema.from_settings(settings, loaded.identity)
    if rebuild:
        PhotoStore(client, schema).drop()
    return PhotoStore.open(client, schema, create=create or rebuild), loaded
