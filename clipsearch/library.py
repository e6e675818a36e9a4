"""The use cases of clipsearch, one method each: what the CLI and the page call. They only parse what a
person gave and show what comes back; every rule of indexing, querying, searching and serving lives here.

A Library is cheap: it holds the settings, a client and the two encoders, each made on first use by the
function given for it (the page gives functions that return its process-wide cached ones; the CLI lets it
load them). The server is reached before a model loads, so an unreachable server is reported at once.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from clipsearch.connection import Client, connect
from clipsearch.duplicates import DuplicateReport, SimilarPairs, find_duplicates, similar_pairs
from clipsearch.engine import ImageEncoding, TextEncoding, load_image_encoder, load_text_encoder, model_identity
from clipsearch.errors import IndexMissing
from clipsearch.filters import SearchFilter
from clipsearch.identity import ModelIdentity
from clipsearch.loader import LoadOptions, LoadReport, PhotoLoader, ProgressCallback, pending_photos
from clipsearch.overview import OVERVIEW_FIELDS, Overview, overview
from clipsearch.photos import BadPhoto, decode_query_photo, file_under
from clipsearch.query import BadQuery, combine, parse_query
from clipsearch.results import Results, SearchOptions, find, listing
from clipsearch.schema import PHOTO_FIELDS, IndexSchema, Photo
from clipsearch.server import LoadingCallback
from clipsearch.settings import Settings
from clipsearch.sharing import Shared
from clipsearch.store import Hit, PhotoStore
from clipsearch.understanding import VOCABULARY_FIELDS, Understood, Vocabulary, understand, vocabulary_json
from clipsearch.words import query_words, quoted

KEPT_VOCABULARIES = 4  # of a few indexes, or versions of one: each a scan of the index
# The vocabulary of each index version, for every Library of the process (a page's visitors).
_VOCABULARIES: Shared[Vocabulary] = Shared(KEPT_VOCABULARIES)


@dataclass(frozen=True)
class Indexed:
    """What indexing did: the loader's report, the index's size after it, and the algorithm switch it made."""

    report: LoadReport
    count: int
    switched: tuple[str, str] | None = None  # (from, to) when the index changed algorithm for its size

    def summary(self) -> str:
        lines = [self.report.summary()]
        if self.switched:
            lines.append(f"switched the index from {self.switched[0]} to {self.switched[1]} for its size")
        return "\n".join(lines)


@dataclass(frozen=True)
class TermVectors:
    """A query's text terms, encoded: each term's signed weight and its vector (one row each)."""

    weights: tuple[float, ...]
    vectors: np.ndarray


@dataclass(frozen=True)
class PhotoQuery:
    """A photo searched with: its vector, and the photo as decoded (within the upload bounds), to show it."""

    vector: np.ndarray
    image: Image.Image


class Library:
    def __init__(
        self,
        settings: Settings,
        *,
        client: Client | None = None,
        text_encoder: Callable[[], TextEncoding] | None = None,
        image_encoder: Callable[[], ImageEncoding] | None = None,
        batch_image_encoder: Callable[[], ImageEncoding] | None = None,
        on_loading: LoadingCallback | None = None,
    ) -> None:
        """`text_encoder` and `image_encoder` return the encoders (default: load them for `settings`, once),
        `batch_image_encoder` the image tower indexing uses (default: one tuned for batches, or the given
        `image_encoder`); `on_loading` hears how far a server that is reading its data back got."""
        self.settings = settings
        self._client = client
        self._on_loading = on_loading
        self._given_text, self._given_image = text_encoder is not None, image_encoder is not None
        self._load_text = text_encoder or partial(load_text_encoder, settings.model)
        self._load_image = image_encoder or partial(load_image_encoder, settings.model)
        self._load_batch_image = batch_image_encoder or (
            image_encoder or partial(load_image_encoder, settings.model, batches=True)
        )
        self._text: TextEncoding | None = None
        self._image: ImageEncoding | None = None
        self._store: PhotoStore | None = None

    # --- what it is made of ------------------------------------------------------------

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = connect(self.settings, self._on_loading)
        return self._client

    @property
    def text_encoder(self) -> TextEncoding:
        if self._text is None:
            self.client  # noqa: B018  (the server first: reported before a model takes seconds to load)
            self._text = self._load_text()
        return self._text

    @property
    def image_encoder(self) -> ImageEncoding:
        if self._image is None:
            self.client  # noqa: B018
            self._image = self._load_image()
        return self._image

    def model(self) -> ModelIdentity:
        """The model's identity: a given encoder's, else read from open_clip's configuration where it can be
        (no model loaded: indexing a folder with nothing to encode never loads one)."""
        if self._given_text:
            return self.text_encoder.identity
        if self._given_image:
            return self.image_encoder.identity
        return model_identity(self.settings.model) or self.text_encoder.identity

    def store(self, *, create: bool = False, rebuild: bool = False) -> PhotoStore:
        """The index of the settings, checked to hold this model's vectors; with `create`, made if missing;
        with `rebuild`, dropped and made again."""
        if self._store is None or create or rebuild:
            schema = IndexSchema.from_settings(self.settings, self.model())
            if rebuild:
                PhotoStore(self.client, schema).drop()
            self._store = PhotoStore.open(self.client, schema, create=create or rebuild)
        return self._store

    def existing(self) -> PhotoStore:
        """The index as it was made, whatever its model: to describe it, drop it, or read its vectors."""
        return PhotoStore.existing(self.client, self.settings.index_name)

    def schema(self) -> IndexSchema:
        """The schema this library's index has, or would be made with."""
        try:
            return self.store().schema
        except IndexMissing:
            return IndexSchema.from_settings(self.settings, self.model())

    # --- indexing ------------------------------------------------------------------------

    def index_folder(
        self,
        folder: Path,
        options: LoadOptions | None = None,
        *,
        rebuild: bool = False,
        on_progress: ProgressCallback | None = None,
        show_bar: bool = True,
    ) -> Indexed:
        """Index the photos of a folder (new and changed ones encoded, moved ones reused, gone ones pruned if
        `options` say so), then fit the index's algorithm to its size. The image model is loaded only if a
        photo needs encoding."""
        if not Path(folder).is_dir():
            raise NotADirectoryError(f"{folder} is not a folder")
        loader = self._loader(options, rebuild, on_progress, show_bar)
        return self._indexed(loader, loader.index_folder(Path(folder)))

    def index_csv(
        self,
        csv_path: Path,
        column: str | None = None,
        options: LoadOptions | None = None,
        *,
        rebuild: bool = False,
        on_progress: ProgressCallback | None = None,
        show_bar: bool = True,
    ) -> Indexed:
        """Index the photos a CSV/TSV file names (paths or URLs), then fit the algorithm."""
        loader = self._loader(options, rebuild, on_progress, show_bar)
        return self._indexed(loader, loader.index_csv(Path(csv_path), column))

    def _loader(
        self, options: LoadOptions | None, rebuild: bool, on_progress: ProgressCallback | None, show_bar: bool
    ) -> PhotoLoader:
        if rebuild and options is not None and options.part is not None:
            raise ValueError(
                f"--rebuild with --part {options.part}: each loader would drop the index the others write to. "
                "Rebuild once without --part (or drop the index), then run the parts."
            )
        store = self.store(create=True, rebuild=rebuild)
        return PhotoLoader(store, self._load_batch_image, options, on_progress=on_progress, show_bar=show_bar)

    def _indexed(self, loader: PhotoLoader, report: LoadReport) -> Indexed:
        """The report, the count, and the algorithm fitted to the size; not by one of several loaders at once
        (a part), which would remake the index under the others: a run without --part fits it afterwards."""
        store = loader.store
        store.wait_indexed()  # valkey-search may index the last writes in the background: count them all
        fits = self.settings.algorithm == "AUTO" and loader.options.part is None
        switched = store.fit_algorithm() if fits else None
        return Indexed(report, store.count(), switched)

    def pending(self, folder: Path) -> int:
        """Photos in the folder that the index lacks, holds stale, or holds though they are gone."""
        try:
            store: PhotoStore | None = self.store()
        except IndexMissing:
            store = None
        return pending_photos(store if store is not None and store.count() else None, Path(folder))

    def may_index(self, folder: Path) -> bool:
        """Whether the page may offer to index (and prune) `folder`: the embedded server only, and never over
        an index loaded from another folder."""
        if self.settings.valkey_url is not None or not Path(folder).is_dir():
            return False
        try:
            return self.store().may_prune(Path(folder))
        except IndexMissing:
            return True

    # --- queries -------------------------------------------------------------------------

    def encode_terms(self, text: str, with_photos: bool = False) -> TermVectors:
        """The terms of a query ("dog + beach - people") encoded in one batch; BadQuery if it is malformed.
        `with_photos`: photos are terms too, so the words may be only negative."""
        terms = parse_query(text, with_photos=with_photos)
        vectors = self.text_encoder.encode_text([term.text for term in terms])
        return TermVectors(tuple(term.weight for term in terms), vectors)

    def photo_query(self, data: bytes) -> PhotoQuery:
        """A photo's vector, decoded within the upload bounds of the settings; BadPhoto says why not."""
        settings = self.settings
        if len(data) > settings.upload_max_bytes:
            raise BadPhoto(f"{len(data):,} bytes, over the limit of {settings.upload_max_bytes:,}")
        encoder = self.image_encoder
        image = decode_query_photo(
            data, encoder.input_side, settings.upload_max_pixels, settings.upload_max_memory_mb << 20
        )
        return PhotoQuery(encoder.encode_images([image])[0], image)

    def stored_vector(self, key: str) -> np.ndarray | None:
        """The vector of one of the index's photos ("More like this"); None for any other key."""
        return self._any_store().vector_of(key)

    def photo_name(self, key: str) -> str | None:
        """The file name of one of the index's photos; None if it is not one."""
        store = self._any_store()
        if not store.is_photo_key(key):
            return None
        [row] = store.get([key], ["name"])
        return None if row is None else row.name

    def _any_store(self) -> PhotoStore:
        """The index for reading stored vectors: opened for this model if it was, else as it exists."""
        return self._store or self.existing()

    @staticmethod
    def compose(terms: TermVectors | None, photos: Sequence[np.ndarray] = ()) -> np.ndarray:
        """One query vector of text terms and photos (each photo a term of weight 1); BadQuery if nothing is
        left (terms that cancel out)."""
        vectors = [*(terms.vectors if terms is not None else []), *photos]
        weights = [*(terms.weights if terms is not None else ()), *(1.0,) * len(photos)]
        if not vectors:
            raise BadQuery("nothing to search for")
        return combine(vectors, weights)

    # --- searching -----------------------------------------------------------------------

    def search(
        self,
        vector: np.ndarray,
        options: SearchOptions,
        where: SearchFilter | None = None,
        fields: Sequence[str] = PHOTO_FIELDS,
        text: str | None = None,
    ) -> Results:
        """The results of a query vector: near-duplicates folded, variety, the cut, the order (results.find). The
        index is always the one checked against this model: a vector of another model is never compared.
        `text`: the words searched (those left for CLIP), also matched against the words written in the photos
        and their file and folder names, one ranking with CLIP's; words in double quotes must be written there
        (clipsearch.words). None searches by CLIP alone."""
        words = query_words(text) if text is not None else ()
        if text is not None and (phrases := quoted(text)):
            where = (where or SearchFilter()).narrowed(SearchFilter(phrases=phrases))
        return find(self.store(), vector, options, where=where, fields=fields, words=words)

    def listing(self, where: SearchFilter, options: SearchOptions, fields: Sequence[str] = PHOTO_FIELDS) -> Results:
        """The photos that a query of filters alone lets through ("Kyoto 2021"), newest first, no similarity."""
        return listing(self.store(), where, options, fields)

    # --- understanding the words -------------------------------------------------------------

    def understand(self, text: str, today: date | None = None) -> Understood:
        """The places, dates and cameras that the words name of those this index holds, and the words left for
        CLIP (clipsearch.understanding); relative dates ("last summer") count from `today` (default: today)."""
        return understand(text, self.vocabulary(), today or date.today())

    def vocabulary(self) -> Vocabulary:
        """What words can name in this index: one scan of it per index version, kept in the server for every
        process (PhotoStore.derived) and in this process for every Library (a page's visitors)."""
        store = self.store()
        key = (self.settings.server_label, store.schema.name, store.version())

        def scanned() -> str:
            return vocabulary_json(photo for _, photo in store.scan(VOCABULARY_FIELDS))

        return _VOCABULARIES.make(key, lambda: Vocabulary.of_json(store.derived("vocabulary", scanned)))

    def photos(self, keys: Sequence[str], fields: Sequence[str] = PHOTO_FIELDS) -> list[Photo | None]:
        """The fields of some of the index's photos (None for a key that is gone)."""
        return self._any_store().get(keys, fields)

    def cameras(self) -> list[str]:
        return self.store().cameras()

    def overview(self) -> Overview:
        """What the collection holds, counted per month, camera, place and folder, with the spots of its map: one
        scan of the index's own fields (FT.AGGREGATE is not in the subset valkey-search shares)."""
        return overview(photo for _, photo in self._any_store().scan(OVERVIEW_FIELDS))

    def photo_file(self, hit: Hit) -> Path | None:
        """The photo's own file, only from the configured photo folder: never from a folder the index names,
        since whoever can write the index could name any folder on this machine."""
        return file_under(self.settings.photos_dir, hit.path) if hit.photo.source == "file" else None

    # --- duplicates ----------------------------------------------------------------------

    def duplicates(
        self, similarity: float | None = None, on_progress: ProgressCallback | None = None
    ) -> DuplicateReport:
        """Every group of near-duplicates in the index, largest first (default: the settings' similarity)."""
        store = self.existing()
        chosen = self.settings.duplicate_similarity if similarity is None else similarity
        return find_duplicates(store, chosen, on_progress=on_progress)

    def shared_pairs(
        self,
        scans: Shared[SimilarPairs],
        floor: float,
        max_neighbours: int,
        on_progress: ProgressCallback | None = None,
    ) -> SimilarPairs:
        """The similar pairs at or above `floor`, scanned once per index version for every caller that shares
        `scans` (a page's visitors), whatever threshold each then groups them at."""
        store = self.store()
        signature: Hashable = (self.settings.server_label, store.schema.name, store.version(), floor)
        return scans.make(signature, lambda: similar_pairs(store, floor, max_neighbours, on_progress))
