"""The use cases of clipsearch, one method each: what the CLI and the page call. They only parse what a
person gave and show what comes back; every rule of indexing, querying, searching and serving lives here.

A Library is cheap: it holds the settings, a client and the two encoders, each made on first use by the
function given for it (the page gives functions that return its process-wide cached ones; the CLI lets it
load them). The server is reached before a model loads, so an unreachable server is reported at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from clipsearch.errors import IndexMissing
from clipsearch.index.connection import LOST, Client, connect
from clipsearch.index.filters import ORDERS, FilterConflict, SearchFilter
from clipsearch.index.schema import PHOTO_FIELDS, IndexSchema, Photo
from clipsearch.index.server import LoadingCallback
from clipsearch.index.store import CheckedStore, Hit, PhotoStore
from clipsearch.ingest.decoding import decode_photo, decode_query_photo, make_thumbnail
from clipsearch.ingest.facts import FIRST_DAY, LAST_DAY, taken_iso
from clipsearch.ingest.files import BadPhoto, display_path, file_under, read_file
from clipsearch.ingest.loader import LoadOptions, LoadReport, PhotoLoader, ProgressCallback, pending_photos
from clipsearch.ingest.places import DEFAULT_WITHIN_KM, MAX_WITHIN_KM, Near, parse_position
from clipsearch.links import MAX_SHOWN
from clipsearch.model.engine import ImageEncoding, TextEncoding, load_image_encoder, load_text_encoder, model_identity
from clipsearch.model.identity import ModelIdentity
from clipsearch.model.labels import (
    DEFAULT_LABELS,
    MAX_LABEL_CHARS,
    MAX_LABELS,
    MAX_LABELS_TEXT,
    LabelList,
    LabelScore,
    label_vectors,
    rank_labels,
)
from clipsearch.search.chart import score_chart_svg
from clipsearch.search.duplicates import DuplicateReport, SimilarPairs, find_duplicates, similar_pairs
from clipsearch.search.duplicates import report as duplicate_report
from clipsearch.search.overview import OVERVIEW_FIELDS, Overview, Spot, month_of, month_span, overview, per_month
from clipsearch.search.query import MAX_QUERY_CHARS, BadQuery, combine, parse_query
from clipsearch.search.results import DEFAULT_RESULTS, Cut, Result, Results, SearchOptions, find, listing, why_nothing
from clipsearch.search.understanding import VOCABULARY_FIELDS, Understood, Vocabulary, understand, vocabulary_json
from clipsearch.search.words import query_words, quoted
from clipsearch.settings import Settings
from clipsearch.sharing import Shared

# The page and the CLI import from here what requests and results are made of, besides the Library: the page
# imports nothing else of the core (tests/unit/test_docs.py holds it to this module, settings, links, display, errors).
__all__ = [
    "DEFAULT_LABELS",
    "DEFAULT_RESULTS",
    "DEFAULT_WITHIN_KM",
    "FIRST_DAY",
    "LAST_DAY",
    "LOST",
    "MAX_LABELS",
    "MAX_LABELS_TEXT",
    "MAX_LABEL_CHARS",
    "MAX_QUERY_CHARS",
    "MAX_WITHIN_KM",
    "ORDERS",
    "PHOTO_FIELDS",
    "BadPhoto",
    "BadQuery",
    "Client",
    "Cut",
    "DuplicateCaps",
    "DuplicateReport",
    "FilterConflict",
    "Found",
    "Hit",
    "ImageEncoding",
    "Indexed",
    "LabelList",
    "LabelScore",
    "Library",
    "LoadOptions",
    "Near",
    "NotInIndex",
    "Overview",
    "Photo",
    "PhotoQuery",
    "QueryPhoto",
    "Result",
    "Results",
    "SearchFilter",
    "SearchOptions",
    "SearchRequest",
    "Shared",
    "Spot",
    "TermVectors",
    "TextEncoding",
    "Understood",
    "UnusablePhoto",
    "WordsConflict",
    "connect",
    "display_path",
    "forget_encodings",
    "load_image_encoder",
    "load_text_encoder",
    "month_of",
    "month_span",
    "parse_position",
    "per_month",
    "score_chart_svg",
    "taken_iso",
    "why_nothing",
]

KEPT_VOCABULARIES = 4  # of a few indexes, or versions of one: each a scan of the index
KEPT_QUERIES = 512  # encoded queries kept for every visitor, the first asked going first
KEPT_PHOTO_QUERIES = 32  # given photos' vectors and previews
KEPT_LABEL_LISTS = 16
KEPT_VERSIONS = 4  # duplicate scans: of a few indexes, or versions of one
PREVIEW_SIDE = 256  # pixels: a given photo's preview, kept instead of the photo as decoded


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
    """A photo searched with: its vector, and a small JPEG of it as decoded (within the upload bounds), to show it
    by (the file itself may be any size)."""

    vector: np.ndarray
    preview: bytes


@dataclass(frozen=True)
class QueryPhoto:
    """A photo a search starts from, as given: its name (what the heading and an error call it) and its bytes."""

    name: str
    data: bytes


@dataclass(frozen=True)
class SearchRequest:
    """One search as a person asks for it, whoever asks (the page, the CLI, a script): words, photos given, photos
    of the index ("More like this": their keys), or some of each, added up (clipsearch.search.query); the filters, the
    options, and the pages "Show more" added.

    Words searched alone are read for the places, dates and cameras this index holds (unless `understand` is off;
    the words of `as_written` are left to CLIP), and matched against the words written in the photos and in their
    names (unless `match_text` is off). Beside a photo, the words are terms added to it ("- people"): CLIP's alone."""

    words: str = ""
    photos: tuple[QueryPhoto, ...] = ()
    like: tuple[str, ...] = ()
    where: SearchFilter = field(default_factory=SearchFilter)
    options: SearchOptions = field(default_factory=SearchOptions)
    pages: int = 1
    understand: bool = True
    as_written: tuple[str, ...] = ()
    match_text: bool = True
    fields: tuple[str, ...] = PHOTO_FIELDS

    @property
    def by_photo(self) -> bool:
        return bool(self.photos or self.like)


