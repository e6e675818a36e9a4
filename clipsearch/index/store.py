"""The photo index in Valkey/Redis: the reads and writes. What is stored is clipsearch.index.schema's; what a
search may return is clipsearch.index.filters'.

Only the command subset that RediSearch and valkey-search (Aiven for Valkey) share is used:
FT.CREATE ON HASH with PREFIX, STOPWORDS 0 and VECTOR, NUMERIC, TAG and TEXT NOSTEM fields; FT.SEARCH with a
KNN clause after a pre-filter of NUMERIC ranges, TAG sets and words of TEXT fields, PARAMS, LIMIT, RETURN of
the score alias only and DIALECT 2; FT.INFO; FT.DROPINDEX; FT._LIST. Other fields are fetched with HMGET, and
hits are sorted here rather than with SORTBY.

On a cluster every command is slot-safe: each names one key (no multi-key DEL, MGET or transaction across
slots), pipelines are split by node (valkey-py's cluster pipeline), scans visit every primary, counts are the
whole index's (FT.INFO ... PRIMARY), and FT.SEARCH goes to one node, whose coordinator asks every shard.
"""

from __future__ import annotations

import math
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import valkey
from valkey.cluster import ValkeyCluster
from valkey.commands.search.indexDefinition import IndexDefinition, IndexType

from clipsearch.errors import (
    ClipsearchError,
    FolderMismatch,
    IndexMismatch,
    IndexMissing,
    NoVectorSearch,
    SearchRefused,
    ServerError,
)
from clipsearch.index.connection import NO_VECTOR_SEARCH, Client, is_cluster
from clipsearch.index.filters import SearchFilter, in_order
from clipsearch.index.schema import (
    OPTIONAL_FIELDS,
    PHOTO_FIELDS,
    SCHEMA_VERSION,
    UPGRADE_STEPS,
    VECTOR_FIELD,
    IndexSchema,
    Photo,
    PhotoRecord,
    check_fields,
    fitting_algorithm,
    meta_key,
)

SCORE_ALIAS = "score"
PHOTOS_ROOT_META = "photos_root"  # meta field: the folder the index was last loaded from
CREATED_META = "created"  # meta field: a token of this index's creation (a dropped and remade index has another)
CHANGES_META = "changes"  # meta field: counts the writes, touches, deletes and remakes of the index
INDEXING_FLAGS = ("indexing", "backfill_in_progress", "mutation_queue_size")  # FT.INFO's: 0 once caught up
WRITE_BATCH = 500  # commands per pipelined round trip when writing or deleting many photos
T = TypeVar("T")


@dataclass(frozen=True)
class Hit:
    key: str
    score: float  # cosine similarity, 1.0 = same direction
    photo: Photo = field(default_factory=Photo)

    @property
    def path(self) -> str:
        return self.photo.path or ""


def stored_schema(client: Client, name: str) -> IndexSchema | None:
    """The schema index `name` was made with, read from its metadata; None if there is no such index.

    Needs no model, so an index can be described or dropped by a process that has none.
    """
    meta = {os.fsdecode(k): os.fsdecode(v) for k, v in client.hgetall(meta_key(name)).items()}
    if meta:
        return IndexSchema.from_meta(name, meta)
    if _index_exists(client, name):
        raise IndexMismatch(
            f"index {name!r} exists but carries no clipsearch schema version (key {meta_key(name)!r} is "
            "missing): it was not made by this clipsearch, and clipsearch leaves it alone. "
            "Choose another CLIPSEARCH_INDEX."
        )
    return None


