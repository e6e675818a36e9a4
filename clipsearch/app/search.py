"""The search view: one line of settings (words or a photo; how many, columns, variety, the cut, folding, filters
and order folded into two popovers), then the box and the photos, with what is active named above the gallery,
each a chip that removes it. Every control is bound to the URL (names in clipsearch.links), so a link
reproduces the search."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from clipsearch.app import charts, problems, resources
from clipsearch.app.pictures import gallery, show_labels
from clipsearch.display import escape_markdown
from clipsearch.library import (
    DEFAULT_RESULTS,
    DEFAULT_WITHIN_KM,
    FIRST_DAY,
    LAST_DAY,
    MAX_QUERY_CHARS,
    MAX_WITHIN_KM,
    ORDERS,
    PHOTO_FIELDS,
    BadQuery,
    Cut,
    Found,
    Library,
    Near,
    NotInIndex,
    QueryPhoto,
    Result,
    Results,
    SearchFilter,
    SearchOptions,
    SearchRequest,
    Understood,
    UnusablePhoto,
    WordsConflict,
    display_path,
    parse_position,
    per_month,
    score_chart_svg,
    why_nothing,
)
from clipsearch.links import CUT_MODES, MAX_BELOW_BEST, MAX_COLUMNS, MAX_NAME_CHARS, MAX_RESULTS, MAX_SHOWN
from clipsearch.settings import Settings

EXAMPLE_PROMPTS = ("cat", "dog on chair", "man jumping", "snowy streets", "woolen hat", "santa claus")
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "heic", "heif", "avif"]
DEFAULT_COLUMNS = 4
DEFAULT_BELOW_BEST = 0.05
PAGE_FIELDS = (*PHOTO_FIELDS, "thumbnail")


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
    """A setting's chip removed: its control, in the settings bar, is drawn again with the default."""
    st.session_state[key] = default
    st.session_state.settings_changed = True


def select_span() -> None:
    """The months dragged across on the timeline become the date filter (and so the URL's after and before)."""
    if (span := charts.selected_span(st.session_state.timeline.selection)) is not None:
        st.session_state.after, st.session_state.before = span
        st.session_state.settings_changed = True


# --- the view ---------------------------------------------------------------------------


def view(settings: Settings, library: Library) -> None:
    """The settings bar, then the box and its results as a fragment: a new query (or a result's action) runs the
    fragment alone, not the sidebar, the navigation and the settings' fifteen controls, which it does not change."""
    st.session_state.setdefault("like", st.query_params.get("like", ""))
    st.session_state.setdefault("pages", int(st.query_params.get("pages", "1")))
    st.session_state.setdefault("mode", "Words")
    st.session_state.setdefault("q", "")
    st.session_state.setdefault("as_written", tuple(filter(None, st.query_params.get("as_written", "").split("\n"))))
    settings_bar(settings, library)
    box_and_results()


@st.fragment
def box_and_results() -> None:
    """It takes no Library: a fragment keeps its arguments for its own runs, and this run's comes from
    resources."""
    if st.session_state.pop("settings_changed", False):  # by a chip or the timeline: the settings bar shows them
        st.rerun(scope="app")
    with problems.explained():
        show_search(resources.library())


def show_search(library: Library) -> None:
    """The box, the search it asks for, and what it found."""
    settings = library.settings
    search_box()
    if st.session_state.as_written:
        st.query_params["as_written"] = "\n".join(st.session_state.as_written)
    elif "as_written" in st.query_params:
        del st.query_params["as_written"]
    if st.session_state.like:
        st.button("← Back to your search", on_click=clear_like, type="tertiary")
        st.query_params["like"] = st.session_state.like
    elif "like" in st.query_params:
        del st.query_params["like"]
    found = search(settings, library)
    if found is None:
        return
    results, understood = found.results, found.understood
    folded = sum(len(result.near_duplicates) for result in results.shown)
    st.markdown(
        f"{found.heading(emphasised, escape_markdown)} · {len(results.shown)} results"
        + (f" · {folded} near-duplicates folded" if folded else "")
        + (f" · {results.hidden} of the {len(results.scores)} nearest under the cut" if results.hidden else "")
    )
    chips(active_settings(settings), understood)
    if not results.shown:
        st.info(escape_markdown(why_nothing(results, found.where)))
    located = [(rank, result) for rank, result in enumerate(results.shown, 1) if result.hit.photo.position]
    photos, beside = st.columns([3, 1]) if located or results.times else (st.container(), None)
    with photos:
        gallery(results.shown, st.session_state.columns, library)
        if results.more and len(results.shown) < MAX_SHOWN:
            st.button(f"Show more (another {st.session_state.k})", on_click=show_more, key="more")
    if beside is not None:
        with beside:
            where_and_when(located, len(results.shown), results.times)
    if results.scores:
        score_chart(results)


def emphasised(words: str) -> str:
    """What a person gave, in a heading: bold, and never Markdown of its own."""
    return f"**{escape_markdown(words)}**"