class NotInIndex(LookupError):
    """A "More like this" key that names none of the index's photos (gone, or never one)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no photo of the index has the key {key!r}")
        self.key = key


class UnusablePhoto(BadPhoto):
    """A given photo that cannot be searched with: which one, and why."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


class WordsConflict(FilterConflict):
    """What the words were understood to say cannot hold: two things of their own ("2019 2021"), or one of them
    with the filters given (`with_filters`). Carries what was understood, to show it."""

    def __init__(self, conflict: FilterConflict, understood: Understood, with_filters: bool) -> None:
        super().__init__(str(conflict))
        self.understood = understood
        self.with_filters = with_filters


@dataclass(frozen=True)
class Found:
    """What a search found, and what it searched: the query's vector (None where the words were all filters: the
    photos are listed, newest first), the filters applied (given and understood), what the words were understood
    to say, the words searched with CLIP, the photos searched with (their names, and the given ones' previews)."""

    results: Results
    vector: np.ndarray | None
    where: SearchFilter
    understood: Understood | None
    searched: str
    subjects: tuple[str, ...]
    photos: tuple[PhotoQuery, ...]
    order: str

    def heading(self, emphasised: Callable[[str], str] = str, plain: Callable[[str], str] = str) -> str:
        """What the results are, in words: "Photos matching red car", "Photos like cat.jpg + at night", "Photos
        taken in Kyoto, newest first"; what a person gave passes through `emphasised`, the filters' words through
        `plain` (the page escapes both for Markdown)."""
        if self.vector is None:
            first = "oldest" if self.order == "oldest" else "newest"
            return f"Photos {plain(self.where.describe())}, {first} first"
        if not self.subjects:
            return f"Photos matching {emphasised(self.searched)}"
        heading = "Photos like " + " and ".join(emphasised(subject) for subject in self.subjects)
        if self.searched:
            heading += " " + emphasised(self.searched if self.searched[:1] in "+-" else f"+ {self.searched}")
        return heading