def batched(items: Iterable[T], size: int = WRITE_BATCH) -> Iterator[list[T]]:
    """Items in lists of `size`, the last one shorter: every batch loop of the store."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _search_indexes(client: Client) -> set[str]:
    return {os.fsdecode(existing) for existing in client.execute_command("FT._LIST")}


def _index_exists(client: Client, name: str) -> bool:
    return name in _search_indexes(client)


def drop_search_index(client: Client, name: str) -> None:
    """FT.DROPINDEX with the name alone: the documents stay (valkey-search takes no other form)."""
    if _index_exists(client, name):
        client.execute_command("FT.DROPINDEX", name)


class PhotoStore:
    def __init__(self, client: Client, schema: IndexSchema) -> None:
        self.client = client
        self.schema = schema

    @classmethod
    def open(cls, client: Client, schema: IndexSchema, *, create: bool = False) -> CheckedStore:
        """The index, checked to hold vectors of this schema's model; with `create`, made if missing.

        An index keeps the algorithm and graph parameters it was built with until it is rebuilt;
        EF_RUNTIME goes with each query, so this schema's applies at once.
        """
        stored = stored_schema(client, schema.name)
        if stored is None:
            if not create:
                raise IndexMissing(
                    f"no photos indexed yet: index {schema.name!r} does not exist on this server. "
                    "Run `python scripts/load_photos.py [FOLDER]` to index your photos."
                )
            stored = _claim(client, schema)
        _check_compatible(schema, stored, writer=create)
        store = CheckedStore(
            client,
            replace(
                schema,
                algorithm=stored.algorithm,
                m=stored.m,
                ef_construction=stored.ef_construction,
                version=stored.version,
                generation=stored.generation,
            ),
        )
        if not _index_exists(client, store.schema.search_index):
            if not create:
                raise IndexMissing(f"index {schema.name!r} is gone from the server; run the loader to rebuild it")
            store._create_index(store.schema)
        return store

    @classmethod
    def existing(cls, client: Client, name: str) -> PhotoStore:
        """An existing index as it was made, whatever its model: to describe it, count it, drop it, or compare its
        own vectors with each other (near-duplicates); never a CheckedStore, so never searched with a query."""
        stored = stored_schema(client, name)
        if stored is None:
            raise IndexMissing(f"index {name!r} does not exist on this server")
        return cls(client, stored)

    def _create_index(self, schema: IndexSchema) -> None:
        definition = IndexDefinition(prefix=[schema.prefix], index_type=IndexType.HASH)
        try:
            # No stop words: a query's words are chosen by clipsearch.search.words, the same on both backends.
            self.client.ft(schema.search_index).create_index(schema.fields(), definition=definition, stopwords=[])
        except valkey.ResponseError as error:
            # Another process won the race: RediSearch says "Index already exists", valkey-search
            # "Index NAME in database 0 already exists".
            if "already exists" not in str(error):
                raise NoVectorSearch(f"FT.CREATE failed ({error}): {NO_VECTOR_SEARCH}") from None

    # --- the index itself ---------------------------------------------------------------

    @property
    def needs_upgrade(self) -> bool:
        """An index of an older key schema, opened by a writer: upgraded (clipsearch.index.upgrades) before any
        write."""
        return self.schema.version < SCHEMA_VERSION

    def remake_index(self, schema: IndexSchema) -> None:
        """Make the search index again as `schema` says, over the stored documents (none is rewritten), while
        the current one goes on answering: the next generation is built beside it over the same prefix, and
        once it has indexed every document the metadata names it and the old one is dropped. A reader that
        finds its index gone reads the metadata again (see neighbours)."""
        new = replace(schema, generation=self.schema.generation + 1)
        drop_search_index(self.client, new.search_index)  # left by a remake that died before switching
        self._create_index(new)
        self.wait_indexed(new)
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(new.meta_key, mapping=new.meta())
        self._changed(pipe)
        pipe.execute()
        old, self.schema = self.schema, new
        drop_search_index(self.client, old.search_index)

    def wait_indexed(self, schema: IndexSchema | None = None, timeout: float = 3600) -> None:
        """Until the server (every primary of a cluster) has indexed the documents that were there before
        FT.CREATE and the writes it queued: it does so in the background, and says so in FT.INFO (RediSearch
        `indexing`, valkey-search `backfill_in_progress` and `mutation_queue_size`)."""
        name = (schema or self.schema).search_index
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if is_cluster(self.client):
                replies = self.client.execute_command("FT.INFO", name, target_nodes=ValkeyCluster.PRIMARIES)
                infos = [_pairs(reply) for reply in replies.values()]
            else:
                infos = [_pairs(self.client.execute_command("FT.INFO", name))]
            busy = [str(info.get(flag, 0)) for info in infos for flag in INDEXING_FLAGS]
            if all(value in ("0", "0.0") for value in busy):
                return
            time.sleep(0.05)
        raise ServerError(f"the server did not finish indexing {name!r} within {timeout:.0f} s")

    def fit_algorithm(self) -> tuple[str, str] | None:
        """For CLIPSEARCH_ALGORITHM=auto: the algorithm that fits the index's size, made so by rebuilding the
        search index over the stored documents (nothing is encoded). Returns (before, after) if it changed."""
        current = self.schema.algorithm
        wanted = fitting_algorithm(self.count(), current)
        if wanted == current:
            return None
        self.remake_index(replace(self.schema, algorithm=wanted))
        return current, wanted

    def cameras(self) -> list[str]:
        """Every camera of the index's photos, by name: for a choice of filters. Reads every document."""
        return sorted({photo.camera for _, photo in self.scan(("camera",)) if photo.camera}, key=str.lower)

    def describe(self) -> str:
        """One line on what the index holds, for `info` and logs."""
        schema = self.schema
        return (
            f"{self.count()} photos, model {schema.model.describe()}, {schema.algorithm}, "
            f"key schema v{schema.version}, photos from {self.photos_root or '-'}"
        )

    @property
    def photos_root(self) -> Path | None:
        """The folder the index was last loaded from (None: never loaded from a folder)."""
        root = self.client.hget(self.schema.meta_key, PHOTOS_ROOT_META)
        return Path(os.fsdecode(root)) if root else None

    def version(self) -> str:
        """What changes whenever a photo is written, touched or deleted, or the search index is made again, and
        differs between two incarnations of an index of one name: the key of anything cached from its contents."""
        created, changes = self.client.hmget(self.schema.meta_key, [CREATED_META, CHANGES_META])
        return f"{os.fsdecode(created or b'')}:{int(changes or 0)}"

    def _changed(self, pipe: Any) -> None:
        """Count a change of the index's contents, in the pipeline that makes it."""
        pipe.hincrby(self.schema.meta_key, CHANGES_META, 1)

    def derived(self, name: str, make: Callable[[], str]) -> str:
        """Text made from the index's contents (one of DERIVED), kept in the server with the version it was made
        at: each process (a CLI run, a page) reads it there rather than scan the index again, until a write
        changes the version."""
        if name not in DERIVED:
            raise ValueError(f"{name!r} is not one of {DERIVED}")
        key, version = self._derived_key(name), self.version()
        kept_version, text = self.client.hmget(key, ["version", "text"])
        if kept_version is not None and text is not None and kept_version.decode() == version:
            return bytes(text).decode("utf-8")
        made = make()
        self.client.hset(key, mapping={"version": version, "text": made.encode("utf-8")})
        return made

    def _derived_key(self, name: str) -> str:
        return f"{self.schema.name}:{name}"  # beside the metadata, outside the photo prefix

    def record_photos_root(self, root: Path) -> None:
        self.client.hset(self.schema.meta_key, PHOTOS_ROOT_META, os.fsencode(Path(root).resolve()))

    def may_prune(self, root: Path) -> bool:
        """Whether pruning against `root` is safe: never over the photos of another folder."""
        return self.photos_root == Path(root).resolve() or self.count() == 0

    def ensure_may_prune(self, root: Path) -> None:
        if not self.may_prune(root):
            raise FolderMismatch(
                f"index {self.schema.name!r} holds {self.count()} photos loaded from "
                f"{self.photos_root or 'a CSV file'}, not from {Path(root).resolve()}: pruning would delete them. "
                "Index this folder into another CLIPSEARCH_INDEX, or pass --allow-other-folder to replace them."
            )

    def drop(self) -> None:
        """Remove the index, its documents and its metadata: every generation of its search index (one left by
        a remake that died too), then the documents by key prefix (valkey-search has no FT.DROPINDEX ... DD)."""
        own = re.compile(rf"{re.escape(self.schema.name)}(\.\d+)?")
        for name in _search_indexes(self.client):
            if own.fullmatch(name):
                drop_search_index(self.client, name)
        self.delete(self.client.scan_iter(match=f"{self.schema.prefix}*", count=1000))
        self.client.delete(self.schema.meta_key, *(self._derived_key(name) for name in DERIVED))

    # --- write path ---------------------------------------------------------------------

    def upsert(self, records: Iterable[PhotoRecord], batch_size: int = 256) -> list[str]:
        """Write records in pipelined batches; each photo is one HSET, so it lands whole or not at all."""
        keys: list[str] = []
        for batch in batched(records, batch_size):
            pipe = self.client.pipeline(transaction=False)
            for record in batch:
                key = self.schema.key_for(record.path)
                mapping = record.to_mapping(self.schema.model.dim)
                pipe.hset(key, mapping=mapping)
                if lacking := [name for name in OPTIONAL_FIELDS if name not in mapping]:
                    pipe.hdel(key, *lacking)  # HSET keeps the fields a new mapping lacks: a GPS tag removed
                keys.append(key)
            self._changed(pipe)
            pipe.execute()
        return keys

    def touch(self, key: str, **values: int | float | str) -> None:
        """Update bookkeeping fields (mtime, size) of a photo whose content did not change."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(key, mapping={k: repr(v) if isinstance(v, float) else v for k, v in values.items()})
        self._changed(pipe)
        pipe.execute()

    def delete(self, keys: Iterable[str | bytes], batch_size: int = 1000) -> int:
        """Delete keys in pipelined batches, one DEL per key (slot-safe); returns how many existed."""
        deleted = 0
        for batch in batched(keys, batch_size):
            pipe = self.client.pipeline(transaction=False)
            for key in batch:
                pipe.delete(key)
            self._changed(pipe)
            deleted += sum(int(found) for found in pipe.execute()[: len(batch)])
        return deleted

    # --- query path ---------------------------------------------------------------------

    def count(self) -> int:
        return self._on_the_current_index(self._count)

    def _count(self) -> int:
        """The documents the search index holds: of every shard on a cluster (a plain FT.INFO there counts the
        shard that answers)."""
        try:
            if is_cluster(self.client):
                reply = self.client.execute_command("FT.INFO", self.schema.search_index, "PRIMARY")
                return int(_pairs(reply)["num_docs"])
            return int(self.client.ft(self.schema.search_index).info()["num_docs"])
        except valkey.ResponseError as error:
            raise refusal(self.schema.name, error) from None

    def _on_the_current_index(self, ask: Callable[[], T]) -> T:
        """ask(), and if the search index it asked is gone because another process remade it (_remake_index),
        ask() again of the index the metadata names now."""
        try:
            return ask()
        except IndexMissing:
            current = stored_schema(self.client, self.schema.name)
            if current is None or current.generation == self.schema.generation:
                raise
            self.schema = replace(self.schema, algorithm=current.algorithm, generation=current.generation)
            return ask()

    def nearest(
        self,
        vector: np.ndarray,
        k: int = 12,
        fields: Sequence[str] = PHOTO_FIELDS,
        ef_runtime: int | None = None,
        where: SearchFilter | None = None,
        order: str = "relevance",
    ) -> list[Hit]:
        """The k nearest photos by cosine similarity among those `where` lets through, best first (or, with
        order "newest" or "oldest", those k by capture time), with `fields` read in the same reply (none: the
        KNN query alone)."""
        wanted = list(dict.fromkeys([*fields, "taken"])) if order != "relevance" else list(fields)
        check_fields(wanted)
        if k <= 0:
            return []
        found = self._on_the_current_index(lambda: self._nearest_each([vector], k, ef_runtime, where, wanted))[0]
        return in_order(found, order)

    def nearest_each(
        self, vectors: Sequence[np.ndarray], k: int, ef_runtime: int | None = None, where: SearchFilter | None = None
    ) -> list[list[tuple[str, float]]]:
        """The k nearest photos (key, similarity; best first) of each vector: one pipelined round trip of
        KNN queries, which valkey-search also runs in parallel. If the search index was remade since this
        store read the metadata, it reads it again and asks the new one."""
        found = self._on_the_current_index(lambda: self._nearest_each(vectors, k, ef_runtime, where, ()))
        return [[(hit.key, hit.score) for hit in hits] for hits in found]

    def nearest_among(
        self, vector: np.ndarray, wheres: Sequence[SearchFilter], k: int, fields: Sequence[str] = PHOTO_FIELDS
    ) -> list[list[Hit]]:
        """The k nearest photos that each filter lets through, best first, with `fields`: one pipelined round
        trip of a KNN query per filter (the text matches of a hybrid search)."""
        check_fields(fields)
        if k <= 0:
            return [[] for _ in wheres]
        return self._on_the_current_index(
            lambda: self._searches([(vector, where) for where in wheres], k, None, list(fields))
        )

    def _nearest_each(
        self,
        vectors: Sequence[np.ndarray],
        k: int,
        ef_runtime: int | None,
        where: SearchFilter | None,
        fields: Sequence[str],
    ) -> list[list[Hit]]:
        """Each vector's KNN query, the photos' `fields` returned with their scores (no second round trip)."""
        return self._searches([(vector, where) for vector in vectors], k, ef_runtime, fields)

    def _searches(
        self,
        queries: Sequence[tuple[np.ndarray, SearchFilter | None]],
        k: int,
        ef_runtime: int | None,
        fields: Sequence[str],
    ) -> list[list[Hit]]:
        """KNN queries of (vector, filter) in one pipelined round trip, each with the photos' `fields`."""
        pipe = self._search_node().pipeline(transaction=False)
        for vector, where in queries:
            pipe.execute_command("FT.SEARCH", *self._knn(vector, k, ef_runtime, where, fields))
        try:
            replies = pipe.execute()
        except valkey.ResponseError as error:
            raise refusal(self.schema.name, error) from None
        return [_hits(reply, fields) for reply in replies]

    def _knn(
        self, vector: np.ndarray, k: int, ef_runtime: int | None, where: SearchFilter | None, fields: Sequence[str]
    ) -> list[Any]:
        """FT.SEARCH's arguments for the k nearest to `vector` among the photos `where` lets through, returning
        their score and `fields`."""
        query_vector = np.asarray(vector, dtype="<f4").reshape(-1)
        if query_vector.shape != (self.schema.model.dim,):
            raise ValueError(f"query vector has {query_vector.size} values, the index holds {self.schema.model.dim}")
        knn = f"KNN {int(k)} @{VECTOR_FIELD} $query_vector"
        if self.schema.algorithm == "HNSW":
            knn += f" EF_RUNTIME {max(int(ef_runtime or self.schema.ef_runtime), int(k))}"
        prefilter = (where or SearchFilter()).query()
        returned = [SCORE_ALIAS, *fields]
        return [
            self.schema.search_index, f"{prefilter}=>[{knn} AS {SCORE_ALIAS}]",
            "PARAMS", 2, "query_vector", query_vector.tobytes(),
            "RETURN", len(returned), *returned, "LIMIT", 0, int(k), "DIALECT", 2,
        ]  # fmt: skip

    def listed(
        self, where: SearchFilter, k: int, fields: Sequence[str] = PHOTO_FIELDS, newest: bool = True
    ) -> list[Hit]:
        """The k newest (or oldest) photos that `where` lets through, photos without a capture time after them:
        a query that is only filters ("Kyoto 2021"). No vector is compared, so each hit's score is NaN."""
        wanted = list(dict.fromkeys([*fields, "taken"]))
        check_fields(wanted)
        if (query := where.query()) == "*":
            raise ValueError("a listing needs a filter")

        def listed() -> list[Hit]:
            try:
                reply = self._search_node().execute_command(
                    "FT.SEARCH", self.schema.search_index, query, "RETURN", len(wanted), *wanted,
                    "SORTBY", "taken", "DESC" if newest else "ASC", "LIMIT", 0, int(k), "DIALECT", 2,
                )  # fmt: skip
            except valkey.ResponseError as error:
                raise refusal(self.schema.name, error) from None
            return [
                Hit(os.fsdecode(key), math.nan, Photo.decoded(wanted, _returned(pairs, wanted)))
                for key, pairs in zip(reply[1::2], reply[2::2], strict=True)
            ]

        return in_order(self._on_the_current_index(listed), "newest" if newest else "oldest") if k > 0 else []

    def _search_node(self) -> valkey.Valkey:
        """Where FT.SEARCH goes: the server, or on a cluster one node (its coordinator asks every shard), whose
        own client can pipeline searches."""
        if isinstance(self.client, ValkeyCluster):
            node = self.client.get_default_node()
            connection = node.valkey_connection if node is not None else None
            if connection is None:
                raise valkey.ConnectionError("no node of the cluster answers")
            return connection
        return self.client

    def get(self, keys: Sequence[str], fields: Sequence[str] = PHOTO_FIELDS) -> list[Photo | None]:
        """Stored fields of each key, with one pipelined HMGET each; None where the key is gone or is no hash
        (a key of another type under the photo prefix is not a photo, and must not stop a scan)."""
        check_fields(fields)
        if not keys:
            return []
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, list(fields))
        rows = pipe.execute(raise_on_error=False)
        return [
            None if isinstance(row, Exception) or all(value is None for value in row) else Photo.decoded(fields, row)
            for row in rows
        ]

    def is_photo_key(self, key: str) -> bool:
        return self.schema.is_photo_key(key)

    def vector_of(self, key: str) -> np.ndarray | None:
        """The stored vector of one of this index's photos; None for any other key, whatever it holds.

        Keys come from URLs (`?like=`), so nothing outside this index's photos is ever read, and every
        other case (no such key, another type, a vector of the wrong size) answers the same None.
        """
        if not self.is_photo_key(key):
            return None
        try:
            raw = self.client.hget(key, VECTOR_FIELD)
        except valkey.ResponseError:  # WRONGTYPE: a key of another type under our prefix
            return None
        if raw is None or len(raw) != 4 * self.schema.model.dim:
            return None
        return np.frombuffer(raw, dtype="<f4").copy()

    def scan(self, fields: Sequence[str] = PHOTO_FIELDS, batch_size: int = 500) -> Iterator[tuple[str, Photo]]:
        """Every photo document with the given fields, in no particular order."""
        keys = (os.fsdecode(key) for key in self.client.scan_iter(match=f"{self.schema.prefix}*", count=batch_size))
        for batch in batched(keys, batch_size):
            yield from ((key, photo) for key, photo in zip(batch, self.get(batch, fields), strict=True) if photo)


