"""The index as data: one table of a photo's fields (FIELDS) drives what is written, what is read and how it
is decoded, and which fields the search index holds; IndexSchema names an index and records how it was made.

Nothing here talks to a server: clipsearch.index.store does the I/O, clipsearch.index.filters the query syntax.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

import numpy as np
from valkey.commands.search.field import Field, NumericField, TagField, TextField, VectorField

from clipsearch.errors import IndexMismatch
from clipsearch.ingest.facts import PhotoFacts
from clipsearch.ingest.files import folders_of
from clipsearch.ingest.places import Place, fold_name, places_at
from clipsearch.model.identity import ModelIdentity
from clipsearch.search.words import folder_words, name_words
from clipsearch.settings import Settings

# The layout of keys and hash fields. Each step of the ladder (clipsearch.index.upgrades) brings an index one
# version up in place; an index newer than this, or older than the ladder reaches, is refused.
SCHEMA_VERSION = 4
# What each step of the ladder adds: UPGRADE_STEPS[n] brings a version n index to version n + 1.
UPGRADE_STEPS = {
    1: "the dates, folders and cameras that filters need",
    2: "the places of photos with a GPS position",
    3: "the words of file and folder names that a search matches",
}
TAG_SEPARATOR = "|"
# CLIPSEARCH_ALGORITHM=auto: exact FLAT search up to this many photos, HNSW above (docs/indexing.md says why);
# back to FLAT only below 80 % of it, so that a collection around the limit does not switch back and forth.
AUTO_FLAT_UP_TO = 50_000


def fitting_algorithm(count: int, current: str) -> str:
    """The algorithm an index of `count` photos should have under CLIPSEARCH_ALGORITHM=auto."""
    if count > AUTO_FLAT_UP_TO:
        return "HNSW"
    return "FLAT" if count < 0.8 * AUTO_FLAT_UP_TO else current


@dataclass(frozen=True)
class FieldSpec:
    """One hash field of a photo: how its stored bytes read back, and how the search index holds it."""

    name: str
    decode: Callable[[bytes], Any]
    indexed: Literal["vector", "numeric", "tag", "text"] | None = None
    since: int = 1  # the schema version that added it


def _vector(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype="<f4")


FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        FieldSpec("vector", _vector, "vector"),
        FieldSpec("path", os.fsdecode),  # relative to the folder indexed, or a URL
        FieldSpec("name", os.fsdecode),
        FieldSpec("content_hash", bytes.decode),
        FieldSpec("source", bytes.decode),  # "file" or "url"
        FieldSpec("width", int),
        FieldSpec("height", int),
        FieldSpec("size", int),
        FieldSpec("mtime", float),
        FieldSpec("thumbnail", bytes),
        FieldSpec("taken", float, "numeric", since=2),  # capture time, wall clock as if UTC (photos.PhotoFacts)
        FieldSpec("taken_from", bytes.decode, since=2),  # "exif" or "file"
        FieldSpec("offset", bytes.decode, since=2),
        FieldSpec("camera", bytes.decode, since=2),
        FieldSpec("latitude", float, "numeric", since=2),  # degrees (indexed since 3: the radius filter)
        FieldSpec("longitude", float, "numeric", since=2),
        FieldSpec("folders", bytes.decode, "tag", since=2),  # every folder a photo is in, lower case
        FieldSpec("camera_tag", bytes.decode, "tag", since=2),  # make and model, lower case
        FieldSpec("city", bytes.decode, since=3),  # the place nearest the position (clipsearch.ingest.places)
        FieldSpec("region", bytes.decode, since=3),
        FieldSpec("country", bytes.decode, since=3),
        FieldSpec("places", bytes.decode, "tag", since=3),  # city, region and country, folded (places.fold_name)
        FieldSpec("name_words", bytes.decode, "text", since=4),  # the file name's words (clipsearch.search.words)
        FieldSpec("folder_words", bytes.decode, "text", since=4),  # the words of the folders it is in
        FieldSpec("text", bytes.decode, "text", since=4),  # the words written in it (clipsearch.model.reading)
        FieldSpec("text_read", bytes.decode, since=4),  # what read them (reading.READER); absent: not read
    )
}
VECTOR_FIELD = "vector"
# What a result shows (the thumbnail is asked for apart: it is the largest field).
PHOTO_FIELDS = (
    "path", "name", "width", "height", "size", "mtime", "content_hash", "source", "taken", "taken_from", "offset",
    "camera", "latitude", "longitude", "city", "region", "country",
)  # fmt: skip
# What a photo may lack (no EXIF, no GPS, no place near, its text not read): rewriting a photo removes those its new
# file lacks.
OPTIONAL_FIELDS = ("thumbnail", "taken", "taken_from", "offset", "camera", "camera_tag", "latitude", "longitude",
                   "city", "region", "country", "places", "text", "text_read")  # fmt: skip


@dataclass(frozen=True)
class Photo:
    """A photo's stored fields as read back; a field not asked for (or not stored) is None."""

    vector: np.ndarray | None = None
    path: str | None = None
    name: str | None = None
    content_hash: str | None = None
    source: str | None = None
    width: int | None = None
    height: int | None = None
    size: int | None = None
    mtime: float | None = None
    thumbnail: bytes | None = None
    taken: float | None = None
    taken_from: str | None = None
    offset: str | None = None
    camera: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    folders: str | None = None
    camera_tag: str | None = None
    city: str | None = None
    region: str | None = None
    country: str | None = None
    places: str | None = None
    name_words: str | None = None
    folder_words: str | None = None
    text: str | None = None
    text_read: str | None = None

    @property
    def place(self) -> Place | None:
        """Where it was taken, in words; None without a position or a populated place near it (or not read)."""
        if not (self.city or self.region or self.country):
            return None
        return Place(self.city or "", self.region or "", self.country or "")

    @property
    def position(self) -> tuple[float, float] | None:
        return None if self.latitude is None or self.longitude is None else (self.latitude, self.longitude)

    @classmethod
    def decoded(cls, names: Sequence[str], raw: Sequence[bytes | None]) -> Photo:
        """The fields `names` from their stored bytes (HMGET's reply), each decoded as FIELDS says."""
        pairs = zip(names, raw, strict=True)
        return cls(**{name: None if value is None else FIELDS[name].decode(value) for name, value in pairs})

    def merged(self, other: Photo) -> Photo:
        """This photo with the fields `other` holds."""
        held = {spec.name: getattr(other, spec.name) for spec in fields(other)}
        return replace(self, **{name: value for name, value in held.items() if value is not None})


