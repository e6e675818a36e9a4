"""The photo index in Valkey/Redis: its schema as data, the write path, and the query path.

Only the command subset that RediSearch and valkey-search (Aiven for Valkey) share is used:
FT.CREATE ON HASH with PREFIX and VECTOR, NUMERIC and TAG fields; FT.SEARCH with a KNN clause after
a pre-filter of NUMERIC ranges and TAG sets, PARAMS, LIMIT, RETURN of the score alias only and
DIALECT 2; FT.INFO; FT.DROPINDEX; FT._LIST. Other fields are fetched with HMGET, and hits are sorted
here rather than with SORTBY.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import valkey
from valkey.commands.search.field import Field, NumericField, TagField, VectorField
from valkey.commands.search.indexDefinition import IndexDefinition, IndexType
from valkey.commands.search.query import Query
from valkey.commands.search.result import Result

from clipsearch.connection import NO_VECTOR_SEARCH
from clipsearch.errors import (
    ClipsearchError,
    FolderMismatch,
    IndexMismatch,
    IndexMissing,
    NoVectorSearch,
    SearchRefused,
)
from clipsearch.identity import ModelIdentity
from clipsearch.photos import DAY, PhotoFacts, day_start, folders_of
from clipsearch.settings import Settings

# Bump when the layout of keys or hash fields changes; an index of another version is refused, except that
# the loader upgrades version 1 (no capture facts) in place, keeping the vectors.
SCHEMA_VERSION = 2
UPGRADABLE_VERSION = 1
VECTOR_FIELD = "vector"
TAKEN_FIELD = "taken"  # NUMERIC: capture time (wall clock as if UTC, photos.PhotoFacts)
FOLDERS_FIELD = "folders"  # TAG: every folder a photo is in, lower case ("2021", "2021/japan")
CAMERA_FIELD = "camera_tag"  # TAG: make and model, lower case
TAG_SEPARATOR = "|"
ORDERS = ("relevance", "newest", "oldest")
# CLIPSEARCH_ALGORITHM=auto: exact FLAT search while its KNN stays within a text query's encoding time
# (scripts/bench_search.py: p50 21.6 ms at 100,000 photos here, so about 11 ms at 50,000, the time ONNX
# Runtime takes to encode a query), HNSW above; back to FLAT only below 80 % of it, so that a collection
# around the limit does not switch back and forth.
AUTO_FLAT_UP_TO = 50_000
# What schema version 2 added to each photo's hash (all of it read from the photo's file, none from the model).
FACT_FIELDS = ("taken", "taken_from", "offset", "camera", CAMERA_FIELD, "latitude", "longitude", FOLDERS_FIELD)
SCORE_ALIAS = "score"
PHOTOS_ROOT_META = "photos_root"  # meta field: the folder the index was last loaded from
CREATED_META = "created"  # meta field: a token of this index's creation (a dropped and remade index has another)
CHANGES_META = "changes"  # meta field: counts the writes, touches, deletes and remakes of the index

_FIELD_DECODERS: dict[str, Callable[[bytes], Any]] = {
    "path": os.fsdecode,
    "name": os.fsdecode,
    "content_hash": bytes.decode,
    "source": bytes.decode,
    "width": int,
    "height": int,
    "size": int,
    "mtime": float,
    "thumbnail": bytes,
    "taken": float,
    "latitude": float,
    "longitude": float,
    VECTOR_FIELD: lambda raw: np.frombuffer(raw, dtype="<f4"),
}
T = TypeVar("T")
PHOTO_FIELDS = (
    "path", "name", "width", "height", "size", "mtime", "content_hash", "source", "taken", "taken_from", "offset",
    "camera",
)  # fmt: skip


def _meta_key(index_name: str) -> str:
    """Kept outside the photo prefix, so the index never sees it."""
    return f"{index_name}:meta"


@dataclass(frozen=True)
class IndexSchema:
    """An index as data: its name (and so its keys), the model of its vectors, and its algorithm."""

    name: str
    model: ModelIdentity
    algorithm: str
    m: int
    ef_construction: int
    ef_runtime: int
    version: int = SCHEMA_VERSION
    generation: int = 0  # of the search index: each remake builds the next one beside the current

    @property
    def search_index(self) -> str:
        """The name of the server's search index over the photos: the index's own name, then `name.N` for the
        Nth remake (a name no CLIPSEARCH_INDEX can take, since it allows no dots)."""
        return self.name if self.generation == 0 else f"{self.name}.{self.generation}"

    @classmethod
    def from_settings(cls, settings: Settings, model: ModelIdentity) -> IndexSchema:
        return cls(
            name=settings.index_name,
            model=model,
            algorithm="FLAT" if settings.algorithm == "AUTO" else settings.algorithm,  # a new index is small
            m=settings.hnsw_m,
            ef_construction=settings.hnsw_ef_construction,
            ef_runtime=settings.hnsw_ef_runtime,
        )

    @classmethod
    def from_existing(cls, client: valkey.Valkey, name: str) -> IndexSchema | None:
        """The schema index `name` was made with, read from its metadata; None if there is no such index.

        Needs no model, so an index can be described or dropped by a process that has none.
        """
        meta = {os.fsdecode(k): os.fsdecode(v) for k, v in client.hgetall(_meta_key(name)).items()}
        if meta:
            return cls.from_meta(name, meta)
        if _index_exists(client, name):
            raise IndexMismatch(
                f"index {name!r} exists but carries no clipsearch schema version (key {_meta_key(name)!r} is "
                "missing): it was not made by this clipsearch, and clipsearch leaves it alone. "
                "Choose another CLIPSEARCH_INDEX."
            )
        return None

    @classmethod
    def from_meta(cls, name: str, meta: Mapping[str, str]) -> IndexSchema:
        defaults = Settings()  # what indexes written before a field was recorded were made with
        try:
            return cls(
                name=name,
                model=ModelIdentity(meta.get("model_name", "?"), meta.get("pretrained", "?"), int(meta.get("dim", 0))),
                algorithm=meta.get("algorithm", "HNSW"),  # the only one before the field was recorded
                m=int(meta.get("m", defaults.hnsw_m)),
                ef_construction=int(meta.get("ef_construction", defaults.hnsw_ef_construction)),
                ef_runtime=int(meta.get("ef_runtime", defaults.hnsw_ef_runtime)),
                version=int(meta.get("schema_version", 0)),
                generation=int(meta.get("generation", 0)),
            )
        except ValueError as error:
            raise IndexMismatch(f"the metadata of index {name!r} ({_meta_key(name)}) is damaged: {error}") from None

    @property
    def prefix(self) -> str:
        return f"{self.name}:photo:"

    @property
    def meta_key(self) -> str:
        return _meta_key(self.name)

    def fields(self) -> list[Field]:
        """The indexed fields: the vector, and what filters read."""
        attributes: dict[str, Any] = {"TYPE": "FLOAT32", "DIM": self.model.dim, "DISTANCE_METRIC": "COSINE"}
        if self.algorithm == "HNSW":
            attributes |= {"M": self.m, "EF_CONSTRUCTION": self.ef_construction, "EF_RUNTIME": self.ef_runtime}
        return [
            VectorField(VECTOR_FIELD, self.algorithm, attributes),
            NumericField(TAKEN_FIELD),
            TagField(FOLDERS_FIELD, separator=TAG_SEPARATOR),
            TagField(CAMERA_FIELD, separator=TAG_SEPARATOR),
        ]

    def meta(self) -> dict[str, str]:
        return {
            "schema_version": str(self.version),
            "model_name": self.model.name,
            "pretrained": self.model.pretrained,
            "dim": str(self.model.dim),
            "algorithm": self.algorithm,
            "m": str(self.m),
            "ef_construction": str(self.ef_construction),
            "ef_runtime": str(self.ef_runtime),
            "generation": str(self.generation),
        }

    def key_for(self, path: str) -> str:
        """One key per photo path, so writing a photo twice replaces it."""
        return self.prefix + hashlib.blake2b(os.fsencode(path), digest_size=16).hexdigest()


@dataclass(frozen=True)
class PhotoRecord:
    """One photo document as written: a hash holding the vector and what the app shows."""

    path: str
    vector: np.ndarray
    name: str = ""
    width: int = 0
    height: int = 0
    size: int = 0
    mtime: float = 0.0
    content_hash: str = ""
    source: str = "file"
    thumbnail: bytes | None = None
    facts: PhotoFacts | None = None  # None: unknown (a downloaded photo keeps none)

    def to_mapping(self, dim: int) -> dict[str, bytes | str | int | float]:
        vector = np.asarray(self.vector, dtype="<f4")
        if vector.shape != (dim,):
            raise ValueError(f"{self.path!r}: vector has shape {vector.shape}, the index expects ({dim},)")
        mapping: dict[str, bytes | str | int | float] = {
            VECTOR_FIELD: vector.tobytes(),
            "path": os.fsencode(self.path),
            "name": os.fsencode(self.name or os.path.basename(self.path)),
            "width": self.width,
            "height": self.height,
            "size": self.size,
            "mtime": repr(float(self.mtime)),
            "content_hash": self.content_hash,
            "source": self.source,
        }
        if self.thumbnail is not None:
            mapping["thumbnail"] = self.thumbnail
        return mapping | fact_mapping(self.path, self.source, self.facts)


def fact_mapping(path: str, source: str, facts: PhotoFacts | None) -> dict[str, bytes | str | int | float]:
    """The hash fields of a photo's facts and folders (a downloaded photo is in no folder)."""
    folders = folders_of(path) if source == "file" else []
    mapping: dict[str, bytes | str | int | float] = {
        FOLDERS_FIELD: TAG_SEPARATOR.join(tag_value(folder) for folder in folders),
    }
    if facts is not None:
        mapping |= {
            "taken": repr(float(facts.taken)),
            "taken_from": facts.taken_from,
            "offset": facts.offset,
            "camera": facts.camera,
            CAMERA_FIELD: tag_value(facts.camera),
        }
        if facts.latitude is not None and facts.longitude is not None:
            mapping |= {"latitude": repr(facts.latitude), "longitude": repr(facts.longitude)}
    return mapping


