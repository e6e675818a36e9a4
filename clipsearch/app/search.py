"""The search view: the box and the photos first; how many, columns, variety, the cut, folding, filters and
order folded into two popovers, with what is active named above the gallery, each a chip that removes it.
Every control is bound to the URL (names in clipsearch.links), so a link reproduces the search."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from clipsearch.app import charts, resources
from clipsearch.app.pictures import gallery, show_labels
from clipsearch.chart import score_chart_svg
from clipsearch.display import escape_markdown
from clipsearch.errors import IndexMissing
from clipsearch.filters import ORDERS, FilterConflict, SearchFilter
from clipsearch.library import Library
from clipsearch.links import CUT_MODES, MAX_BELOW_BEST, MAX_COLUMNS, MAX_NAME_CHARS, MAX_RESULTS, MAX_SHOWN
from clipsearch.overview import per_month
from clipsearch.photos import FIRST_DAY, LAST_DAY, BadPhoto, display_path
from clipsearch.places import DEFAULT_WITHIN_KM, MAX_WITHIN_KM, Near, parse_position
from clipsearch.query import MAX_QUERY_CHARS, BadQuery
from clipsearch.results import DEFAULT_RESULTS, Cut, Result, Results, SearchOptions, why_nothing
from clipsearch.schema import PHOTO_FIELDS
from clipsearch.settings import Settings
from clipsearch.understanding import Understood

EXAMPLE_PROMPTS = ("cat", "dog on chair", "man jumping", "snowy streets", "woolen hat", "santa claus")
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "heic", "heif", "avif"]
DEFAULT_COLUMNS = 4
DEFAULT_BELOW_BEST = 0.05
TUNING = ("k", "fold", "variety", "cut", "min_similarity", "below_best", "order")  # a change starts from page 1


@dataclass(frozen=True)
class Active:
    """One setting that differs from its default: its words above the gallery, and how its chip resets it."""

    words: str
    key: str
    default: object


# --- state changes, run as widget callbacks before the page is drawn again ---------------------


def use_example() -> None:
    if st.session_state.example:
        st.session_state.q = st.session_state.example
        st.session_state.mode = "Words"
    st.session_state.example = None
    new_words()


def clear_like() -> None:
    st.session_state.like = ""


def new_words() -> None:
    """Other words typed: understood afresh, none given back to CLIP."""
    clear_like()
    st.session_state.as_written = ()


def search_as_written(words: str) -> None:
    """An understood part's chip removed: its words go back to CLIP."""
    st.session_state.as_written = (*st.session_state.as_written, words)


def show_more() -> None:
    st.session_state.pages += 1


def reset(key: str, default: object) -> None:
    st.session_state[key] = default


def select_span() -> None:
    """The months dragged across on the timeline become the date filter (and so the URL's after and before)."""
    if (span := charts.selected_span(st.session_state.timeline.selection)) is not None:
        st.session_state.after, st.session_state.before = span


# --- the view ---------------------------------------------------------------------------