def check_fields(names: Sequence[str]) -> None:
    unknown = [name for name in names if name not in FIELDS]
    if unknown:
        raise ValueError(f"no such photo field: {', '.join(unknown)} (see clipsearch.index.schema.FIELDS)")


def meta_key(index_name: str) -> str:
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
            raise IndexMismatch(f"the metadata of index {name!r} ({meta_key(name)}) is damaged: {error}") from None

    @property
    def prefix(self) -> str:
        return f"{self.name}:photo:"

    @property
    def meta_key(self) -> str:
        return meta_key(self.name)

    def fields(self) -> list[Field]:
        """The search index's fields, from FIELDS: the vector, and what filters read."""
        made: list[Field] = []
        for spec in FIELDS.values():
            if spec.indexed == "vector":
                attributes: dict[str, Any] = {"TYPE": "FLOAT32", "DIM": self.model.dim, "DISTANCE_METRIC": "COSINE"}
                if self.algorithm == "HNSW":
                    attributes |= {"M": self.m, "EF_CONSTRUCTION": self.ef_construction, "EF_RUNTIME": self.ef_runtime}
                made.append(VectorField(spec.name, self.algorithm, attributes))
            elif spec.indexed == "numeric":
                made.append(NumericField(spec.name))
            elif spec.indexed == "tag":
                made.append(TagField(spec.name, separator=TAG_SEPARATOR))
            elif spec.indexed == "text":  # words made by clipsearch.search.words: no stemming, no stop words
                made.append(TextField(spec.name, no_stem=True))
        return made

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

    def is_photo_key(self, key: str) -> bool:
        """Whether `key` has the form of one of this index's photo keys (it may still not exist)."""
        digest = key.removeprefix(self.prefix)
        return key.startswith(self.prefix) and len(digest) == 32 and all(c in "0123456789abcdef" for c in digest)


HashMapping = dict[str, bytes | str | int | float]


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
    text: str | None = None  # the words written in it; None: not read
    text_read: str = ""  # what read them

    def to_mapping(self, dim: int) -> HashMapping:
        vector = np.asarray(self.vector, dtype="<f4")
        if vector.shape != (dim,):
            raise ValueError(f"{self.path!r}: vector has shape {vector.shape}, the index expects ({dim},)")
        mapping: HashMapping = {
            "vector": vector.tobytes(),
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
        if self.text is not None:
            mapping |= {"text": self.text, "text_read": self.text_read}
        name = self.name or os.path.basename(self.path)
        return mapping | fact_mapping(self.path, self.source, self.facts) | word_mapping(self.path, name, self.source)


def fact_mapping(path: str, source: str, facts: PhotoFacts | None) -> HashMapping:
    """The hash fields of a photo's facts and folders (a downloaded photo is in no folder)."""
    folders = folders_of(path) if source == "file" else []
    mapping: HashMapping = {"folders": TAG_SEPARATOR.join(tag_value(folder) for folder in folders)}
    if facts is not None:
        mapping |= {
            "taken": repr(float(facts.taken)),
            "taken_from": facts.taken_from,
            "offset": facts.offset,
            "camera": facts.camera,
            "camera_tag": tag_value(facts.camera),
        }
        if facts.latitude is not None and facts.longitude is not None:
            mapping |= {"latitude": repr(facts.latitude), "longitude": repr(facts.longitude)}
            [place] = places_at([(facts.latitude, facts.longitude)])
            mapping |= place_mapping(place)
    unknown = mapping.keys() - FIELDS.keys()
    assert not unknown, f"fields missing from FIELDS: {unknown}"
    return mapping


def word_mapping(path: str, name: str, source: str) -> HashMapping:
    """The hash fields of the words of a photo's file name and folders (a downloaded photo is in none)."""
    return {"name_words": name_words(name), "folder_words": folder_words(path) if source == "file" else ""}


def place_mapping(place: Place | None) -> HashMapping:
    """The hash fields of a photo's place (none for no place)."""
    if place is None:
        return {}
    tags = dict.fromkeys(tag_value(fold_name(name)) for name in place.names())
    return {"city": place.city, "region": place.region, "country": place.country, "places": TAG_SEPARATOR.join(tags)}


def tag_value(text: str) -> str:
    """A value as stored in and searched for in a TAG field: lower case (RediSearch and valkey-search fold
    case differently by default), without the separator."""
    return text.strip().lower().replace(TAG_SEPARATOR, "/")
