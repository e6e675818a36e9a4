"""clipsearch: the search page. UI only; everything it does is in the clipsearch package."""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import streamlit as st
import valkey
from streamlit.delta_generator import DeltaGenerator

from clipsearch.connection import connect
from clipsearch.display import escape_markdown
from clipsearch.engine import ImageEncoding, TextEncoding, load_image_encoder, load_text_encoder
from clipsearch.errors import (
    ClipsearchError,
    ConfigError,
    IndexMismatch,
    IndexMissing,
    NoVectorSearch,
    ServerError,
    ServerUnreachable,
    WeightsUnavailable,
    WrongCredentials,
)
from clipsearch.identity import ModelIdentity
from clipsearch.index import open_index, open_store
from clipsearch.labels import DEFAULT_LABELS, MAX_LABEL_CHARS, MAX_LABELS, LabelList, label_vectors, rank_labels
from clipsearch.loader import DECODE_MARGIN, LoadOptions, PhotoLoader, pending_photos
from clipsearch.photos import (
    BadPhoto,
    decode_photo,
    display_path,
    file_under,
    make_thumbnail,
    read_file,
    taken_iso,
)
from clipsearch.query import BadQuery, parse_query, vector_of_terms
from clipsearch.server import EmbeddedServer, ServerState, report_loading
from clipsearch.settings import Settings
from clipsearch.store import ORDERS, PHOTO_FIELDS, Hit, IndexSchema, PhotoStore, SearchFilter

EXAMPLE_PROMPTS = ("cat", "dog on chair", "man jumping", "snowy streets", "woolen hat", "santa claus")
DEFAULT_RESULTS = 12
MAX_RESULTS = 100
DEFAULT_COLUMNS = 4
MAX_COLUMNS = 8
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "heic", "heif", "avif"]
TOP_LABELS = 5
GALLERY_SIDE = 256  # pixels, for photos indexed with --no-thumbnails
DIALOG_SIDE = 1600  # "Open" sends this much, not the camera's full file
FILTER_KEYS = ("after", "before", "folder", "camera")


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


def show_server_loading(settings: Settings) -> None:
    """While the embedded server reads its data back after a restart (minutes for a large HNSW index), show
    how far it got: the page waits for it anyway. (A remote server's loading is logged.)"""
    if settings.valkey_url is not None:
        return
    server = EmbeddedServer(settings.data_dir, allow_shared=settings.allow_shared_data_dir)
    if server.state() is not ServerState.LOADING:
        return
    bar = st.progress(0.0, text="The Valkey server is loading its data…")

    def show(percent: float, eta: float | None) -> None:
        left = f", about {eta:.0f} s left" if eta is not None else ""
        bar.progress(min(percent, 100.0) / 100, text=f"The Valkey server is loading its data: {percent:.0f}%{left}")

    with server.client(socket_timeout=5) as client:
        while report_loading(client, show):
            time.sleep(1.0)
    bar.empty()


@st.cache_resource(show_spinner="Connecting to Valkey…")
def get_client(settings: Settings) -> valkey.Valkey:
    return connect(settings)


@st.cache_resource(show_spinner="Loading the CLIP text model (the first start also prepares it for ONNX Runtime)…")
def get_text_encoder(model: Settings) -> TextEncoding:
    """One per model for the whole process (`model` is Settings.model_only())."""
    encoder = load_text_encoder(model)
    # The model's libraries leave many long-lived objects (hundreds of thousands with torch): set them
    # aside, so that the garbage collector stops walking them on every full collection.
    gc.collect()
    gc.freeze()
    return encoder


@st.cache_resource(show_spinner="Loading the CLIP image model (the first start also prepares it for ONNX Runtime)…")
def get_image_encoder(model: Settings) -> ImageEncoding:
    return load_image_encoder(model)


@st.cache_data(max_entries=512, show_spinner=False)
def text_vector(model: Settings, text: str) -> np.ndarray:
    """The query's vector; a query of several terms ("dog + beach - people") is their weighted sum."""
    return vector_of_terms(parse_query(text), get_text_encoder(model))


@st.cache_data(max_entries=32, show_spinner="Encoding your photo…")
def upload_vector(model: Settings, data: bytes, max_pixels: int) -> np.ndarray:
    encoder = get_image_encoder(model)
    image = decode_photo(data, max_pixels, at_least=DECODE_MARGIN * encoder.input_side)
    vector: np.ndarray = encoder.encode_images([image])[0]
    return vector


