"""The ladder of upgrades: an index of an older key schema brought to this one in place, one step a version
(clipsearch.index.schema.UPGRADE_STEPS says what each adds), from what the index stores: no photo is encoded
again, and only the first step reads the files again (for their facts)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from clipsearch.index.schema import SCHEMA_VERSION, UPGRADE_STEPS, fact_mapping, place_mapping, word_mapping
from clipsearch.index.store import PhotoStore, batched, drop_search_index
from clipsearch.ingest.facts import PhotoFacts
from clipsearch.ingest.places import places_at

FactsOf = Callable[[str, str], PhotoFacts | None]  # a photo's facts by its path and source, read from its file


def upgrade(store: PhotoStore, facts_of: FactsOf) -> int:
    """Bring an index of an older key schema to this one, in place, one step of STEPS at a time; the search
    index is made again once, with the new fields (PhotoStore.remake_index). Returns how many photos were
    upgraded."""
    if not store.needs_upgrade:
        return 0
    # No search index while every document changes: readers refuse an older version anyway.
    drop_search_index(store.client, store.schema.search_index)
    upgraded = 0
    for version in range(store.schema.version, SCHEMA_VERSION):
        upgraded = STEPS[version](store, facts_of)
    store.remake_index(replace(store.schema, version=SCHEMA_VERSION))
    return upgraded


def add_facts(store: PhotoStore, facts_of: FactsOf) -> int:
    """Version 1 to 2: every photo keeps its vector and gains its facts (`facts_of(path, source)`) and
    folders."""
    upgraded = 0
    for batch in batched(store.scan(("path", "source"))):
        pipe = store.client.pipeline(transaction=False)
        for key, photo in batch:
            path, source = photo.path or "", photo.source or "file"
            pipe.hset(key, mapping=fact_mapping(path, source, facts_of(path, source)))
        pipe.execute()
        upgraded += len(batch)
    return upgraded


def add_places(store: PhotoStore, facts_of: FactsOf) -> int:
    """Version 2 to 3: every photo with a GPS position gains its place, from the position stored (read from
    its file's header when it was indexed): no file is read again. The search index is made again with
    latitude and longitude as NUMERIC fields and the places as a TAG field."""
    upgraded = 0
    for batch in batched(store.scan(("path", "latitude", "longitude"))):
        located = [(key, photo.position) for key, photo in batch if photo.position is not None]
        pipe = store.client.pipeline(transaction=False)
        for (key, _), place in zip(located, places_at([position for _, position in located]), strict=True):
            if place is not None:
                pipe.hset(key, mapping=place_mapping(place))
        pipe.execute()
        upgraded += len(batch)
    return upgraded


def add_words(store: PhotoStore, facts_of: FactsOf) -> int:
    """Version 3 to 4: every photo gains the words of its file name and of its folders, made from the path
    and name stored: no file is read again. The search index is made again with them as TEXT fields."""
    upgraded = 0
    for batch in batched(store.scan(("path", "name", "source"))):
        pipe = store.client.pipeline(transaction=False)
        for key, photo in batch:
            path = photo.path or ""
            pipe.hset(key, mapping=word_mapping(path, photo.name or "", photo.source or "file"))
        pipe.execute()
        upgraded += len(batch)
    return upgraded


# STEPS[n] brings every photo of a version n index to version n + 1 (the search index is made again after the last).
STEPS: dict[int, Callable[[PhotoStore, FactsOf], int]] = {1: add_facts, 2: add_places, 3: add_words}
assert STEPS.keys() == UPGRADE_STEPS.keys(), "each step of the ladder says what it adds"
