"""What the page keeps between reruns and between visitors: the settings, one client and one encoder of each
tower per process, and the caches of what is costly to make again (query terms, uploads, label vectors,
the cameras of an index, the duplicate scans). Every view gets its Library here."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np
import streamlit as st

from clipsearch.connection import Client, connect
from clipsearch.duplicates import SharedScans
from clipsearch.engine import ImageEncoding, TextEncoding, load_image_encoder, load_text_encoder
from clipsearch.labels import label_vectors
from clipsearch.library import Library, PhotoQuery, TermVectors
from clipsearch.overview import Overview
from clipsearch.photos import make_thumbnail
from clipsearch.server import LoadingCallback
from clipsearch.settings import ModelSpec, Settings

PREVIEW_SIDE = 256  # pixels: an upload's preview, and a thumbnail made from a file
KEPT_SCANS = 4  # duplicate scans kept for all sessions (a few indexes, or versions of one)


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


@st.cache_resource(show_spinner="Connecting to Valkey…")
def _client(settings: Settings, _on_loading: LoadingCallback) -> Client:
    return connect(settings, _on_loading)


def client(settings: Settings) -> Client:
    """One client per server for the process; while the server reads its data back after a restart (minutes
    for a large HNSW index), a progress bar says how far it got."""
    bar = st.empty()

    def show(percent: float, eta: float | None) -> None:
        left = f", about {eta:.0f} s left" if eta is not None else ""
        bar.progress(min(percent, 100.0) / 100, text=f"The Valkey server is loading its data: {percent:.0f}%{left}")

    found = _client(settings, show)
    bar.empty()
    return found


def forget_client() -> None:
    """The next run connects afresh (and restarts the embedded server if it stopped)."""
    _client.clear()


@st.cache_resource(show_spinner="Loading the CLIP text model (the first start also prepares it for ONNX Runtime)…")
def text_encoder(model: ModelSpec) -> TextEncoding:
    """One per model for the whole process."""
    encoder = load_text_encoder(model)
    # The model's libraries leave many long-lived objects: set them aside, so that the garbage collector
    # stops walking them on every full collection.
    gc.collect()
    gc.freeze()
    return encoder


@st.cache_resource(show_spinner="Loading the CLIP image model (the first start also prepares it for ONNX Runtime)…")
def image_encoder(model: ModelSpec) -> ImageEncoding:
    return load_image_encoder(model)


def library(settings: Settings) -> Library:
    """This run's Library, over the process's client and encoders."""
    model = settings.model
    return Library(
        settings,
        client=client(settings),
        text_encoder=lambda: text_encoder(model),
        image_encoder=lambda: image_encoder(model),
    )


@st.cache_data(max_entries=512, show_spinner=False)
def term_vectors(_library: Library, model: ModelSpec, text: str, with_photos: bool) -> TermVectors:
    """A query's terms encoded once per model and text, for every visitor."""
    return _library.encode_terms(text, with_photos)


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


@st.cache_data(max_entries=64, show_spinner=False)
def cameras(_library: Library, index_name: str, version: str) -> list[str]:
    """The index's cameras, read once per index version (it reads every document)."""
    return _library.cameras()


@st.cache_data(max_entries=8, show_spinner="Counting the photos of the library…")
def overview(_library: Library, index_name: str, version: str) -> Overview:
    """The library view's counts, made once per index version for every visitor (it reads every document)."""
    return _library.overview()


@st.cache_data(max_entries=64, show_spinner=False)
def count(_library: Library, index_name: str, version: str) -> int:
    """How many photos the index holds, asked of the server once per index version rather than on every rerun."""
    return _library.store().count()


@st.cache_data(max_entries=64, show_spinner=False)
def pending(_library: Library, index_name: str, photos_dir: Path, version: str) -> int:
    """Photos in the folder that the index lacks or holds stale: it walks the folder and reads every document's
    bookkeeping, so it runs once per index version ("Check for changes" runs it again)."""
    return _library.pending(photos_dir)


@st.cache_resource
def duplicate_scans() -> SharedScans:
    """The similar pairs found, shared by every session of this process: on a public app, one visitor's scan of
    a large library serves every threshold and every later visitor, until the index changes."""
    return SharedScans(KEPT_SCANS)