def tag_value(text: str) -> str:
    """A value as stored in and searched for in a TAG field: lower case (RediSearch and valkey-search fold
    case differently by default), without the separator."""
    return text.strip().lower().replace(TAG_SEPARATOR, "/")


@dataclass(frozen=True)
class SearchFilter:
    """Which photos a search may return: taken in [after, before) (PhotoFacts time), in a folder (and its
    subfolders), by a camera. Every user-given value is escaped into the query."""

    after: float | None = None
    before: float | None = None
    folder: str | None = None
    camera: str | None = None

    @classmethod
    def of_days(
        cls, after: str | None, before: str | None, folder: str | None = None, camera: str | None = None
    ) -> SearchFilter:
        """The filter a person sets: days as YYYY-MM-DD, both included (ValueError for a malformed one)."""
        return cls(
            after=day_start(after) if after else None,
            before=day_start(before) + DAY if before else None,
            folder=folder or None,
            camera=camera or None,
        )

    def query(self) -> str:
        """The pre-filter of a KNN query, or "*" for none."""
        clauses = []
        if self.after is not None or self.before is not None:
            low = "-inf" if self.after is None else repr(float(self.after))
            high = "+inf" if self.before is None else f"({float(self.before)!r}"
            clauses.append(f"@{TAKEN_FIELD}:[{low} {high}]")
        for field_name, value in ((FOLDERS_FIELD, self.folder), (CAMERA_FIELD, self.camera)):
            if tag := tag_value((value or "").strip().strip("/")):  # " ", "/ /", a tab: no filter
                clauses.append(f"@{field_name}:{{{escape_tag(tag)}}}")
        return f"({' '.join(clauses)})" if clauses else "*"