@dataclass(frozen=True)
class DuplicateCaps:
    """What a look at the groups of near-duplicates may cost one process that serves everyone (a page): one scan
    per index version down to `floor`, at most `max_neighbours` read a photo, `groups` groups and `members` of each
    read to show (the CLI's duplicates command reads them all)."""

    floor: float = 0.9
    max_neighbours: int = 64
    groups: int = 100
    members: int = 16


# Kept for every Library of the process (a page's visitors): the vocabulary of each index version, and what
# encoding costs: a query's terms (a page runs again on every click), a given photo, a list of labels.
_VOCABULARIES: Shared[Vocabulary] = Shared(KEPT_VOCABULARIES)
_TERMS: Shared[TermVectors] = Shared(KEPT_QUERIES)
_PHOTO_QUERIES: Shared[PhotoQuery] = Shared(KEPT_PHOTO_QUERIES)
_LABEL_VECTORS: Shared[np.ndarray] = Shared(KEPT_LABEL_LISTS)
_DUPLICATE_SCANS: Shared[SimilarPairs] = Shared(KEPT_VERSIONS)


def _made_by(encoder: TextEncoding | ImageEncoding) -> tuple[str, str, ModelIdentity]:
    """What a kept encoding is kept by: the engine, its precision and the weights that made it."""
    return type(encoder).__qualname__, encoder.precision, encoder.identity


