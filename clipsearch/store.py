"""The photo index in Valkey/Redis: its schema as data, the write path, and the query path.

Only the command subset that RediSearch and valkey-search (Aiven for Valkey) share is used:
FT.CREATE ON HASH with PREFIX and a VECTOR field; FT.SEARCH with a KNN clause, PARAMS, LIMIT,
RETURN of the score alias only and DIALECT 2; FT.INFO; FT.DROPINDEX; FT._LIST. Other fields are
fetched with HMGET, and hits are sorted here rather than with SORTBY.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import valkey
from valkey.commands.search.field import VectorField
from valkey.commands.search.indexDefinition import IndexDefinition, IndexType
from valkey.commands.search.query import Query

from clipsearch.errors import (
    IndexMismatch,
    IndexMissing,
    NoVectorSearch,
    ServerUnreachable,
    WrongCredentials,
)
from clipsearch.server import EmbeddedServer
from clipsearch.settings import Settings, redact_url

# Bump when the layout of keys or hash fields changes; an index of another version is refused.
SCHEMA_VERSION = 1
VECTOR_FIELD = "vector"
SCORE_ALIAS = "score"
PHOTOS_ROOT_META = "photos_root"  # meta field: the folder the index was last loaded from
NO_VECTOR_SEARCH = "this server has no FT.CREATE with VECTOR: use Valkey with valkey-search, Redis 8, or Redis Stack"

_FIELD_DECODERS = {
    "path": os.fsdecode,
    "name": os.fsdecode,
    "content_hash": bytes.decode,
    "source": bytes.decode,
    "width": int,
    "height": int,
    "size": int,
    "mtime": float,
    "thumbnail": bytes,
    VECTOR_FIELD: lambda raw: np.frombuffer(raw, dtype="<f4"),
}
PHOTO_FIELDS = ("path", "name", "width", "height", "size", "mtime", "content_hash", "source")


@dataclass(frozen=True)
class ModelIdentity:
    """What made the vectors; vectors of different identities must never be compared."""

    name: str
    pretrained: str
    dim: int

    def describe(self) -> str:
        return f"{self.name} / {self.pretrained} ({self.dim}-d)"


@dataclass(frozen=True)
class IndexSchema:
    name: str
    model: ModelIdentity
    algorithm: str = "HNSW"
    m: int = 16
    ef_construction: int = 200
    ef_runtime: int = 100

    @classmethod
    def from_settings(cls, settings: Settings, model: ModelIdentity) -> IndexSchema:
        return cls(
            name=settings.index_name,
            model=model,
            algorithm=settings.algorithm,
            m=settings.hnsw_m,
            ef_construction=settings.hnsw_ef_construction,
            ef_runtime=settings.hnsw_ef_runtime,
        )

    @property
    def prefix(self) -> str:
        return self.prefix_of(self.name)

    @staticmethod
    def prefix_of(name: str) -> str:
        return f"{name}:photo:"

    @property
    def meta_key(self) -> str:
        return self.meta_key_of(self.name)

    @staticmethod
    def meta_key_of(name: str) -> str:
        """Kept outside the photo prefix, so the index never sees it."""
        return f"{name}:meta"

    def vector_field(self) -> VectorField:
        attributes: dict[str, Any] = {"TYPE": "FLOAT32", "DIM": self.model.dim, "DISTANCE_METRIC": "COSINE"}
        if self.algorithm == "HNSW":
            attributes |= {"M": self.m, "EF_CONSTRUCTION": self.ef_construction, "EF_RUNTIME": self.ef_runtime}
        return VectorField(VECTOR_FIELD, self.algorithm, attributes)

    def meta(self) -> dict[str, str]:
        return {
            "schema_version": str(SCHEMA_VERSION),
            "model_name": self.model.name,
            "pretrained": self.model.pretrained,
            "dim": str(self.model.dim),
            "algorithm": self.algorithm,
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
        return mapping


@dataclass(frozen=True)
class Hit:
    key: str
    score: float  # cosine similarity, 1.0 = same direction
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return self.fields.get("path", "")


def connect(settings: Settings) -> valkey.Valkey:
    """A checked client: reachable, authenticated, and with vector search."""
    url = EmbeddedServer(settings.data_dir).ensure_started() if settings.valkey_url is None else settings.valkey_url
    shown = settings.server_label
    client = valkey.Valkey.from_url(url, socket_connect_timeout=10, socket_timeout=60, health_check_interval=30)
    try:
        client.ping()
    except valkey.AuthenticationError as error:
        raise WrongCredentials(_credentials_message(shown, error)) from None
    except (valkey.ConnectionError, valkey.TimeoutError, OSError) as error:
        raise ServerUnreachable(
            f"cannot reach the Valkey/Redis server at {redact_url(url)} ({error}). "
            "Is it running, and are VALKEY_URL's host, port and TLS scheme (valkeys:// or rediss://) right?"
        ) from None
    except valkey.ResponseError as error:
        if "NOAUTH" in str(error) or "WRONGPASS" in str(error):
            raise WrongCredentials(_credentials_message(shown, error)) from None
        raise
    try:
        client.execute_command("FT._LIST")
    except valkey.ResponseError as error:
        raise NoVectorSearch(f"{shown}: {NO_VECTOR_SEARCH} ({error})") from None
    return client


def _credentials_message(shown: str, error: Exception) -> str:
    return f"{shown} refused the credentials ({error}). Check the user and password in VALKEY_URL."


def index_exists(client: valkey.Valkey, name: str) -> bool:
    return name in {os.fsdecode(existing) for existing in client.execute_command("FT._LIST")}


def stored_meta(client: valkey.Valkey, name: str) -> dict[str, str]:
    """The metadata of index `name` (empty if none); readable without knowing the model."""
    raw = client.hgetall(IndexSchema.meta_key_of(name))
    return {os.fsdecode(k): os.fsdecode(v) for k, v in raw.items()}


def drop_index(client: valkey.Valkey, name: str) -> None:
    """Remove the index, its documents and its metadata.

    valkey-search has no FT.DROPINDEX ... DD, so the documents are deleted by key prefix.
    """
    if index_exists(client, name):
        client.ft(name).dropindex(delete_documents=False)
    delete_keys(client, client.scan_iter(match=f"{IndexSchema.prefix_of(name)}*", count=1000))
    client.delete(IndexSchema.meta_key_of(name))


def delete_keys(client: valkey.Valkey, keys: Iterable[str | bytes], batch_size: int = 1000) -> int:
    """Delete keys in batches of one command each; returns how many existed."""
    deleted, batch = 0, []
    for key in keys:
        batch.append(key)
        if len(batch) >= batch_size:
            deleted += int(client.delete(*batch))
            batch = []
    if batch:
        deleted += int(client.delete(*batch))
    return deleted


class PhotoStore:
    def __init__(self, client: valkey.Valkey, schema: IndexSchema) -> None:
        self.client = client
        self.schema = schema

    @classmethod
    def open(cls, client: valkey.Valkey, schema: IndexSchema, *, create: bool = False) -> PhotoStore:
        """Check that the index fits this schema and model; with `create`, make it if missing."""
        store = cls(client, schema)
        built_as = store._check_or_create(create).get("algorithm", schema.algorithm)
        if built_as != schema.algorithm:  # the index stays what it was built as until --rebuild
            store.schema = dataclasses.replace(schema, algorithm=built_as)
        return store

    # --- the index itself ---------------------------------------------------------------

    def index_exists(self) -> bool:
        return index_exists(self.client, self.schema.name)

    def stored_meta(self) -> dict[str, str]:
        return stored_meta(self.client, self.schema.name)

    def _check_or_create(self, create: bool) -> dict[str, str]:
        """The index's metadata, after checking it (or writing it for a new index)."""
        meta = self.stored_meta()
        exists = self.index_exists()
        if meta:
            _check_meta(self.schema, meta)
        elif exists:
            raise IndexMismatch(
                f"index {self.schema.name!r} exists but carries no clipsearch schema version "
                f"(key {self.schema.meta_key!r} is missing): it was not made by this clipsearch. "
                "Choose another CLIPSEARCH_INDEX, or drop it with `python -m clipsearch drop`."
            )
        elif not create:
            raise IndexMissing(
                f"no photos indexed yet: index {self.schema.name!r} does not exist on this server. "
                "Run `python scripts/load_photos.py [FOLDER]` to index your photos."
            )
        if not exists:
            definition = IndexDefinition(prefix=[self.schema.prefix], index_type=IndexType.HASH)
            try:
                self.client.ft(self.schema.name).create_index([self.schema.vector_field()], definition=definition)
            except valkey.ResponseError as error:
                if "Index already exists" not in str(error):  # another process won the race
                    raise NoVectorSearch(f"FT.CREATE failed ({error}): {NO_VECTOR_SEARCH}") from None
            if not meta:
                meta = self.schema.meta()
                self.client.hset(self.schema.meta_key, mapping=meta)
        return meta

    def set_meta(self, **values: str) -> None:
        self.client.hset(self.schema.meta_key, mapping=values)

    def drop(self) -> None:
        drop_index(self.client, self.schema.name)

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
                pipe.execute()
        if len(pipe):
            pipe.execute()
        return keys

    def touch(self, key: str, **values: int | float | str) -> None:
        """Update bookkeeping fields (mtime, size) of a photo whose content did not change."""
        self.client.hset(key, mapping={k: repr(v) if isinstance(v, float) else v for k, v in values.items()})

    def delete(self, keys: Iterable[str]) -> int:
        return delete_keys(self.client, keys)

    # --- query path ---------------------------------------------------------------------

    def count(self) -> int:
        return int(self.client.ft(self.schema.name).info()["num_docs"])

    def search(
        self,
        vector: np.ndarray,
        k: int = 12,
        fields: Sequence[str] = PHOTO_FIELDS,
        ef_runtime: int | None = None,
    ) -> list[Hit]:
        """The k nearest photos by cosine similarity, best first."""
        query_vector = np.asarray(vector, dtype="<f4").reshape(-1)
        if query_vector.shape != (self.schema.model.dim,):
            raise ValueError(f"query vector has {query_vector.size} values, the index holds {self.schema.model.dim}")
        if k <= 0:
            return []
        knn = f"KNN {int(k)} @{VECTOR_FIELD} $query_vector"
        if self.schema.algorithm == "HNSW":
            knn += f" EF_RUNTIME {max(int(ef_runtime or self.schema.ef_runtime), int(k))}"
        query = Query(f"*=>[{knn} AS {SCORE_ALIAS}]").return_fields(SCORE_ALIAS).paging(0, int(k)).dialect(2)
        try:
            result = self.client.ft(self.schema.name).search(
                query, query_params={"query_vector": query_vector.tobytes()}
            )
        except valkey.ResponseError as error:
            if "no such index" in str(error).lower() or "not found" in str(error).lower():
                raise IndexMissing(f"index {self.schema.name!r} is gone from the server ({error})") from None
            raise
        ranked = sorted(
            ((doc.id, 1.0 - float(getattr(doc, SCORE_ALIAS))) for doc in result.docs),
            key=lambda pair: pair[1],
            reverse=True,
        )
        stored = self.get([key for key, _ in ranked], fields)
        return [Hit(key, score, values or {}) for (key, score), values in zip(ranked, stored, strict=False)]

    def get(self, keys: Sequence[str], fields: Sequence[str] = PHOTO_FIELDS) -> list[dict[str, Any] | None]:
        """Stored fields of each key (None where the key is gone), with one pipelined HMGET each."""
        if not keys:
            return []
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, list(fields))
        rows = pipe.execute()
        return [None if all(value is None for value in row) else _decode(fields, row) for row in rows]

    def vector_of(self, key: str) -> np.ndarray | None:
        raw = self.client.hget(key, VECTOR_FIELD)
        return None if raw is None else np.frombuffer(raw, dtype="<f4").copy()

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


