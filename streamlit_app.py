"""clipsearch: the search page. UI only; everything it does is in the clipsearch package."""

from __future__ import annotations

import gc
import hashlib
import os
import time
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import numpy as np
import streamlit as st
import valkey
from streamlit.delta_generator import DeltaGenerator

from clipsearch.connection import connect
from clipsearch.display import escape_markdown
from clipsearch.duplicates import SharedScans, similar_pairs
from clipsearch.duplicates import report as duplicate_report
from clipsearch.engine import ImageEncoding, TextEncoding, load_image_encoder, load_text_encoder
from clipsearch.errors import ClipsearchError, IndexMissing
from clipsearch.identity import ModelIdentity
from clipsearch.index import open_index, open_store
from clipsearch.labels import DEFAULT_LABELS, MAX_LABEL_CHARS, MAX_LABELS, LabelList, label_vectors, rank_labels
from clipsearch.links import CUT_MODES, MAX_BELOW_BEST, MAX_COLUMNS, MAX_NAME_CHARS, MAX_RESULTS, MAX_SHOWN, held_link
from clipsearch.loader import LoadOptions, PhotoLoader, pending_photos
from clipsearch.photos import (
    BadPhoto,
    decode_photo,
    decode_query_photo,
    display_path,
    file_under,
    make_thumbnail,
    read_file,
    taken_iso,
)
from clipsearch.query import MAX_QUERY_CHARS, BadQuery, combine, parse_query
from clipsearch.results import SIMILAR_IN_FULL, Cut, Result, ResultOptions, Results, find
from clipsearch.server import EmbeddedServer, ServerState, report_loading
from clipsearch.settings import Settings
from clipsearch.store import ORDERS, PHOTO_FIELDS, Hit, IndexSchema, PhotoStore, SearchFilter

EXAMPLE_PROMPTS = ("cat", "dog on chair", "man jumping", "snowy streets", "woolen hat", "santa claus")
DEFAULT_RESULTS = 12
DEFAULT_COLUMNS = 4
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "heic", "heif", "avif"]
TOP_LABELS = 5
GALLERY_SIDE = 256  # pixels, for photos indexed with --no-thumbnails
DIALOG_SIDE = 1600  # "Open" sends this much, not the camera's full file
FILTER_KEYS = ("after", "before", "folder", "camera")
MAX_GROUPS_SHOWN = 100  # of the duplicates view
MAX_MEMBERS_SHOWN = 16  # of each group there
DUPLICATES_FLOOR = 0.9  # the duplicates view's lowest threshold: where its one scan per index version reads to
MAX_NEIGHBOURS_SCANNED = 64  # per photo, in that scan: a dense library costs at most this many reads a photo
KEPT_SCANS = 4  # scans kept for all sessions (a few indexes, or versions of one)
DEFAULT_BELOW_BEST = 0.05
SEARCH_CONTROLS = ("k", "dedup", "variety", "cut", "min", "below", "order")  # a change starts from one page again


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
def text_terms(model: Settings, text: str, with_photos: bool) -> tuple[tuple[float, ...], np.ndarray]:
    """The weights and vectors of a query's terms ("dog + beach - people"), encoded in one batch."""
    terms = parse_query(text, with_photos=with_photos)
    return tuple(term.weight for term in terms), get_text_encoder(model).encode_text([term.text for term in terms])


@st.cache_data(max_entries=32, show_spinner="Encoding your photo…")
def upload_vector(model: Settings, data: bytes, max_pixels: int, max_memory: int) -> tuple[np.ndarray, bytes]:
    """An upload's vector, and a JPEG to show it by: made from the photo as decoded here, within its bounds
    (st.image of the upload itself would decode the whole file again, unbounded)."""
    encoder = get_image_encoder(model)
    image = decode_query_photo(data, encoder.input_side, max_pixels, max_memory)
    vector: np.ndarray = encoder.encode_images([image])[0]
    return vector, make_thumbnail(image, GALLERY_SIDE)