def search(settings: Settings, library: Library) -> Found | None:
    """The search the page asks for (Library.search), or None with what to do instead said: words, or a photo
    ("More like this", or an upload) with words added to it."""
    state = st.session_state
    slot = None
    if state.like or state.mode == "Photo":
        if (asked := photo_request(settings)) is None:
            return None
        request, slot = asked
    elif (words := words_request(settings)) is not None:
        request = words
    else:
        return None
    follow_pages(request)
    try:
        found = library.search(replace(request, pages=state.pages))
    except NotInIndex:  # (a "More like this" photo that is gone: the words are searched instead)
        st.warning("That photo is not in the index.")
        state.like = ""
        return search(settings, library) if state.mode != "Photo" else None
    except UnusablePhoto as error:
        reason = escape_markdown(error.reason)
        st.error(
            f"**{escape_markdown(error.name)} cannot be used:** {reason}. Try another JPEG, PNG, WebP, HEIC or AVIF "
            "file."
        )
        return None
    except BadQuery as problem:
        what = "Those words" if request.by_photo else "That query"
        st.error(f"**{what} cannot be read:** {escape_markdown(str(problem))}")
        return None
    except WordsConflict as conflict:
        chips(active_settings(settings), conflict.understood)
        st.error(f"**What the words say and the filters cannot both hold:** {escape_markdown(str(conflict))}.")
        return None
    if found.photos and slot is not None:
        preview(slot, library, found)
    return found


def words_request(settings: Settings) -> SearchRequest | None:
    """The typed words, read for places, dates and cameras unless searched as written, and matched against the
    photos' words unless Match names is off."""
    state = st.session_state
    words = state.q.strip()
    if not words:
        st.info("Type what you are looking for, or click an example.")
        return None
    return SearchRequest(
        words=words,
        where=search_filter(),
        options=search_options(settings),
        understand=not state.get("literal"),
        as_written=state.as_written,
        match_text=state.get("text", True),
        fields=PAGE_FIELDS,
    )


def photo_request(settings: Settings) -> tuple[SearchRequest, DeltaGenerator] | None:
    """A photo of the index ("More like this") or an upload, and the words added to it; and the place for the
    upload's preview, above those words."""
    state = st.session_state
    photos: tuple[QueryPhoto, ...] = ()
    if not state.like:
        upload = st.file_uploader("Find photos like this one", type=UPLOAD_TYPES, key="upload")
        if upload is None:
            st.info("Upload a photo (JPEG, PNG, WebP, HEIC or AVIF) to find similar ones.")
            return None
        photos = (QueryPhoto(upload.name, upload.getvalue()),)
    slot = st.container()
    st.text_input(
        "…with these words (optional)",
        key="also",
        bind="query-params",
        max_chars=MAX_QUERY_CHARS,
        placeholder="e.g. at night, or - people, or 2:snow - 0.5:cars",
        help="Terms added to the photo (query arithmetic: + and - with spaces around them, weights as 2:word).",
    )
    request = SearchRequest(
        words=state.also.strip(),
        photos=photos,
        like=(state.like,) if state.like else (),
        where=search_filter(),
        options=search_options(settings),
        fields=PAGE_FIELDS,
    )
    return request, slot


def preview(slot: DeltaGenerator, library: Library, found: Found) -> None:
    """An uploaded photo as decoded (within the upload bounds), and what CLIP sees in it."""
    left, right = slot.columns([1, 3])
    left.image(found.photos[0].preview, caption=found.subjects[-1], width="stretch")
    with right:
        st.markdown("**What is in this photo?**")
        show_labels(library, found.photos[0].vector)


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


def settings_bar(settings: Settings, library: Library) -> None:
    """Words or a photo, and the two popovers of settings: one line above the box."""
    with st.container(horizontal=True, vertical_alignment="bottom", key="search-bar"):
        st.segmented_control(
            "Search by", ["Words", "Photo"], key="mode", required=True, on_change=clear_like,
            label_visibility="collapsed",
        )  # fmt: skip
        with st.popover("Results", key="results-settings"):
            result_controls(settings)
        with st.popover("Filters", key="filters"):
            filter_controls(library)


def search_box() -> None:
    """The box for words, and the examples under it."""
    if st.session_state.mode != "Words":
        return
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
    st.pills("Examples", EXAMPLE_PROMPTS, key="example", on_change=use_example, label_visibility="collapsed")


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
    # The days a link takes (clipsearch.ingest.facts.FIRST_DAY, LAST_DAY): Streamlit's default bounds, today ± 10
    # years, would drop an older photo's date from the box and the URL.
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
        within = state.get("within")
        return Near(*parse_position(text), DEFAULT_WITHIN_KM if within is None else float(within))
    except ValueError:
        return None


def search_options(settings: Settings) -> SearchOptions:
    """What the controls ask of the results (Show more adds pages of the slider's count: SearchRequest.pages)."""
    state = st.session_state
    relative = state.cut == "relative"
    cut = Cut(below_best=state.below_best) if relative else Cut(min_similarity=state.min_similarity or None)
    return SearchOptions(
        k=state.k,
        fold=state.fold,
        duplicate_similarity=settings.duplicate_similarity,
        variety=state.variety,
        cut=cut,
        order=state.get("order") or "relevance",
    )


def follow_pages(request: SearchRequest) -> None:
    """One page again for a new search; the pages "Show more" added for this one, in the URL."""
    state = st.session_state
    digests = tuple(replace(photo, data=hashlib.blake2b(photo.data).digest()) for photo in request.photos)
    asked = replace(request, photos=digests)
    signature = hashlib.blake2b(repr(asked).encode()).hexdigest()
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
