"""What the page keeps between reruns and between visitors: the settings, one client and one encoder of each
tower per process, and the counts of each index version, all kept whatever clears Streamlit's caches (the
Library keeps what a search encodes and the duplicate scans the same way). Every view gets its Library here."""

from __future__ import annotations

import gc
import os
import threading
from pathlib import Path

import streamlit as st

from clipsearch.library import (
    Client,
    ImageEncoding,
    Library,
    Overview,
    Shared,
    TextEncoding,
    connect,
    load_image_encoder,
    load_text_encoder,
)
from clipsearch.settings import ModelSpec, Settings

THUMBNAIL_SIDE = 256  # pixels: a thumbnail made from a photo's file
KEPT_VERSIONS = 4  # counts kept for every session: of a few indexes, or versions of one


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


_CAMERAS: Shared[list[str]] = Shared(KEPT_VERSIONS)
_OVERVIEWS: Shared[Overview] = Shared(KEPT_VERSIONS)
_COUNTS: Shared[int] = Shared(KEPT_VERSIONS)


def cameras(library: Library) -> list[str]:
    """The index's cameras, read once per index version (it reads every document)."""
    return _CAMERAS.make(library.version(), library.cameras)


def overview(library: Library) -> Overview:
    """The library view's counts, made once per index version for every visitor (it reads every document)."""
    key = library.version()
    if (found := _OVERVIEWS.get(key)) is not None:
        return found
    with st.spinner("Counting the photos of the library…"):
        return _OVERVIEWS.make(key, library.overview)


def count(library: Library) -> int:
    """How many photos the index holds, asked of the server once per index version rather than on every rerun."""
    return _COUNTS.make(library.version(), lambda: library.store().count())


@st.cache_data(max_entries=64, show_spinner=False)
def pending(_library: Library, index_name: str, photos_dir: Path, version: str) -> int:
    """Photos in the folder that the index lacks or holds stale: it walks the folder and reads every document's
    bookkeeping, so it runs once per index version ("Check for changes" runs it again)."""
    return _library.pending(photos_dir)