class CheckedStore(PhotoStore):
    """An index checked to hold the vectors of its schema's model (PhotoStore.open): what a search and the loader
    take, so that a vector of one model is never compared with, nor written beside, those of another."""


def refusal(index_name: str, error: Exception) -> ClipsearchError:
    """A server's error to a query as the project's own: IndexMissing if it says the index is gone, else
    SearchRefused with its words."""
    text = str(error).lower()
    if any(sign in text for sign in ("no such index", "unknown index", "not found")):
        return IndexMissing(f"index {index_name!r} is gone from the server ({error})")
    return SearchRefused(f"index {index_name!r}: {error}")


DERIVED = ("vocabulary",)  # what PhotoStore.derived keeps: the words a query can name (clipsearch.search.understanding)


def _returned(pairs: Sequence[Any], fields: Sequence[str]) -> list[Any]:
    """The values of `fields` in one document of an FT.SEARCH reply (None for one it lacks)."""
    returned = {os.fsdecode(name): value for name, value in zip(pairs[::2], pairs[1::2], strict=True)}
    return [returned.get(name) for name in fields]


def _hits(reply: Sequence[Any], fields: Sequence[str]) -> list[Hit]:
    """The photos of an FT.SEARCH reply (its count, then each key and its returned fields), with their cosine
    similarity and `fields`, best first: the servers differ in the order they return, so it is sorted here."""
    hits = []
    for key, pairs in zip(reply[1::2], reply[2::2], strict=True):
        distance, *values = _returned(pairs, [SCORE_ALIAS, *fields])
        photo = Photo.decoded(fields, values) if fields else Photo()
        hits.append(Hit(os.fsdecode(key), 1.0 - float(distance), photo))
    return sorted(hits, key=lambda hit: hit.score, reverse=True)