@st.cache_data(max_entries=16, show_spinner="Encoding the labels…")
def cached_label_vectors(_encoder: TextEncoding, model: str, labels: tuple[str, ...]) -> np.ndarray:
    """The labels' vectors, once per model and label list rather than on every rerun."""
    return label_vectors(_encoder, labels)


@st.cache_data(show_spinner=False)
def count_pending(_store: PhotoStore | None, index_name: str, photos_dir: Path, version: str) -> int:
    """Photos in the folder that the index lacks or holds stale.

    It walks the folder and reads every document's bookkeeping (seconds at 100k photos), so it runs
    once per index version, never again on the search path: "Check for changes" runs it again.
    """
    return pending_photos(_store, photos_dir)


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


def show_more() -> None:
    st.session_state.pages += 1


def show_view(view: str) -> None:
    st.session_state.view = view


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
            version = store.version() if store else ""
            pending = count_pending(store if count else None, schema.name, settings.photos_dir, version)
            if pending:
                st.warning(f"{pending} photos in `{settings.photos_dir}` are new, changed or gone.")
                if st.button(f"Index {settings.photos_dir}/", type="primary", width="stretch"):
                    index_photos(settings, schema.model)
            else:
                st.caption(f"`{settings.photos_dir}/` is fully indexed.")
            st.button("Check for changes", type="tertiary", on_click=count_pending.clear)
        if "last_report" in st.session_state:
            st.caption(st.session_state.last_report)
        if store is not None:
            st.button("Find duplicates", on_click=show_view, args=("duplicates",), width="stretch", key="to-duplicates")
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


def gallery(results: list[Result], columns: int, root: Path, store: PhotoStore, text_encoder: TextEncoding) -> None:
    st.html(GALLERY_CSS)
    with st.container(key="gallery"):
        for rank, result in enumerate(results, 1):
            if (rank - 1) % columns == 0:  # a row of its own, so ranks read left to right
                row = st.columns(columns)
            gallery_tile(row[(rank - 1) % columns], rank, result, root, store, text_encoder)


def gallery_tile(
    cell: DeltaGenerator, rank: int, result: Result, root: Path, store: PhotoStore, text_encoder: TextEncoding
) -> None:
    hit = result.hit
    with cell:
        # Captions are Markdown: a file name must not become a link or an image.
        caption = f"#{rank} · {hit.score:.3f} · {escape_markdown(display_path(hit.fields.get('name') or hit.path))}"
        captioned_picture(hit, root, caption, "stretch")
        left, right = st.columns(2)
        left.button("More like this", key=f"like-{hit.key}", on_click=more_like, args=(hit.key,), width="stretch")
        if right.button("Open", key=f"open-{hit.key}", width="stretch"):
            open_photo(hit, rank, root, store, text_encoder)
        if result.similar:
            with st.popover(f"+{len(result.similar)} similar", width="stretch", key=f"similar-{hit.key}"):
                for other in result.similar[:SIMILAR_IN_FULL]:
                    similar_photo(other, root)
                if rest := result.similar[SIMILAR_IN_FULL:]:
                    names = ", ".join(
                        escape_markdown(display_path(other.fields.get("name") or other.path)) for other in rest
                    )
                    st.caption(f"and {len(rest)} more: {names}")


def similar_photo(hit: Hit, root: Path) -> None:
    """A near-duplicate folded under a result: its picture, similarity to the query, name, size and date."""
    fields = hit.fields
    caption = (
        f"≈ {hit.score:.3f} · {escape_markdown(display_path(fields.get('name') or hit.path))} · "
        f"{fields.get('width')} x {fields.get('height')} px"
    )
    captioned_picture(hit, root, caption, GALLERY_SIDE)