@st.cache_data(max_entries=16, show_spinner="Encoding the labels…")
def cached_label_vectors(_encoder: TextEncoding, model: str, labels: tuple[str, ...]) -> np.ndarray:
    """The labels' vectors, once per model and label list rather than on every rerun."""
    return label_vectors(_encoder, labels)


@st.cache_data(show_spinner=False)
def count_pending(_store: PhotoStore | None, index_name: str, photos_dir: Path, indexed: int) -> int:
    """Photos in the folder that the index lacks or holds stale.

    It walks the folder and reads every document's bookkeeping (seconds at 100k photos), so it runs
    once per index size, never again on the search path: "Check for changes" runs it again.
    """
    return pending_photos(_store if indexed else None, photos_dir)


# --- state changes, run as widget callbacks before the page is drawn again ---------------------


def use_example() -> None:
    if st.session_state.example:
        st.session_state.q = st.session_state.example
        st.session_state.mode = "Words"
    st.session_state.example = None
    st.session_state.like = ""


def more_like(key: str) -> None:
    st.session_state.like = key


def clear_like() -> None:
    st.session_state.like = ""


# --- the page -------------------------------------------------------------------------------


def sidebar(settings: Settings, store: PhotoStore | None, schema: IndexSchema) -> None:
    with st.sidebar:
        st.header("Index")
        count = store.count() if store else 0
        st.metric("Photos indexed", count)
        st.caption(f"**Model** {schema.model.name} · {schema.model.pretrained} · {schema.model.dim}-d")
        st.caption(f"**Index** `{schema.name}` ({schema.algorithm}, cosine)")
        st.caption(f"**Server** {settings.server_label}")
        if offers_indexing(settings, store):
            pending = count_pending(store, schema.name, settings.photos_dir, count)
            if pending:
                st.warning(f"{pending} photos in `{settings.photos_dir}` are new, changed or gone.")
                if st.button(f"Index {settings.photos_dir}/", type="primary", width="stretch"):
                    index_photos(settings, schema.model)
            else:
                st.caption(f"`{settings.photos_dir}/` is fully indexed.")
            st.button("Check for changes", type="tertiary", on_click=count_pending.clear)
        if "last_report" in st.session_state:
            st.caption(st.session_state.last_report)
        st.header("What is in this photo?")
        st.text_area(
            "Labels to rank, one per line",
            "\n".join(DEFAULT_LABELS),
            key="labels",
            height=180,
            help=f"Up to {MAX_LABELS} labels of up to {MAX_LABEL_CHARS} characters each.",
        )
        labels = LabelList.parse(st.session_state.labels)
        if labels.left_out or labels.shortened:
            st.caption(
                f"Ranking the first {MAX_LABELS} labels, each cut to {MAX_LABEL_CHARS} characters: "
                f"{labels.left_out} left out, {labels.shortened} shortened."
            )


def offers_indexing(settings: Settings, store: PhotoStore | None) -> bool:
    """The index button (which prunes): embedded server only, and never over another folder's index."""
    if settings.valkey_url is not None or not settings.photos_dir.is_dir():
        return False
    return store is None or store.may_prune(settings.photos_dir)


def index_photos(settings: Settings, model: ModelIdentity) -> None:
    """Run the loader on the photo folder with a progress bar, then redraw the page. The image model is
    loaded only if a photo needs encoding (not for photos that were only moved or deleted)."""
    bar = st.progress(0.0, text="Looking for new, changed and deleted photos…")
    store = open_store(settings, model, client=get_client(settings), create=True)

    def on_progress(done: int, total: int) -> None:
        bar.progress(done / total, text=f"Indexed {done} of {total} photos")

    def image_encoder() -> ImageEncoding:
        return get_image_encoder(settings.model_only())

    loader = PhotoLoader(store, image_encoder, LoadOptions(prune=True), on_progress=on_progress, show_bar=False)
    summary = loader.index_folder(settings.photos_dir).summary()
    if settings.algorithm == "AUTO" and (switched := store.fit_algorithm()):
        summary += f"\nswitched the index from {switched[0]} to {switched[1]} for its size"
    st.session_state.last_report = "  \n".join(escape_markdown(line) for line in summary.splitlines())
    count_pending.clear()
    st.rerun()