def _pairs(keys: list[str], rows: list[dict[str, Any] | None]) -> Iterator[tuple[str, dict[str, Any]]]:
    return ((key, row) for key, row in zip(keys, rows, strict=False) if row is not None)


def _decode(fields: Sequence[str], row: Sequence[bytes | None]) -> dict[str, Any]:
    return {
        name: None if raw is None else _FIELD_DECODERS.get(name, bytes.decode)(raw)
        for name, raw in zip(fields, row, strict=False)
    }


def _check_meta(schema: IndexSchema, meta: dict[str, str]) -> None:
    stored_version = meta.get("schema_version", "?")
    if stored_version != str(SCHEMA_VERSION):
        raise IndexMismatch(
            f"index {schema.name!r} uses key schema version {stored_version}, but this clipsearch "
            f"reads version {SCHEMA_VERSION}. Rebuild it with `python scripts/load_photos.py --rebuild` "
            "(or use the clipsearch release that wrote it, or another CLIPSEARCH_INDEX)."
        )
    stored = ModelIdentity(meta.get("model_name", "?"), meta.get("pretrained", "?"), int(meta.get("dim", 0)))
    if stored != schema.model:
        raise IndexMismatch(
            f"index {schema.name!r} holds vectors from {stored.describe()}, but this process uses "
            f"{schema.model.describe()}. Set CLIPSEARCH_MODEL={stored.name} and "
            f"CLIPSEARCH_PRETRAINED={stored.pretrained} to search it, or rebuild it with "
            "`python scripts/load_photos.py --rebuild`, or use another CLIPSEARCH_INDEX."
        )