# The metadata, written whole if no process wrote it first: one key, so one slot on a cluster.
CLAIM_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


def _claim(client: Client, schema: IndexSchema) -> IndexSchema:
    """Record this schema as the index's, unless a racing process recorded its own first; return the winner's.

    The metadata is written before FT.CREATE, by a script that writes it only if it is not there (atomic on
    the server), so two processes with different models can never both believe the index is theirs.
    """
    fields = schema.meta() | {CREATED_META: uuid.uuid4().hex}
    if client.eval(CLAIM_SCRIPT, 1, schema.meta_key, *[item for pair in fields.items() for item in pair]):
        return schema
    stored = stored_schema(client, schema.name)
    assert stored is not None, "the metadata that won the race cannot have vanished"
    return stored


def _pairs(reply: Any) -> dict[str, Any]:
    """A reply of alternating names and values as a dict, names and scalar values as text."""
    items = list(reply)
    return {
        os.fsdecode(name): os.fsdecode(value) if isinstance(value, bytes) else value
        for name, value in zip(items[::2], items[1::2], strict=True)
    }


def _check_compatible(wanted: IndexSchema, stored: IndexSchema, writer: bool) -> None:
    steps = range(stored.version, SCHEMA_VERSION)
    upgradable = bool(steps) and all(version in UPGRADE_STEPS for version in steps)
    if upgradable and not writer:
        raise IndexMismatch(
            f"index {wanted.name!r} was made by an older clipsearch (key schema version {stored.version}) and "
            f"lacks {' and '.join(UPGRADE_STEPS[v] for v in range(stored.version, SCHEMA_VERSION))}. "
            "Run the loader once "
            "(`python -m clipsearch index FOLDER`): it upgrades the index in place, without encoding anything again."
        )
    if stored.version != SCHEMA_VERSION and not upgradable:
        raise IndexMismatch(
            f"index {wanted.name!r} uses key schema version {stored.version}, but this clipsearch "
            f"reads version {SCHEMA_VERSION}. Rebuild it with `python scripts/load_photos.py --rebuild` "
            "(or use the clipsearch release that wrote it, or another CLIPSEARCH_INDEX)."
        )
    if stored.model != wanted.model:
        raise IndexMismatch(
            f"index {wanted.name!r} holds vectors from {stored.model.describe()}, but this process uses "
            f"{wanted.model.describe()}. Set CLIPSEARCH_MODEL={stored.model.name} and "
            f"CLIPSEARCH_PRETRAINED={stored.model.pretrained} to search it, or rebuild it with "
            "`python scripts/load_photos.py --rebuild`, or use another CLIPSEARCH_INDEX."
        )