def taken_label(hit: Hit, full: bool = False) -> str:
    """When the photo was taken: the day (with the time, when `full`); "file date" when no EXIF said it."""
    stamp = taken_iso(hit.fields["taken"], hit.fields.get("offset") or "")
    label = stamp.replace("T", " ") if full else stamp[:10]
    return label + (" (file date)" if hit.fields.get("taken_from") == "file" else "")


def full_photo(root: Path, hit: Hit) -> Path | None:
    """The photo's own file, only from the configured photo folder: never from a folder the index names,
    since whoever can write the index could name any folder on this machine."""
    return file_under(root, hit.path) if hit.fields.get("source") == "file" else None


@st.cache_data(max_entries=1024, show_spinner=False)
def resized_photo(path: str, mtime: float, long_side: int) -> bytes | None:
    """A photo file upright and at most long_side pixels (mtime only keys the cache)."""
    try:
        return make_thumbnail(decode_photo(read_file(Path(path)), at_least=long_side), long_side)
    except BadPhoto:
        return None


def picture(hit: Hit, root: Path) -> bytes | str | None:
    """The stored thumbnail; else one made from the file, or the photo's URL."""
    thumbnail: bytes | None = hit.fields.get("thumbnail")
    if thumbnail:
        return thumbnail
    if hit.fields.get("source") == "url":  # only web addresses: Streamlit reads any other string as a local file
        return hit.path if urlsplit(hit.path).scheme in ("http", "https") else None
    path = full_photo(root, hit)
    return resized_photo(str(path), path.stat().st_mtime, GALLERY_SIDE) if path else None


def show_labels(text_encoder: TextEncoding, vector: np.ndarray) -> None:
    labels = LabelList.parse(st.session_state.get("labels", "\n".join(DEFAULT_LABELS))).labels
    vectors = cached_label_vectors(text_encoder, text_encoder.identity.describe(), labels)
    ranked = rank_labels(text_encoder, vector, labels, vectors)[:TOP_LABELS]
    if not ranked:
        st.caption("Add some labels in the sidebar to rank them.")
    for score in ranked:
        label = f"**{escape_markdown(score.label)}** · {score.probability:.0%} · cosine {score.similarity:.3f}"
        st.progress(score.probability, text=label)


@st.dialog("Photo", width="large")
def open_photo(hit: Hit, rank: int, root: Path, store: PhotoStore, text_encoder: TextEncoding) -> None:
    path = full_photo(root, hit)
    image = (resized_photo(str(path), path.stat().st_mtime, DIALOG_SIDE) if path else None) or picture(hit, root)
    if image is not None:
        st.image(image)  # its own size, at most the dialog's width
    fields = hit.fields
    st.markdown(f"**#{rank} · similarity {hit.score:.3f}** · {escape_markdown(display_path(hit.path))}")
    st.caption(
        f"{fields.get('width')} x {fields.get('height')} px · {(fields.get('size') or 0) / 1024:.0f} KiB"
        + (f" · taken {taken_label(hit, full=True)}" if fields.get("taken") is not None else "")
        + (f" · {escape_markdown(fields['camera'])}" if fields.get("camera") else "")
        + ("" if path else " · shown from the stored thumbnail (the photo is not in CLIPSEARCH_PHOTOS on this machine)")
    )
    st.button("More like this", key=f"dialog-like-{hit.key}", on_click=more_like, args=(hit.key,))
    st.subheader("What is in this photo?")
    vector = store.vector_of(hit.key)
    if vector is not None:
        show_labels(text_encoder, vector)


# Gallery tiles of one shape, cropped to fill; "Open" shows the whole photo.
GALLERY_CSS = "<style>.st-key-gallery img {aspect-ratio: 4 / 3; object-fit: cover;}</style>"


def gallery(hits: list[Hit], columns: int, root: Path, store: PhotoStore, text_encoder: TextEncoding) -> None:
    st.html(GALLERY_CSS)
    with st.container(key="gallery"):
        for rank, hit in enumerate(hits, 1):
            if (rank - 1) % columns == 0:  # a row of its own, so ranks read left to right
                row = st.columns(columns)
            gallery_tile(row[(rank - 1) % columns], rank, hit, root, store, text_encoder)