def forget_encodings() -> None:
    """Every query, photo and label list is encoded again when next asked (what a fresh process does)."""
    for kept in (_TERMS, _PHOTO_QUERIES, _LABEL_VECTORS):
        kept.clear()


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
        self._store: CheckedStore | None = None

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

    def store(self, *, create: bool = False, rebuild: bool = False) -> CheckedStore:
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
            store: CheckedStore | None = self.store()
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
        """The terms of a query ("dog + beach - people") encoded in one batch, once per model and text for every
        Library of the process; BadQuery if it is malformed (nothing kept). `with_photos`: photos are terms too,
        so the words may be only negative."""
        terms = parse_query(text, with_photos=with_photos)
        encoder = self.text_encoder

        def encoded() -> TermVectors:
            vectors = encoder.encode_text([term.text for term in terms])
            return TermVectors(tuple(term.weight for term in terms), vectors)

        return _TERMS.make((*_made_by(encoder), text, with_photos), encoded)

    def photo_query(self, data: bytes) -> PhotoQuery:
        """A photo's vector and preview, decoded within the upload bounds of the settings, once per model and photo
        for every Library of the process; BadPhoto says why not."""
        settings = self.settings
        if len(data) > settings.upload_max_bytes:
            raise BadPhoto(f"{len(data):,} bytes, over the limit of {settings.upload_max_bytes:,}")

        encoder = self.image_encoder
        bounds = (settings.upload_max_pixels, settings.upload_max_memory_mb)

        def encoded() -> PhotoQuery:
            image = decode_query_photo(data, encoder.input_side, bounds[0], bounds[1] << 20)
            return PhotoQuery(encoder.encode_images([image])[0], make_thumbnail(image, PREVIEW_SIDE))

        return _PHOTO_QUERIES.make((*_made_by(encoder), bounds, hashlib.blake2b(data).digest()), encoded)

    def stored_vector(self, key: str) -> np.ndarray | None:
        """The vector of one of the index's photos ("More like this"); None for any other key."""
        return self.store().vector_of(key)

    def photo_name(self, key: str) -> str | None:
        """The file name of one of the index's photos; None if it is not one."""
        store = self.store()
        if not store.is_photo_key(key):
            return None
        [row] = store.get([key], ["name"])
        return None if row is None else row.name

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

    def search(self, request: SearchRequest) -> Found:
        """A search as a person asks for it (SearchRequest): the words understood, the query composed of words and
        photos, checked against the model whatever it holds (an index of another model is refused before anything
        is encoded), the given photos within the upload bounds, the pages within MAX_SHOWN; then the results of
        search_vector, or the listing of a query whose words were all filters. Errors: BadQuery (words that cannot
        be read), UnusablePhoto, NotInIndex (a "like" key), WordsConflict, IndexMissing (once the words are read and
        encoded: a model that cannot load is said first, since indexing needs it too)."""
        try:
            self.store()
        except IndexMissing:
            if request.words.strip():  # a malformed query, then weights that cannot load, are said first
                self.encode_terms(request.words.strip(), with_photos=request.by_photo)
            raise
        words = request.words.strip()
        where = request.where
        understood = None
        if words and request.understand and not request.by_photo:
            understood = self.understand(words).without(request.as_written)
            words = understood.words
            where = self._narrowed(where, understood)
        liked = [self._liked(key) for key in request.like]
        photos = tuple(self._photo(photo) for photo in request.photos)
        subjects = [name for name, _ in liked] + [photo.name for photo in request.photos]
        vectors = [vector for _, vector in liked] + [photo.vector for photo in photos]
        options = replace(request.options, k=min(MAX_SHOWN, request.options.k * max(request.pages, 1)))
        if not words and not vectors and understood is not None and understood.parts:
            results = self.listing(where, options, request.fields)  # the words were all filters
            return Found(results, None, where, understood, "", (), (), options.order)
        terms = self.encode_terms(words, with_photos=bool(vectors)) if words else None
        vector = self.compose(terms, vectors)
        text = words if request.match_text and not request.by_photo else None
        results = self.search_vector(vector, options, where, request.fields, text)
        return Found(results, vector, where, understood, words, tuple(subjects), photos, options.order)

    @staticmethod
    def _narrowed(where: SearchFilter, understood: Understood) -> SearchFilter:
        try:
            from_words = understood.filter()
        except FilterConflict as conflict:
            raise WordsConflict(conflict, understood, with_filters=False) from None
        try:
            return where.narrowed(from_words)
        except FilterConflict as conflict:
            raise WordsConflict(conflict, understood, with_filters=True) from None

    def _liked(self, key: str) -> tuple[str, np.ndarray]:
        """A "More like this" photo's name, as shown, and its vector; NotInIndex unless it is one of the index's
        photos with a vector of this model's size."""
        vector, name = self.stored_vector(key), self.photo_name(key)
        if vector is None or name is None:
            raise NotInIndex(key)
        return display_path(name), vector

    def _photo(self, photo: QueryPhoto) -> PhotoQuery:
        try:
            return self.photo_query(photo.data)
        except BadPhoto as error:
            raise UnusablePhoto(photo.name, str(error)) from None

    def search_vector(
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
        (clipsearch.search.words). None searches by CLIP alone."""
        words = query_words(text) if text is not None else ()
        if text is not None and (phrases := quoted(text)):
            where = (where or SearchFilter()).narrowed(SearchFilter(phrases=phrases))
        return find(self.store(), vector, options, where=where, fields=fields, words=words)

    def listing(self, where: SearchFilter, options: SearchOptions, fields: Sequence[str] = PHOTO_FIELDS) -> Results:
        """The photos that a query of filters alone lets through ("Kyoto 2021"), newest first, no similarity."""
        return listing(self.store(), where, options, fields)

    def labels(self, vector: np.ndarray, labels: Sequence[str]) -> list[LabelScore]:
        """The labels ranked for a photo's vector: CLIP's zero-shot classification (clipsearch.model.labels); each list
        of labels encoded once per model for every Library of the process."""
        encoder = self.text_encoder
        vectors = _LABEL_VECTORS.make((*_made_by(encoder), tuple(labels)), lambda: label_vectors(encoder, labels))
        return rank_labels(encoder, vector, labels, vectors)

    # --- understanding the words -------------------------------------------------------------

    def understand(self, text: str, today: date | None = None) -> Understood:
        """The places, dates and cameras that the words name of those this index holds, and the words left for
        CLIP (clipsearch.search.understanding); relative dates ("last summer") count from `today` (default: today)."""
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
        return self.store().get(keys, fields)

    def cameras(self) -> list[str]:
        return self.store().cameras()

    def overview(self) -> Overview:
        """What the collection holds, counted per month, camera, place and folder, with the spots of its map: one
        scan of the index's own fields (FT.AGGREGATE is not in the subset valkey-search shares)."""
        return overview(photo for _, photo in self.existing().scan(OVERVIEW_FIELDS))

    def photo_file(self, hit: Hit) -> Path | None:
        """The photo's own file, only from the configured photo folder: never from a folder the index names,
        since whoever can write the index could name any folder on this machine."""
        return file_under(self.settings.photos_dir, hit.path) if hit.photo.source == "file" else None

    def picture(self, hit: Hit) -> bytes | str | Path | None:
        """What may show a photo, the one rule of what is served: its stored thumbnail (JPEG bytes); else, for a
        downloaded photo, its web address (http or https only: a page reads any other string as a local file);
        else its own file, under the photo folder only (photo_file). None when there is nothing to show."""
        if hit.photo.thumbnail:
            return hit.photo.thumbnail
        if hit.photo.source == "url":
            return hit.path if urlsplit(hit.path).scheme in ("http", "https") else None
        return self.photo_file(hit)

    @staticmethod
    def resized(path: Path, long_side: int) -> bytes | None:
        """A photo file upright, at most long_side pixels, as JPEG (decoded at the size it needs); None if it cannot
        be read as a photo."""
        try:
            return make_thumbnail(decode_photo(read_file(path), at_least=long_side), long_side)
        except BadPhoto:
            return None

    def version(self) -> tuple[str, str, str]:
        """What anything derived from the index is kept by: the server, the index and its version (any write
        changes it)."""
        store = self.store()
        return self.settings.server_label, store.schema.name, store.version()

    # --- duplicates ----------------------------------------------------------------------

    def duplicates(
        self, similarity: float | None = None, on_progress: ProgressCallback | None = None
    ) -> DuplicateReport:
        """Every group of near-duplicates in the index, largest first (default: the settings' similarity)."""
        store = self.existing()
        chosen = self.settings.duplicate_similarity if similarity is None else similarity
        return find_duplicates(store, chosen, on_progress=on_progress)

    def duplicate_floor(self, caps: DuplicateCaps = DuplicateCaps()) -> float:
        """The lowest duplicate similarity a look at the groups may ask for: what the one scan reads down to."""
        return min(caps.floor, self.settings.duplicate_similarity)

    def duplicate_groups(
        self,
        similarity: float,
        caps: DuplicateCaps = DuplicateCaps(),
        fields: Sequence[str] = PHOTO_FIELDS,
        on_progress: ProgressCallback | None = None,
    ) -> DuplicateReport:
        """The groups of near-duplicates at `similarity` (at least duplicate_floor), the largest `caps.groups`
        read with `fields`, `caps.members` of each. The index is scanned once per version at the floor for every
        Library of the process (a page's visitors: one scan at a time), whatever similarity each then asks."""
        floor = self.duplicate_floor(caps)
        if not floor <= similarity <= 1.0:
            raise ValueError(f"the duplicate similarity must be between {floor} and 1, not {similarity}")
        store = self.store()
        signature: Hashable = (*self.version(), floor, caps.max_neighbours)
        pairs = _DUPLICATE_SCANS.make(signature, lambda: similar_pairs(store, floor, caps.max_neighbours, on_progress))
        return duplicate_report(store, pairs, similarity, fields, caps.groups, caps.members)