def view(settings: Settings, library: Library) -> None:
    st.session_state.setdefault("like", st.query_params.get("like", ""))
    st.session_state.setdefault("pages", int(st.query_params.get("pages", "1")))
    st.session_state.setdefault("mode", "Words")
    st.session_state.setdefault("q", "")
    st.session_state.setdefault("as_written", tuple(filter(None, st.query_params.get("as_written", "").split("\n"))))
    filters = search_bar(settings, library)
    understood = understood_words(library)
    if understood is not None and understood.parts:
        said = " · ".join(f"{part.kind} {part.value()}" for part in understood.parts)
        filters.caption(f"And from your words: {escape_markdown(said)} (each a chip above the photos).")
    vector, heading = query_vector(settings, library, understood)
    if st.session_state.like:
        st.button("← Back to your search", on_click=clear_like, type="tertiary")
        st.query_params["like"] = st.session_state.like
    elif "like" in st.query_params:
        del st.query_params["like"]
    listed = vector is None and understood is not None and understood.parts and not understood.words
    if vector is None and not listed:
        if heading:
            st.info(heading)
        return
    where = search_filter()
    if understood is not None:
        try:
            where = where.narrowed(understood.filter())
        except FilterConflict as conflict:
            chips(active_settings(settings), understood)
            st.error(f"**What the words say and the filters cannot both hold:** {escape_markdown(str(conflict))}.")
            return
    follow_pages(vector if vector is not None else np.zeros(0, np.float32), where)
    options = search_options(settings)
    fields = (*PHOTO_FIELDS, "thumbnail")
    if vector is None:
        results = library.listing(where, options, fields=fields)
        heading = (
            f"Photos {escape_markdown(where.describe())}, {'oldest' if options.order == 'oldest' else 'newest'} first"
        )
    else:
        results = library.search(vector, options, where=where, fields=fields, text=matched_text(understood))
    folded = sum(len(result.near_duplicates) for result in results.shown)
    st.markdown(
        f"{heading} · {len(results.shown)} results"
        + (f" · {folded} near-duplicates folded" if folded else "")
        + (f" · {results.hidden} of the {len(results.scores)} nearest under the cut" if results.hidden else "")
    )
    chips(active_settings(settings), understood)
    if not results.shown:
        st.info(escape_markdown(why_nothing(results, where)))
    located = [(rank, result) for rank, result in enumerate(results.shown, 1) if result.hit.photo.position]
    photos, beside = st.columns([3, 1]) if located or results.times else (st.container(), None)
    with photos:
        gallery(results.shown, st.session_state.columns, library)
        if results.more and options.k < MAX_SHOWN:
            st.button(f"Show more (another {st.session_state.k})", on_click=show_more, key="more")
    if beside is not None:
        with beside:
            where_and_when(located, len(results.shown), results.times)
    if results.scores:
        score_chart(results)


def understood_words(library: Library) -> Understood | None:
    """The places, dates and cameras the typed words name (none when they are searched as written, or for a
    photo), less those given back to CLIP; the URL keeps the words, given back ones by line."""
    state = st.session_state
    if state.as_written:
        st.query_params["as_written"] = "\n".join(state.as_written)
    elif "as_written" in st.query_params:
        del st.query_params["as_written"]
    if state.mode != "Words" or state.like or state.get("literal") or not state.q.strip():
        return None
    try:
        return library.understand(state.q.strip()).without(state.as_written)
    except IndexMissing:
        return None  # (the search says so)


def matched_text(understood: Understood | None) -> str | None:
    """The words also matched against file and folder names: those searched with CLIP, when words are searched
    and the Match names toggle is on (a photo's search is by CLIP alone)."""
    state = st.session_state
    if state.mode != "Words" or state.like or not state.get("text", True):
        return None
    return understood.words if understood is not None else state.q.strip()


def where_and_when(located: list[tuple[int, Result]], shown: int, times: list[float]) -> None:
    """The results on a map (each point its rank), and the candidates per month on a timeline."""
    if located:
        points = [
            {
                "latitude": result.hit.photo.latitude,
                "longitude": result.hit.photo.longitude,
                "label": str(rank),
                "name": f"#{rank} {display_path(result.hit.photo.name or result.hit.path)}",
                "place": place.describe() if (place := result.hit.photo.place) else "no place near",
            }
            for rank, result in located
        ]
        st.vega_lite_chart(charts.world_map(points, labelled=True), key="map", width="stretch")
        st.caption(f"Where {len(located)} of the {shown} results were taken.")
    if times:
        st.vega_lite_chart(
            charts.timeline(per_month(times)),
            key="timeline",
            on_select=select_span,
            selection_mode=charts.SPAN,
            width="stretch",
        )
        st.caption(f"When the {len(times)} matching photos were taken, per month: drag across months to filter.")