def captioned_picture(hit: Hit, root: Path, caption: str, width: int | Literal["stretch"]) -> None:
    """A photo's picture with its caption, and the day it was taken; the caption alone without a picture."""
    if hit.fields.get("taken") is not None:
        caption += f" · {taken_label(hit)}"
    image = picture(hit, root)
    if image is None:
        st.caption(f"{caption} (no thumbnail)")
    else:
        st.image(image, caption=caption, width=width)


def query_vector(settings: Settings, store: PhotoStore, text_encoder: TextEncoding) -> tuple[np.ndarray | None, str]:
    """The vector to search with and a line saying what it stands for: words, a photo, or a photo and words."""
    if st.session_state.like or st.session_state.mode == "Photo":
        photo, heading = photo_term(settings, store, text_encoder)
        if photo is not None:
            return with_words(settings, photo, heading)
        if st.session_state.mode == "Photo":  # (a "More like this" photo that is gone falls back to the words)
            return None, heading
    text = st.session_state.q.strip()
    if not text:
        return None, "Type what you are looking for, or click an example."
    try:
        weights, vectors = text_terms(settings.model_only(), text, False)
        vector = combine(list(vectors), weights)
    except BadQuery as problem:
        st.error(f"**That query cannot be read:** {escape_markdown(str(problem))}")
        return None, ""
    return vector, f"Photos matching **{escape_markdown(text)}**"


def photo_term(settings: Settings, store: PhotoStore, text_encoder: TextEncoding) -> tuple[np.ndarray | None, str]:
    """The photo a search starts from ("More like this", or an upload) and what to call it."""
    if st.session_state.like:
        vector = store.vector_of(st.session_state.like)
        if vector is not None:
            [row] = store.get([st.session_state.like], ["name"])
            return vector, f"Photos like **{escape_markdown(display_path((row or {}).get('name') or '?'))}**"
        st.warning("That photo is not in the index.")
        st.session_state.like = ""
        if st.session_state.mode != "Photo":
            return None, ""
    upload = st.file_uploader("Find photos like this one", type=UPLOAD_TYPES, key="upload")
    if upload is None:
        return None, "Upload a photo (JPEG, PNG, WebP, HEIC or AVIF) to find similar ones."
    name = escape_markdown(upload.name)
    try:
        if upload.size > settings.upload_max_bytes:
            raise BadPhoto(f"{upload.size:,} bytes, over the limit of {settings.upload_max_bytes:,}")
        vector, preview = upload_vector(
            settings.model_only(), upload.getvalue(), settings.upload_max_pixels, settings.upload_max_memory_mb << 20
        )
    except BadPhoto as error:
        reason = escape_markdown(str(error))
        st.error(f"**{name} cannot be used:** {reason}. Try another JPEG, PNG, WebP, HEIC or AVIF file.")
        return None, ""
    left, right = st.columns([1, 3])
    left.image(preview, caption=upload.name, width="stretch")
    with right:
        st.markdown("**What is in this photo?**")
        show_labels(text_encoder, vector)
    return vector, f"Photos like **{name}**"


def with_words(settings: Settings, photo: np.ndarray, heading: str) -> tuple[np.ndarray | None, str]:
    """The photo plus the words typed beside it, as terms of one query: "at night", "- people"."""
    st.text_input(
        "…with these words (optional)",
        key="also",
        bind="query-params",
        max_chars=MAX_QUERY_CHARS,
        placeholder="e.g. at night, or - people, or 2:snow - 0.5:cars",
        help="Terms added to the photo (query arithmetic: + and - with spaces around them, weights as 2:word).",
    )
    words = st.session_state.also.strip()
    if not words:
        return photo, heading
    try:
        weights, vectors = text_terms(settings.model_only(), words, True)
        vector = combine([photo, *vectors], [1.0, *weights])
    except BadQuery as problem:
        st.error(f"**Those words cannot be read:** {escape_markdown(str(problem))}")
        return None, ""
    joined = words if words[:1] in "+-" else f"+ {words}"
    return vector, f"{heading} **{escape_markdown(joined)}**"