def escape_tag(value: str) -> str:
    """Every character but letters, digits and _ escaped with a backslash: the query syntaxes of RediSearch
    and valkey-search give meaning to punctuation and spaces inside {...}."""
    return "".join(char if char.isalnum() or char == "_" else "\\" + char for char in value)


@dataclass(frozen=True)
class Hit:
    key: str
    score: float  # cosine similarity, 1.0 = same direction
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return str(self.fields.get("path", ""))


def _search_indexes(client: valkey.Valkey) -> set[str]:
    return {os.fsdecode(existing) for existing in client.execute_command("FT._LIST")}


def _index_exists(client: valkey.Valkey, name: str) -> bool:
    return name in _search_indexes(client)


def _drop_search_index(client: valkey.Valkey, name: str) -> None:
    """FT.DROPINDEX with the name alone: the documents stay (valkey-search takes no other form)."""
    if _index_exists(client, name):
        client.execute_command("FT.DROPINDEX", name)


class PhotoStore:
    def __init__(self, client: valkey.Valkey, schema: IndexSchema) -> None:
        self.client = client
        self.schema = schema

    @classmethod
    def open(cls, client: valkey.Valkey, schema: IndexSchema, *, create: bool = False) -> PhotoStore:
        """The index, checked to hold vectors of this schema's model; with `create`, made if missing.

        An index keeps the algorithm and graph parameters it was built with until it is rebuilt;
        EF_RUNTIME goes with each query, so this schema's applies at once.
        """
        stored = IndexSchema.from_existing(client, schema.name)
        if stored is None:
            if not create:
                raise IndexMissing(
                    f"no photos indexed yet: index {schema.name!r} does not exist on this server. "
                    "Run `python scripts/load_photos.py [FOLDER]` to index your photos."
                )
            stored = _claim(client, schema)
        _check_compatible(schema, stored, writer=create)
        store = cls(
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
    def existing(cls, client: valkey.Valkey, name: str) -> PhotoStore:
        """An existing index as it was made, whatever its model: to describe it or drop it."""
        stored = IndexSchema.from_existing(client, name)
        if stored is None:
            raise IndexMissing(f"index {name!r} does not exist on this server")
        return cls(client, stored)

    def _create_index(self, schema: IndexSchema) -> None:
        definition = IndexDefinition(prefix=[schema.prefix], index_type=IndexType.HASH)
        try:
            self.client.ft(schema.search_index).create_index(schema.fields(), definition=definition)
        except valkey.ResponseError as error:
            if "Index already exists" not in str(error):  # another process won the race
                raise NoVectorSearch(f"FT.CREATE failed ({error}): {NO_VECTOR_SEARCH}") from None

    # --- the index itself ---------------------------------------------------------------

    @property
    def needs_upgrade(self) -> bool:
        """An index of the previous key schema, opened by a writer: upgrade() it before writing."""
        return self.schema.version == UPGRADABLE_VERSION

    def upgrade(self, facts_of: Callable[[str, str], PhotoFacts | None]) -> int:
        """Bring an index of the previous key schema to this one, in place: every photo keeps its vector and
        gains its facts (`facts_of(path, source)`) and folders; the search index is made again with the new
        fields. Returns how many photos were upgraded."""
        # No search index while every document changes: readers refuse a version 1 index anyway.
        _drop_search_index(self.client, self.schema.search_index)
        upgraded = 0
        pipe = self.client.pipeline(transaction=False)
        for key, row in self.scan(("path", "source")):
            path, source = row["path"] or "", row["source"]
            pipe.hset(key, mapping=fact_mapping(path, source, facts_of(path, source)))
            upgraded += 1
            if len(pipe) >= 500:
                pipe.execute()
        pipe.execute()
        self._remake_index(replace(self.schema, version=SCHEMA_VERSION))
        return upgraded

    def _remake_index(self, schema: IndexSchema) -> None:
        """Make the search index again as `schema` says, over the stored documents (none is rewritten), while
        the current one goes on answering: the next generation is built beside it over the same prefix, and
        once it has indexed every document the metadata names it and the old one is dropped. A reader that
        finds its index gone reads the metadata again (see neighbours)."""
        new = replace(schema, generation=self.schema.generation + 1)
        _drop_search_index(self.client, new.search_index)  # left by a remake that died before switching
        self._create_index(new)
        self.wait_indexed(new)
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(new.meta_key, mapping=new.meta())
        self._changed(pipe)
        pipe.execute()
        old, self.schema = self.schema, new
        _drop_search_index(self.client, old.search_index)

    def wait_indexed(self, schema: IndexSchema | None = None, timeout: float = 3600) -> None:
        """Until the server has indexed the documents that were there before FT.CREATE (it does so in the
        background: RediSearch reports `indexing`, valkey-search `backfill_in_progress`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.client.ft((schema or self.schema).search_index).info()
            busy = [info.get(flag, 0) for flag in ("indexing", "backfill_in_progress")]
            if all(str(os.fsdecode(value) if isinstance(value, bytes) else value) in ("0", "0.0") for value in busy):
                return
            time.sleep(0.05)

    def fit_algorithm(self) -> tuple[str, str] | None:
        """For CLIPSEARCH_ALGORITHM=auto: the algorithm that fits the index's size, made so by rebuilding the
        search index over the stored documents (nothing is encoded). Returns (before, after) if it changed."""
        count, current = self.count(), self.schema.algorithm
        wanted = "HNSW" if count > AUTO_FLAT_UP_TO else "FLAT" if count < 0.8 * AUTO_FLAT_UP_TO else current
        if wanted == current:
            return None
        self._remake_index(replace(self.schema, algorithm=wanted))
        return current, wanted

    def cameras(self) -> list[str]:
        """Every camera of the index's photos, by name: for a choice of filters. Reads every document."""
        return sorted({row["camera"] for _, row in self.scan(("camera",)) if row["camera"]}, key=str.lower)

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
                _drop_search_index(self.client, name)
        self.delete(self.client.scan_iter(match=f"{self.schema.prefix}*", count=1000))
        self.client.delete(self.schema.meta_key)

    # --- write path ---------------------------------------------------------------------

    def upsert(self, records: Iterable[PhotoRecord], batch_size: int = 256) -> list[str]:
        """Write records in pipelined batches; each photo is one HSET, so it lands whole or not at all."""
        keys: list[str] = []
        pipe = self.client.pipeline(transaction=False)
        for record in records:
            key = self.schema.key_for(record.path)
            pipe.hset(key, mapping=record.to_mapping(self.schema.model.dim))
            if record.thumbnail is None:  # HSET keeps fields the new mapping lacks
                pipe.hdel(key, "thumbnail")
            keys.append(key)
            if len(pipe) >= 2 * batch_size:
                self._changed(pipe)
                pipe.execute()
        if len(pipe):
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
        """Delete keys in batches of one command each; returns how many existed."""
        deleted, batch = 0, []
        for key in keys:
            batch.append(key)
            if len(batch) >= batch_size:
                deleted += self._delete(batch)
                batch = []
        if batch:
            deleted += self._delete(batch)
        return deleted

    def _delete(self, keys: list[str | bytes]) -> int:
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(*keys)
        self._changed(pipe)
        return int(pipe.execute()[0])

    # --- query path ---------------------------------------------------------------------

    def count(self) -> int:
        return self._on_the_current_index(self._count)

    def _count(self) -> int:
        try:
            return int(self.client.ft(self.schema.search_index).info()["num_docs"])
        except valkey.ResponseError as error:
            raise refusal(self.schema.name, error) from None

    def _on_the_current_index(self, ask: Callable[[], T]) -> T:
        """ask(), and if the search index it asked is gone because another process remade it (_remake_index),
        ask() again of the index the metadata names now."""
        try:
            return ask()
        except IndexMissing:
            current = IndexSchema.from_existing(self.client, self.schema.name)
            if current is None or current.generation == self.schema.generation:
                raise
            self.schema = replace(self.schema, algorithm=current.algorithm, generation=current.generation)
            return ask()

    def search(
        self,
        vector: np.ndarray,
        k: int = 12,
        fields: Sequence[str] = PHOTO_FIELDS,
        ef_runtime: int | None = None,
        where: SearchFilter | None = None,
        order: str = "relevance",
    ) -> list[Hit]:
        """The k nearest photos by cosine similarity among those `where` lets through, best first; or, with
        order "newest" or "oldest", those k by capture time (photos without one last)."""
        ranked = self.nearest(vector, k, ef_runtime, where)
        wanted = list(dict.fromkeys([*fields, "taken"])) if order != "relevance" else list(fields)
        stored = self.get([key for key, _ in ranked], wanted)
        hits = [Hit(key, score, values or {}) for (key, score), values in zip(ranked, stored, strict=False)]
        return in_order(hits, order)

    def nearest(
        self, vector: np.ndarray, k: int, ef_runtime: int | None = None, where: SearchFilter | None = None
    ) -> list[tuple[str, float]]:
        """The keys and similarities of the k nearest photos that `where` lets through, best first: the KNN
        query alone, for a caller that reads the fields it needs itself."""
        return self.neighbours([vector], k, ef_runtime, where)[0] if k > 0 else []

    def neighbours(
        self, vectors: Sequence[np.ndarray], k: int, ef_runtime: int | None = None, where: SearchFilter | None = None
    ) -> list[list[tuple[str, float]]]:
        """The k nearest photos (key, similarity; best first) of each vector: one pipelined round trip of
        KNN queries, which valkey-search also runs in parallel. If the search index was remade since this
        store read the metadata, it reads it again and asks the new one."""
        return self._on_the_current_index(lambda: self._neighbours(vectors, k, ef_runtime, where))

    def _neighbours(
        self, vectors: Sequence[np.ndarray], k: int, ef_runtime: int | None, where: SearchFilter | None
    ) -> list[list[tuple[str, float]]]:
        pipe = self.client.ft(self.schema.search_index).pipeline(transaction=False)
        for vector in vectors:
            query, params = self._knn(vector, k, ef_runtime, where)
            pipe.search(query, query_params=params)
        try:
            replies = pipe.execute()
        except valkey.ResponseError as error:
            raise refusal(self.schema.name, error) from None
        return [_ranked(Result(reply, True, duration=0).docs) for reply in replies]

    def _knn(
        self, vector: np.ndarray, k: int, ef_runtime: int | None, where: SearchFilter | None
    ) -> tuple[Query, dict[str, bytes]]:
        """A KNN query of the k nearest to `vector` among the photos `where` lets through, and its PARAMS."""
        query_vector = np.asarray(vector, dtype="<f4").reshape(-1)
        if query_vector.shape != (self.schema.model.dim,):
            raise ValueError(f"query vector has {query_vector.size} values, the index holds {self.schema.model.dim}")
        knn = f"KNN {int(k)} @{VECTOR_FIELD} $query_vector"
        if self.schema.algorithm == "HNSW":
            knn += f" EF_RUNTIME {max(int(ef_runtime or self.schema.ef_runtime), int(k))}"
        prefilter = (where or SearchFilter()).query()
        query = Query(f"{prefilter}=>[{knn} AS {SCORE_ALIAS}]").return_fields(SCORE_ALIAS).paging(0, int(k)).dialect(2)
        return query, {"query_vector": query_vector.tobytes()}

    def get(self, keys: Sequence[str], fields: Sequence[str] = PHOTO_FIELDS) -> list[dict[str, Any] | None]:
        """Stored fields of each key, with one pipelined HMGET each; None where the key is gone or is no hash
        (a key of another type under the photo prefix is not a photo, and must not stop a scan)."""
        if not keys:
            return []
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, list(fields))
        rows = pipe.execute(raise_on_error=False)
        return [
            None if isinstance(row, Exception) or all(value is None for value in row) else _decode(fields, row)
            for row in rows
        ]

    def is_photo_key(self, key: str) -> bool:
        """Whether `key` has the form of one of this index's photo keys (it may still not exist)."""
        digest = key.removeprefix(self.schema.prefix)
        return key.startswith(self.schema.prefix) and len(digest) == 32 and all(c in "0123456789abcdef" for c in digest)

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

    def scan(self, fields: Sequence[str] = PHOTO_FIELDS, batch_size: int = 500) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every photo document with the given fields, in no particular order."""
        batch: list[str] = []
        for raw_key in self.client.scan_iter(match=f"{self.schema.prefix}*", count=batch_size):
            batch.append(os.fsdecode(raw_key))
            if len(batch) >= batch_size:
                yield from _pairs(batch, self.get(batch, fields))
                batch = []
        if batch:
            yield from _pairs(batch, self.get(batch, fields))


def refusal(index_name: str, error: Exception) -> ClipsearchError:
    """A server's error to a query as the project's own: IndexMissing if it says the index is gone, else
    SearchRefused with its words."""
    text = str(error).lower()
    if any(sign in text for sign in ("no such index", "unknown index", "not found")):
        return IndexMissing(f"index {index_name!r} is gone from the server ({error})")
    return SearchRefused(f"index {index_name!r}: {error}")


def in_order(hits: list[Hit], order: str) -> list[Hit]:
    """Hits best first as they come ("relevance"), or by capture time, photos without one last. Stable:
    equal times keep their relevance order."""
    if order == "relevance":
        return hits
    if order not in ORDERS:
        raise ValueError(f"order {order!r}: choose one of {', '.join(ORDERS)}")
    newest = order == "newest"
    return sorted(hits, key=lambda hit: (hit.fields.get("taken") is None, _signed(hit.fields.get("taken"), newest)))


def _ranked(docs: Iterable[Any]) -> list[tuple[str, float]]:
    """(key, cosine similarity) of a KNN reply's documents, best first: the servers differ in the order they
    return, so it is sorted here."""
    pairs = ((os.fsdecode(doc.id), 1.0 - float(getattr(doc, SCORE_ALIAS))) for doc in docs)
    return sorted(pairs, key=lambda pair: pair[1], reverse=True)


def _signed(taken: float | None, newest: bool) -> float:
    return 0.0 if taken is None else -taken if newest else taken


def _pairs(keys: list[str], rows: list[dict[str, Any] | None]) -> Iterator[tuple[str, dict[str, Any]]]:
    return ((key, row) for key, row in zip(keys, rows, strict=False) if row is not None)


def _decode(fields: Sequence[str], row: Sequence[bytes | None]) -> dict[str, Any]:
    return {
        name: None if raw is None else _FIELD_DECODERS.get(name, bytes.decode)(raw)
        for name, raw in zip(fields, row, strict=False)
    }


def _claim(client: valkey.Valkey, schema: IndexSchema) -> IndexSchema:
    """Record this schema as the index's, unless a racing process recorded its own first; return the winner's.

    The metadata is written before FT.CREATE, in one transaction that fails if it appeared meanwhile,
    so two processes with different models can never both believe the index is theirs.
    """
    with client.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(schema.meta_key)
            if not pipe.exists(schema.meta_key):
                pipe.multi()
                pipe.hset(schema.meta_key, mapping=schema.meta() | {CREATED_META: uuid.uuid4().hex})
                pipe.execute()
                return schema
        except valkey.WatchError:
            pass
    stored = IndexSchema.from_existing(client, schema.name)
    assert stored is not None, "the metadata that won the race cannot have vanished"
    return stored


def _check_compatible(wanted: IndexSchema, stored: IndexSchema, writer: bool) -> None:
    if stored.version == UPGRADABLE_VERSION and not writer:
        raise IndexMismatch(
            f"index {wanted.name!r} was made by an older clipsearch (key schema version {stored.version}) and "
            "lacks the dates, folders and cameras that filters need. Run the loader once "
            "(`python -m clipsearch index FOLDER`): it upgrades the index in place, without encoding anything again."
        )
    if stored.version not in (SCHEMA_VERSION, UPGRADABLE_VERSION):
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