def search_bar(settings: Settings, library: Library) -> DeltaGenerator:
    """Words or a photo, the box, the two popovers of settings, and the examples: one or two lines. Returns the
    Filters popover, where the filters understood from the words are named once they are known."""
    with st.container(horizontal=True, vertical_alignment="bottom", key="search-bar"):
        st.segmented_control(
            "Search by", ["Words", "Photo"], key="mode", required=True, on_change=clear_like,
            label_visibility="collapsed",
        )  # fmt: skip
        if st.session_state.mode == "Words":
            st.text_input(
                "Describe the photo you are looking for, then press Enter",
                key="q",
                bind="query-params",
                max_chars=MAX_QUERY_CHARS,
                placeholder="Describe a photo, e.g. a dog on a chair, then press Enter",
                on_change=new_words,
                label_visibility="collapsed",
                width="stretch",
            )
        with st.popover("Results", key="results-settings"):
            result_controls(settings)
        filters = st.popover("Filters", key="filters")
        with filters:
            filter_controls(library)
    if st.session_state.mode == "Words":
        st.pills("Examples", EXAMPLE_PROMPTS, key="example", on_change=use_example, label_visibility="collapsed")
    return filters


def result_controls(settings: Settings) -> None:
    st.slider("Results", 1, MAX_RESULTS, DEFAULT_RESULTS, key="k", bind="query-params")
    st.slider(
        "Columns", 1, MAX_COLUMNS, DEFAULT_COLUMNS, key="columns", bind="query-params",
        help="Of the gallery on a wide screen; a phone shows one photo a row.",
    )  # fmt: skip
    st.slider(
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
    st.toggle(
        "Fold near-duplicates",
        True,
        key="fold",
        bind="query-params",
        help=f"A result at least {settings.duplicate_similarity} similar to a better one (the same shot resized, "
        "re-encoded, lightly edited) is folded under it: the results are that many different photos.",
    )
    st.segmented_control(
        "Cut", CUT_MODES, default="absolute", key="cut", bind="query-params", required=True,
        help="absolute: under a minimum similarity; relative: more than some distance under the best result's.",
    )  # fmt: skip
    if st.session_state.cut == "absolute":
        st.slider(
            "Minimum similarity",
            0.0,
            1.0,
            0.0,
            0.01,
            key="min_similarity",
            bind="query-params",
            help="Hide results below this cosine similarity (each result shows its own). 0 shows them all.",
        )
    else:
        st.slider(
            "Below the best by at most",
            0.0,
            MAX_BELOW_BEST,
            DEFAULT_BELOW_BEST,
            0.005,
            key="below_best",
            bind="query-params",
            help="Hide results whose similarity is more than this under the best result's: scores differ from "
            "query to query, so this cut follows each query. The chart under the gallery shows where they drop.",
        )
    st.selectbox("Order", ORDERS, key="order", bind="query-params")


def filter_controls(library: Library) -> None:
    """Date range, folder and camera: the same as the CLI's; and whether the words are read for them."""
    st.toggle(
        "Search the words as written",
        False,
        key="literal",
        bind="query-params",
        help='Off: places, dates and cameras that the index holds are read from the words ("temple in Kyoto '
        '2021" searches "temple" among the Kyoto photos of 2021), each shown as a chip that gives its words '
        "back when removed. On: every word goes to CLIP.",
    )
    st.toggle(
        "Match names",
        True,
        key="text",
        bind="query-params",
        help="On: the words are also matched against the photos' file and folder names, and a photo named with "
        "them rises among CLIP's results (each says what matched). Off: CLIP alone.",
    )
    # The days a link takes (clipsearch.photos.FIRST_DAY, LAST_DAY): Streamlit's default bounds, today ± 10 years,
    # would drop an older photo's date from the box and the URL.
    st.date_input("Taken on or after", None, FIRST_DAY, LAST_DAY, key="after", bind="query-params", format="YYYY-MM-DD")
    st.date_input(
        "Taken on or before", None, FIRST_DAY, LAST_DAY, key="before", bind="query-params", format="YYYY-MM-DD"
    )
    st.text_input(
        "In folder", key="folder", bind="query-params", placeholder="e.g. 2021/japan", max_chars=MAX_NAME_CHARS
    )
    choices = resources.cameras(library)
    st.selectbox("Camera", choices, index=None, key="camera", bind="query-params", placeholder="any")
    st.text_input(
        "Place", key="place", bind="query-params", placeholder="a city, region or country, e.g. Kyoto",
        max_chars=MAX_NAME_CHARS,
    )  # fmt: skip
    st.text_input(
        "Near", key="near", bind="query-params", placeholder="LAT,LON, e.g. 35.01,135.77", max_chars=64,
        help="Photos taken within the distance below of this position, in degrees.",
    )  # fmt: skip
    st.number_input(
        "Within (km)", 0.1, MAX_WITHIN_KM, DEFAULT_WITHIN_KM, key="within", bind="query-params",
        disabled=not (st.session_state.get("near") or "").strip(),
    )  # fmt: skip
    if (text := (st.session_state.get("near") or "").strip()) and near_filter() is None:
        try:
            parse_position(text)
        except ValueError as problem:
            st.error(f"**No radius filter:** {escape_markdown(str(problem))}")


def active_settings(settings: Settings) -> list[Active]:
    """What differs from the defaults, in the order the popovers show it."""
    state = st.session_state
    active = [Active(f"{state.k} results", "k", DEFAULT_RESULTS)] if state.k != DEFAULT_RESULTS else []
    if state.get("literal"):
        active.append(Active("words searched as written", "literal", False))
    if not state.get("text", True):
        active.append(Active("names not matched", "text", True))
    if not state.fold:
        active.append(Active("near-duplicates shown", "fold", True))
    if state.variety:
        active.append(Active(f"variety {state.variety:g}", "variety", 0.0))
    if state.cut == "absolute" and state.get("min_similarity"):
        active.append(Active(f"minimum similarity {state.min_similarity:g}", "min_similarity", 0.0))
    if state.cut == "relative":
        active.append(Active(f"relative cut {state.get('below_best', DEFAULT_BELOW_BEST):g}", "cut", "absolute"))
    if (state.get("order") or "relevance") != "relevance":
        active.append(Active(f"{state.order} first", "order", "relevance"))
    if state.get("after"):
        active.append(Active(f"taken on or after {state.after.isoformat()}", "after", None))
    if state.get("before"):
        active.append(Active(f"taken on or before {state.before.isoformat()}", "before", None))
    if (state.get("folder") or "").strip():
        active.append(Active(f"in {display_path(state.folder.strip())}", "folder", ""))
    if state.get("camera"):
        active.append(Active(f"camera {state.camera}", "camera", None))
    if (state.get("place") or "").strip():
        active.append(Active(f"in {state.place.strip()}", "place", ""))
    if (near := near_filter()) is not None:
        active.append(Active(near.describe(), "near", ""))
    return active


PART_ICONS = {
    "place": ":material/location_on:",
    "date": ":material/calendar_month:",
    "camera": ":material/photo_camera:",
}


def chips(active: list[Active], understood: Understood | None = None) -> None:
    """What the words were understood to say, each a chip that gives its words back to CLIP, and each active
    setting as a chip that removes it: one click each."""
    parts = understood.parts if understood is not None else ()
    if not active and not parts:
        return
    with st.container(horizontal=True, gap="small", key="active-settings"):
        for number, part in enumerate(parts):
            st.button(
                f"{escape_markdown(part.words)} ✕",
                key=f"part-{number}",
                on_click=search_as_written,
                args=(part.words,),
                help=f"Understood as {part.kind} {escape_markdown(part.value())}: remove to search these words as "
                "written",
                icon=PART_ICONS[part.kind],
            )
        for setting in active:
            st.button(
                f"{escape_markdown(setting.words)} ✕",
                key=f"chip-{setting.key}",
                on_click=reset,
                args=(setting.key, setting.default),
                help="Remove this setting",
                type="secondary",
                icon=None,
            )


def query_vector(settings: Settings, library: Library, understood: Understood | None) -> tuple[np.ndarray | None, str]:
    """The vector to search with and a line saying what it stands for: words (those left once places, dates
    and cameras were understood), a photo, or a photo and words."""
    state = st.session_state
    if state.like or state.mode == "Photo":
        photo, heading = photo_term(settings, library)
        if photo is not None:
            return with_words(settings, library, photo, heading)
        if state.mode == "Photo":  # (a "More like this" photo that is gone falls back to the words)
            return None, heading
    text = understood.words if understood is not None else state.q.strip()
    if not text:
        return None, "" if understood is not None else "Type what you are looking for, or click an example."
    try:
        vector = library.compose(resources.term_vectors(library, text, False))
    except BadQuery as problem:
        st.error(f"**That query cannot be read:** {escape_markdown(str(problem))}")
        return None, ""
    return vector, f"Photos matching **{escape_markdown(text)}**"


def photo_term(settings: Settings, library: Library) -> tuple[np.ndarray | None, str]:
    """The photo a search starts from ("More like this", or an upload) and what to call it."""
    state = st.session_state
    if state.like:
        vector = library.stored_vector(state.like)
        if vector is not None:
            name = library.photo_name(state.like) or "?"
            return vector, f"Photos like **{escape_markdown(display_path(name))}**"
        st.warning("That photo is not in the index.")
        state.like = ""
        if state.mode != "Photo":
            return None, ""
    upload = st.file_uploader("Find photos like this one", type=UPLOAD_TYPES, key="upload")
    if upload is None:
        return None, "Upload a photo (JPEG, PNG, WebP, HEIC or AVIF) to find similar ones."
    name = escape_markdown(upload.name)
    try:
        if upload.size > settings.upload_max_bytes:
            raise BadPhoto(f"{upload.size:,} bytes, over the limit of {settings.upload_max_bytes:,}")
        vector, preview = resources.upload_query(library, settings.model, upload.getvalue())
    except BadPhoto as error:
        reason = escape_markdown(str(error))
        st.error(f"**{name} cannot be used:** {reason}. Try another JPEG, PNG, WebP, HEIC or AVIF file.")
        return None, ""
    left, right = st.columns([1, 3])
    left.image(preview, caption=upload.name, width="stretch")
    with right:
        st.markdown("**What is in this photo?**")
        show_labels(library, vector)
    return vector, f"Photos like **{name}**"


def with_words(settings: Settings, library: Library, photo: np.ndarray, heading: str) -> tuple[np.ndarray | None, str]:
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
        vector = library.compose(resources.term_vectors(library, words, True), [photo])
    except BadQuery as problem:
        st.error(f"**Those words cannot be read:** {escape_markdown(str(problem))}")
        return None, ""
    joined = words if words[:1] in "+-" else f"+ {words}"
    return vector, f"{heading} **{escape_markdown(joined)}**"


def search_filter() -> SearchFilter:
    """The filters as the user set them (in the page or the URL)."""
    state = st.session_state
    return SearchFilter.of_days(
        after=state.after.isoformat() if state.get("after") else None,
        before=state.before.isoformat() if state.get("before") else None,
        folder=state.get("folder"),
        camera=state.get("camera"),
        place=state.get("place"),
        near=near_filter(),
    )


def near_filter() -> Near | None:
    """The radius filter, or None where none is set or its position cannot be read (the box says why)."""
    state = st.session_state
    text = (state.get("near") or "").strip()
    if not text:
        return None
    try:
        return Near(*parse_position(text), float(state.get("within") or DEFAULT_WITHIN_KM))
    except ValueError:
        return None


def search_options(settings: Settings) -> SearchOptions:
    """What the controls ask of the results (Show more multiplies the slider's count)."""
    state = st.session_state
    relative = state.cut == "relative"
    cut = Cut(below_best=state.below_best) if relative else Cut(min_similarity=state.min_similarity or None)
    return SearchOptions(
        k=min(MAX_SHOWN, state.k * state.pages),
        fold=state.fold,
        duplicate_similarity=settings.duplicate_similarity,
        variety=state.variety,
        cut=cut,
        order=state.get("order") or "relevance",
    )


def follow_pages(vector: np.ndarray, where: SearchFilter) -> None:
    """One page again for a new search; the pages "Show more" added for this one, in the URL."""
    state = st.session_state
    controls = repr((where, [state.get(key) for key in TUNING])).encode()
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
    scores = st.expander("How similar the candidates are", key="scores", on_change="rerun")
    if scores.open:  # drawn when opened, not on every search
        with scores:
            st.html(score_chart_svg(results.scores, results.threshold))
            st.caption("Every candidate's similarity by rank (grey: under the cut; red: the cut).")