@st.cache_data(show_spinner=False)
def cameras(_store: PhotoStore, index_name: str, version: str) -> list[str]:
    """The index's cameras, read once per index version (it reads every document)."""
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
        folder.text_input(
            "In folder", key="folder", bind="query-params", placeholder="e.g. 2021/japan", max_chars=MAX_NAME_CHARS
        )
        choices = cameras(store, store.schema.name, store.version())
        camera.selectbox("Camera", choices, index=None, key="camera", bind="query-params", placeholder="any")
        order.selectbox("Order", ORDERS, key="order", bind="query-params")  # the URL says what the CLI says


def controls(settings: Settings) -> None:
    st.segmented_control("Search by", ["Words", "Photo"], key="mode", required=True, on_change=clear_like)
    if st.session_state.mode == "Words":
        st.text_input(
            "Describe the photo you are looking for, then press Enter",
            key="q",
            bind="query-params",
            max_chars=MAX_QUERY_CHARS,
            placeholder="e.g. a dog on a chair",
            on_change=clear_like,
        )
        st.pills("Examples", EXAMPLE_PROMPTS, key="example", on_change=use_example, label_visibility="collapsed")
    results, columns, variety = st.columns(3)
    results.slider("Results", 1, MAX_RESULTS, DEFAULT_RESULTS, key="k", bind="query-params")
    columns.slider("Gallery columns", 1, MAX_COLUMNS, DEFAULT_COLUMNS, key="cols", bind="query-params")
    variety.slider(
        "Variety",
        0.0,
        1.0,
        0.0,
        0.05,
        key="variety",
        bind="query-params",
        help="0 ranks by similarity alone. Higher values prefer, for each next result, photos unlike those "
        "before it (maximal marginal relevance), so that 'beach' is not twelve shots of the same beach.",
    )
    mode, minimum, below, dedup = st.columns([3, 4, 4, 3])  # no weight 1/n: see test_app
    mode.segmented_control(
        "Hide results", CUT_MODES, default="absolute", key="cut", bind="query-params", required=True,
        help="absolute: under a minimum similarity; relative: more than some distance under the best result's.",
    )  # fmt: skip
    minimum.slider(
        "Minimum similarity",
        0.0,
        1.0,
        0.0,
        0.01,
        key="min",
        bind="query-params",
        disabled=st.session_state.cut != "absolute",
        help="Hide results below this cosine similarity (each result shows its own). 0 shows them all.",
    )
    below.slider(
        "At most this far below the best",
        0.0,
        MAX_BELOW_BEST,
        DEFAULT_BELOW_BEST,
        0.005,
        key="below",
        bind="query-params",
        disabled=st.session_state.cut != "relative",
        help="Hide results whose similarity is more than this under the best result's: scores differ from "
        "query to query, so this cut follows each query. The chart above the gallery shows where they drop.",
    )
    dedup.toggle(
        "Fold near-duplicates",
        True,
        key="dedup",
        bind="query-params",
        help=f"A result at least {settings.duplicate_similarity} similar to a better one (the same shot resized, "
        "re-encoded, lightly edited) is folded under it, as '+N similar': the results are that many different photos.",
    )


def result_options(settings: Settings) -> ResultOptions:
    """What the controls ask of the results (Show more multiplies the slider's count)."""
    state = st.session_state
    cut = Cut(minimum=state.min or None) if state.cut == "absolute" else Cut(below_best=state.below)
    return ResultOptions(
        k=min(MAX_SHOWN, state.k * state.pages),
        duplicates=settings.duplicate_similarity if state.dedup else None,
        diversity=state.variety,
        cut=cut,
        order=state.get("order") or "relevance",
    )


