"""What the page keeps between reruns and between visitors: the settings, one client and one encoder of each
tower per process, the counts and duplicate scans of each index version (all kept whatever clears
Streamlit's caches), and Streamlit's caches of what a request makes (query terms, uploads, label vectors).
Every view gets its Library here."""

from __future__ import annotations

import gc
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import streamlit as st

from clipsearch.connection import Client, connect
from clipsearch.duplicates import SimilarPairs
from clipsearch.engine import ImageEncoding, TextEncoding, load_image_encoder, load_text_encoder
from clipsearch.labels import label_vectors
from clipsearch.library import Library, PhotoQuery, TermVectors
from clipsearch.overview import Overview
from clipsearch.photos import make_thumbnail
from clipsearch.settings import ModelSpec, Settings
from clipsearch.sharing import Shared

PREVIEW_SIDE = 256  # pixels: an upload's preview, and a thumbnail made from a file
KEPT_VERSIONS = 4  # counts and duplicate scans kept for every session: of a few indexes, or versions of one


def load_settings() -> Settings:
    """Environment variables, then Streamlit secrets of the same names for what the environment lacks."""
    environ = dict(os.environ)
    try:
        for name, value in st.secrets.items():
            if isinstance(value, str | int | float):
                environ.setdefault(name, str(value))
    except FileNotFoundError:
        pass
    return Settings.from_env(environ)


# Made once for the process and kept whatever clears Streamlit's caches: any visitor can send the "clear
# cache" message, and a client or a model made again would cost seconds and hundreds of MB each time.
_CLIENTS: Shared[Client] = Shared(1, on_drop=lambda client: client.close())
_TEXT_ENCODERS: Shared[TextEncoding] = Shared(1)
_IMAGE_ENCODERS: Shared[ImageEncoding] = Shared(1)
_FROZEN = threading.Event()  # gc.freeze() has run: once per process


def client(settings: Settings) -> Client:
    """One client per server for the process; while the server reads its data back after a restart (minutes
    for a large HNSW index), a progress bar says how far it got."""
    key = (settings.valkey_url, settings.data_dir, settings.search_module, settings.tls_ca_file)
    if (found := _CLIENTS.get(key)) is not None:
        return found
    bar = st.empty()

    def show(percent: float, eta: float | None) -> None:
        left = f", about {eta:.0f} s left" if eta is not None else ""
        bar.progress(min(percent, 100.0) / 100, text=f"The Valkey server is loading its data: {percent:.0f}%{left}")

    with st.spinner("Connecting to Valkey…"):
        made = _CLIENTS.make(key, lambda: connect(settings, show))
    bar.empty()
    return made


def forget_client() -> None:
    """The next run connects afresh (and restarts the embedded server if it stopped); the lost client's
    connections are closed."""
    for key in list(_CLIENTS.done):
        _CLIENTS.drop(key)


def text_encoder(model: ModelSpec) -> TextEncoding:
    """One per process."""
    if (found := _TEXT_ENCODERS.get(model)) is not None:
        return found
    with st.spinner("Loading the CLIP text model (the first start also prepares it for ONNX Runtime)…"):
        encoder = _TEXT_ENCODERS.make(model, lambda: load_text_encoder(model))
    if not _FROZEN.is_set():
        _FROZEN.set()
        # The model's libraries leave many long-lived objects: set them aside, once, so that the garbage
        # collector stops walking them on every full collection.
        gc.collect()
        gc.freeze()
    return encoder


def image_encoder(model: ModelSpec) -> ImageEncoding:
    """One per process."""
    if (found := _IMAGE_ENCODERS.get(model)) is not None:
        return found
    with st.spinner("Loading the CLIP image model (the first start also prepares it for ONNX Runtime)…"):
        return _IMAGE_ENCODERS.make(model, lambda: load_image_encoder(model))