def gallery_tile(
    cell: DeltaGenerator, rank: int, hit: Hit, root: Path, store: PhotoStore, text_encoder: TextEncoding
) -> None:
    with cell:
        image = picture(hit, root)
        # Captions are Markdown: a file name must not become a link or an image.
        caption = f"#{rank} · {hit.score:.3f} · {escape_markdown(display_path(hit.fields.get('name') or hit.path))}"
        if hit.fields.get("taken") is not None:
            caption += f" · {taken_label(hit)}"
        if image is None:
            st.caption(f"{caption} (no thumbnail)")
        else:
            st.image(image, caption=caption, width="stretch")
        left, right = st.columns(2)
        left.button("More like this", key=f"like-{hit.key}", on_click=more_like, args=(hit.key,), width="stretch")
        if right.button("Open", key=f"open-{hit.key}", width="stretch"):
            open_photo(hit, rank, root, store, text_encoder)


def query_vector(settings: Settings, store: PhotoStore, text_encoder: TextEncoding) -> tuple[np.ndarray | None, str]:
    """The vector to search with and a line saying what it stands for."""
    if st.session_state.like:
        vector = store.vector_of(st.session_state.like)
        if vector is not None:
            [row] = store.get([st.session_state.like], ["name"])
            return vector, f"Photos like **{escape_markdown(display_path((row or {}).get('name') or '?'))}**"
        st.warning("That photo is not in the index.")
        st.session_state.like = ""
    if st.session_state.mode == "Photo":
        upload = st.file_uploader("Find photos like this one", type=UPLOAD_TYPES, key="upload")
        if upload is None:
            return None, "Upload a photo (JPEG, PNG, WebP, HEIC or AVIF) to find similar ones."
        name = escape_markdown(upload.name)
        try:
            if upload.size > settings.upload_max_bytes:
                raise BadPhoto(f"{upload.size:,} bytes, over the limit of {settings.upload_max_bytes:,}")
            vector = upload_vector(settings.model_only(), upload.getvalue(), settings.upload_max_pixels)
        except BadPhoto as error:
            reason = escape_markdown(str(error))
            st.error(f"**{name} cannot be used:** {reason}. Try another JPEG, PNG, WebP, HEIC or AVIF file.")
            return None, ""
        left, right = st.columns([1, 3])
        left.image(upload.getvalue(), caption=upload.name, width="stretch")
        with right:
            st.markdown("**What is in this photo?**")
            show_labels(text_encoder, vector)
        return vector, f"Photos like **{name}**"
    text = st.session_state.q.strip()
    if not text:
        return None, "Type what you are looking for, or click an example."
    try:
        vector = text_vector(settings.model_only(), text)
    except BadQuery as problem:
        st.error(f"**That query cannot be read:** {escape_markdown(str(problem))}")
        return None, ""
    return vector, f"Photos matching **{escape_markdown(text)}**"


@st.cache_data(show_spinner=False)
def cameras(_store: PhotoStore, index_name: str, indexed: int) -> list[str]:
    """The index's cameras, read once per index size (it reads every document)."""
    return _store.cameras()


def search_filter() -> SearchFilter:
    """The filters as the user set them (in the page or the URL)."""
    state = st.session_state
    return SearchFilter.of_days(
        after=state.after.isoformat() if state.get("after") else None,
        before=state.before.isoformat() if state.get("before") else None,
        folder=state.get("folder"),
        camera=state.get("camera"),
    )


def filter_controls(store: PhotoStore) -> None:
    """Date range, folder and camera, and the order of the results: the same as the CLI's, kept in the URL."""
    with st.expander("Filters and order", expanded=any(st.session_state.get(k) for k in FILTER_KEYS)):
        after, before, folder, camera, order = st.columns([3, 3, 4, 4, 3])  # no weight 1/n: see test_app
        after.date_input("Taken on or after", value=None, key="after", bind="query-params", format="YYYY-MM-DD")
        before.date_input("Taken on or before", value=None, key="before", bind="query-params", format="YYYY-MM-DD")
        folder.text_input("In folder", key="folder", bind="query-params", placeholder="e.g. 2021/japan")
        choices = cameras(store, store.schema.name, store.count())
        camera.selectbox("Camera", choices, index=None, key="camera", bind="query-params", placeholder="any")
        order.selectbox("Order", ORDERS, key="order", bind="query-params")  # the URL says what the CLI says