def follow_pages(vector: np.ndarray, where: SearchFilter) -> None:
    """One page again for a new search; the pages "Show more" added for this one, in the URL."""
    state = st.session_state
    controls = repr((where, [state.get(key) for key in SEARCH_CONTROLS])).encode()
    signature = hashlib.blake2b(vector.tobytes() + controls).hexdigest()
    if state.get("signature") not in (None, signature):
        state.pages = 1
    state.signature = signature
    if state.pages > 1:
        st.query_params["pages"] = str(state.pages)
    elif "pages" in st.query_params:
        del st.query_params["pages"]


def score_chart(results: Results) -> None:
    """The similarity of every candidate by rank, and the cut: where the scores drop, and what is hidden."""
    threshold = results.threshold
    rows = [
        {"rank": rank, "similarity": score, "": "hidden" if threshold is not None and score < threshold else "shown"}
        for rank, score in enumerate(results.scores, 1)
    ]
    layers: list[dict[str, object]] = [
        {
            "mark": {"type": "line", "point": True, "strokeWidth": 1},
            "encoding": {
                "x": {"field": "rank", "type": "quantitative", "title": "rank of the candidate"},
                "y": {"field": "similarity", "type": "quantitative", "scale": {"zero": False}},
                "color": {"field": "", "type": "nominal", "scale": {"domain": ["shown", "hidden"]}},
            },
        }
    ]
    if threshold is not None:
        layers.append(
            {
                "data": {"values": [{"cut": threshold}]},
                "mark": {"type": "rule", "color": "red", "strokeDash": [4, 2]},
                "encoding": {"y": {"field": "cut", "type": "quantitative"}},
            }
        )
    spec = {"data": {"values": rows}, "layer": layers, "height": 120}
    st.vega_lite_chart(spec=spec, width="stretch", key="scores")


def search(settings: Settings, store: PhotoStore, text_encoder: TextEncoding) -> None:
    controls(settings)
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
    where = search_filter()
    follow_pages(vector, where)
    options = result_options(settings)
    results = find(store, vector, options, where=where, fields=(*PHOTO_FIELDS, "thumbnail"))
    folded = sum(len(result.similar) for result in results.shown)
    st.markdown(
        f"{heading} · {len(results.shown)} results"
        + (f" · {folded} near-duplicates folded" if folded else "")
        + (f" · {results.hidden} of the {len(results.scores)} nearest under the cut" if results.hidden else "")
    )
    if results.scores and not results.shown:
        st.info(f"No result reaches similarity {results.threshold:.3f}; the best has {results.scores[0]:.3f}.")
    if results.scores:
        score_chart(results)
    gallery(results.shown, st.session_state.cols, settings.photos_dir, store, text_encoder)
    if results.more and options.k < MAX_SHOWN:
        st.button(f"Show more (another {st.session_state.k})", on_click=show_more, key="more")


@st.cache_resource
def duplicate_scans() -> SharedScans:
    """The similar pairs found, shared by every session of this process: on a public app, one visitor's scan of
    a large library serves every threshold and every later visitor, until the index changes."""
    return SharedScans(KEPT_SCANS)