def library() -> Library:
    """This run's Library (its settings read again: secrets can change), over the process's client and
    encoders. Views and fragments ask for it here rather than keep one."""
    settings = load_settings()
    model = settings.model
    return Library(
        settings,
        client=client(settings),
        text_encoder=lambda: text_encoder(model),
        image_encoder=lambda: image_encoder(model),
    )


_TERMS: OrderedDict[tuple[ModelSpec, str, bool], TermVectors] = OrderedDict()
_TERMS_LOCK = threading.Lock()
KEPT_QUERIES = 512  # encoded queries kept for every visitor, the least recently asked going first


def term_vectors(library: Library, text: str, with_photos: bool) -> TermVectors:
    """A query's terms encoded once per model and text, for every visitor. A dictionary rather than
    st.cache_data, which hashes the arguments and pickles the vectors on every new query: this runs on every
    search, and most queries are new."""
    key = (library.settings.model, text, with_photos)
    with _TERMS_LOCK:
        if (found := _TERMS.get(key)) is not None:
            _TERMS.move_to_end(key)
            return found
    made = library.encode_terms(text, with_photos)  # BadQuery for a malformed one: nothing kept
    with _TERMS_LOCK:
        _TERMS[key] = made
        while len(_TERMS) > KEPT_QUERIES:
            _TERMS.popitem(last=False)
    return made


def forget_queries() -> None:
    """Every kept query encoded again (the tests count encodings from empty caches)."""
    with _TERMS_LOCK:
        _TERMS.clear()


@st.cache_data(max_entries=32, show_spinner="Encoding your photo…")
def upload_query(_library: Library, model: ModelSpec, data: bytes) -> tuple[np.ndarray, bytes]:
    """An upload's vector, and a JPEG to show it by: made from the photo as decoded within its bounds (st.image
    of the upload itself would decode the whole file again, unbounded)."""
    query: PhotoQuery = _library.photo_query(data)
    return query.vector, make_thumbnail(query.image, PREVIEW_SIDE)


@st.cache_data(max_entries=16, show_spinner="Encoding the labels…")
def labels_vectors(_encoder: TextEncoding, model: str, labels: tuple[str, ...]) -> np.ndarray:
    """The labels' vectors, once per model and label list rather than on every rerun."""
    return label_vectors(_encoder, labels)


_CAMERAS: Shared[list[str]] = Shared(KEPT_VERSIONS)
_OVERVIEWS: Shared[Overview] = Shared(KEPT_VERSIONS)
_COUNTS: Shared[int] = Shared(KEPT_VERSIONS)
_DUPLICATE_SCANS: Shared[SimilarPairs] = Shared(KEPT_VERSIONS)


def _version(library: Library) -> tuple[str, str, str]:
    """What a count of the index is kept by: the server, the index and its version (any write changes it)."""
    store = library.store()
    return library.settings.server_label, store.schema.name, store.version()


def cameras(library: Library) -> list[str]:
    """The index's cameras, read once per index version (it reads every document)."""
    return _CAMERAS.make(_version(library), library.cameras)


def overview(library: Library) -> Overview:
    """The library view's counts, made once per index version for every visitor (it reads every document)."""
    key = _version(library)
    if (found := _OVERVIEWS.get(key)) is not None:
        return found
    with st.spinner("Counting the photos of the library…"):
        return _OVERVIEWS.make(key, library.overview)


def count(library: Library) -> int:
    """How many photos the index holds, asked of the server once per index version rather than on every rerun."""
    return _COUNTS.make(_version(library), lambda: library.store().count())


@st.cache_data(max_entries=64, show_spinner=False)
def pending(_library: Library, index_name: str, photos_dir: Path, version: str) -> int:
    """Photos in the folder that the index lacks or holds stale: it walks the folder and reads every document's
    bookkeeping, so it runs once per index version ("Check for changes" runs it again)."""
    return _library.pending(photos_dir)


def duplicate_scans() -> Shared[SimilarPairs]:
    """The similar pairs found, shared by every session of this process: on a public app, one visitor's scan of
    a large library serves every threshold and every later visitor, until the index changes."""
    return _DUPLICATE_SCANS