def controls() -> None:
    st.segmented_control("Search by", ["Words", "Photo"], key="mode", required=True, on_change=clear_like)
    if st.session_state.mode == "Words":
        st.text_input(
            "Describe the photo you are looking for, then press Enter",
            key="q",
            bind="query-params",
            placeholder="e.g. a dog on a chair",
            on_change=clear_like,
        )
        st.pills("Examples", EXAMPLE_PROMPTS, key="example", on_change=use_example, label_visibility="collapsed")
    results, columns, cut = st.columns(3)
    results.slider("Results", 1, MAX_RESULTS, DEFAULT_RESULTS, key="k", bind="query-params")
    columns.slider("Gallery columns", 1, MAX_COLUMNS, DEFAULT_COLUMNS, key="cols", bind="query-params")
    cut.slider(
        "Minimum similarity",
        0.0,
        1.0,
        0.0,
        0.01,
        key="min",
        bind="query-params",
        help="Hide results below this cosine similarity (each result shows its own). 0 shows them all.",
    )


def init_state() -> None:
    """Defaults for this browser session; `like` comes from the URL, the bound widgets read theirs."""
    if "like" not in st.session_state:
        st.session_state.like = st.query_params.get("like", "")
    st.session_state.setdefault("mode", "Words")
    st.session_state.setdefault("q", "")


def main() -> None:
    st.set_page_config(page_title="clipsearch", page_icon="🔎", layout="wide")
    init_state()
    settings = load_settings()
    st.title("clipsearch")
    st.caption("Search your photos with words, or with another photo.")
    if "server_seen" not in st.session_state:  # once per session, not on every rerun: a ping of its own
        show_server_loading(settings)
        st.session_state.server_seen = True
    client = get_client(settings)
    text_encoder = get_text_encoder(settings.model_only())
    try:
        store, _ = open_index(settings, text_encoder, client=client)
    except IndexMissing:
        sidebar(settings, None, IndexSchema.from_settings(settings, text_encoder.identity))
        hint = (
            f"use **Index {settings.photos_dir}/** in the sidebar, or run "
            if settings.valkey_url is None and settings.photos_dir.is_dir()
            else "run "
        )
        st.info(f"No photos indexed yet: {hint}`python scripts/load_photos.py [FOLDER]`.")
        return
    sidebar(settings, store, store.schema)
    controls()
    filter_controls(store)
    vector, heading = query_vector(settings, store, text_encoder)
    if st.session_state.like:
        st.button("← Back to your search", on_click=clear_like)
        st.query_params["like"] = st.session_state.like
    elif "like" in st.query_params:
        del st.query_params["like"]
    if vector is None:
        if heading:
            st.info(heading)
        return
    hits = store.search(
        vector,
        k=st.session_state.k,
        fields=(*PHOTO_FIELDS, "thumbnail"),
        where=search_filter(),
        order=st.session_state.get("order") or "relevance",
    )
    # 0 keeps every result: CLIP similarities can be negative.
    shown = [hit for hit in hits if hit.score >= st.session_state.min] if st.session_state.min > 0 else hits
    st.markdown(f"{heading} · {len(shown)} of {len(hits)} results")
    if hits and not shown:
        st.info(f"No result reaches similarity {st.session_state.min:.2f}; the best has {hits[0].score:.3f}.")
    gallery(shown, st.session_state.cols, settings.photos_dir, store, text_encoder)


PROBLEMS = {
    ServerUnreachable: "Cannot reach the Valkey server",
    WrongCredentials: "Valkey refused the credentials",
    NoVectorSearch: "This server has no vector search",
    ServerError: "The embedded Valkey server could not start",
    IndexMismatch: "The index does not fit this model",
    WeightsUnavailable: "The CLIP model weights are not available",
    ConfigError: "A setting is wrong",
}

try:
    main()
except ClipsearchError as problem:
    title = next((text for kind, text in PROBLEMS.items() if isinstance(problem, kind)), "Something went wrong")
    st.error(f"**{title}.** {escape_markdown(str(problem))}")
except valkey.ConnectionError as problem:
    get_client.clear()  # the next run connects afresh (and restarts the embedded server if it stopped)
    st.session_state.pop("server_seen", None)  # and shows the server's loading again, if it is loading
    st.error(
        f"**Lost the connection to the Valkey server** ({escape_markdown(str(problem))}). Reload the page to reconnect."
    )