def duplicates_view(settings: Settings, store: PhotoStore) -> None:
    """Groups of near-identical photos in the whole index, largest first. The index is scanned once per version
    at the slider's lowest threshold (for every session, one scan at a time); each threshold groups those
    pairs in memory."""
    st.button("← Back to search", on_click=show_view, args=("search",), key="to-search")
    st.subheader("Near-duplicates in the index")
    floor = min(DUPLICATES_FLOOR, settings.duplicate_similarity)
    threshold = st.slider(
        "Photos at least this similar are near-duplicates",
        floor,
        1.0,
        settings.duplicate_similarity,
        0.001,
        key="dup",
        bind="query-params",
        format="%.3f",
    )
    scans = duplicate_scans()
    signature = (settings.server_label, store.schema.name, store.version(), floor)
    pairs = scans.get(signature)
    if pairs is None:
        bar = st.progress(0.0, text="Looking for near-duplicates (or waiting for a scan under way)…")

        def progress(done: int, total: int) -> None:
            bar.progress(done / max(total, 1), text=f"Checked {done:,} of {total:,} photos")

        pairs = scans.scan(signature, lambda: similar_pairs(store, floor, MAX_NEIGHBOURS_SCANNED, progress))
        bar.empty()
    report = duplicate_report(
        store, pairs, threshold, (*PHOTO_FIELDS, "thumbnail"), MAX_GROUPS_SHOWN, MAX_MEMBERS_SHOWN
    )
    st.markdown(
        f"**{len(report.sizes)} groups** of near-duplicates ({report.duplicates} photos beyond the first of each) "
        f"among {report.photos:,} photos, checked in {report.seconds:.1f} s ({report.rate:,.0f} photos/s)."
    )
    notes = []
    if len(report.sizes) > MAX_GROUPS_SHOWN:
        notes.append(f"Showing the {MAX_GROUPS_SHOWN} largest groups.")
    if pairs.capped:
        notes.append(
            f"{pairs.capped:,} photos have over {MAX_NEIGHBOURS_SCANNED} others at {floor} or more: each is linked to "
            "its nearest of them (the others still join through those)."
        )
    if notes:
        st.caption(" ".join(notes) + " `python -m clipsearch duplicates` lists every group and member.")
    for number, group in enumerate(report.groups, 1):
        with st.container(border=True, key=f"group-{number}"):
            st.markdown(f"**Group {number}** · {group.size} photos · the first has the most pixels")
            cells = st.columns(min(len(group.members), MAX_COLUMNS))
            for place, hit in enumerate(group.members):
                with cells[place % len(cells)]:
                    duplicate_tile(hit, settings.photos_dir)
            if group.size > len(group.members):
                st.caption(f"and {group.size - len(group.members)} more")


def duplicate_tile(hit: Hit, root: Path) -> None:
    fields = hit.fields
    caption = (
        f"{hit.score:.4f} · {escape_markdown(display_path(hit.path))} · {fields.get('width')} x {fields.get('height')}"
        f" px · {(fields.get('size') or 0) / 1024:,.0f} KiB"
    )
    captioned_picture(hit, root, caption, "stretch")


def hold_the_link() -> None:
    """The URL's parameters held to their bounds (clipsearch.links) before anything reads them: a link is
    written by a stranger."""
    link = st.query_params.to_dict()
    held = held_link(link)
    if held != link:
        st.query_params.from_dict(held)


def init_state() -> None:
    """Defaults for this browser session; `like`, `pages` and `view` come from the URL (held to their bounds),
    the bound widgets read theirs."""
    if "like" not in st.session_state:
        st.session_state.like = st.query_params.get("like", "")
    if "pages" not in st.session_state:
        st.session_state.pages = int(st.query_params.get("pages", "1"))
    if "view" not in st.session_state:
        st.session_state.view = "duplicates" if st.query_params.get("view") == "duplicates" else "search"
    st.session_state.setdefault("mode", "Words")
    st.session_state.setdefault("q", "")


def main() -> None:
    st.set_page_config(page_title="clipsearch", page_icon="🔎", layout="wide")
    hold_the_link()
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
    if st.session_state.view == "duplicates":
        st.query_params["view"] = "duplicates"
        duplicates_view(settings, store)
    else:
        if "view" in st.query_params:
            del st.query_params["view"]
        search(settings, store, text_encoder)


try:
    main()
except ClipsearchError as problem:
    st.error(f"**{problem.title}.** {escape_markdown(str(problem))}")
except valkey.ConnectionError as problem:
    get_client.clear()  # the next run connects afresh (and restarts the embedded server if it stopped)
    st.session_state.pop("server_seen", None)  # and shows the server's loading again, if it is loading
    st.error(
        f"**Lost the connection to the Valkey server** ({escape_markdown(str(problem))}). Reload the page to reconnect."
    )
