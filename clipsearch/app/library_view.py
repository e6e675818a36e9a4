"""The library view and the sidebar's index panel: what the collection holds (photos per month, camera,
country, city and folder, and a map of its places, each a way into Search with that filter), what the index
is, from which model, on which server, and (on the embedded server, over its own folder) the button that
indexes the photo folder."""

from __future__ import annotations

from typing import Any

import streamlit as st
from streamlit.navigation.page import StreamlitPage

from clipsearch.app import charts, problems, resources
from clipsearch.display import escape_markdown
from clipsearch.errors import IndexMissing
from clipsearch.library import (
    DEFAULT_LABELS,
    MAX_LABEL_CHARS,
    MAX_LABELS,
    MAX_LABELS_TEXT,
    LabelList,
    Library,
    LoadOptions,
    Overview,
)

LISTED_CITIES = 12  # cities named under the map, each a link


def view(library: Library, search: StreamlitPage) -> None:
    st.subheader("Your library")
    try:
        library.store()
    except IndexMissing:
        index_panel()
        return
    summary = resources.overview(library)
    collection(summary, search)
    with st.expander("The index", expanded=summary.photos == 0):
        index_panel()


def collection(summary: Overview, search: StreamlitPage) -> None:
    """The counts and the map; a click on a bar, a span of months or a city opens Search with that filter."""
    with st.container(horizontal=True, key="library-metrics"):
        st.metric("Photos", f"{summary.photos:,}")
        st.metric("With a date", f"{summary.photos - summary.undated:,}")
        st.metric("With a position", f"{summary.located:,}")
        st.metric("Countries", f"{len(summary.countries):,}")
    if summary.months:
        st.markdown("**Photos per month** · drag across months to search them")
        event = st.vega_lite_chart(
            charts.timeline(summary.months), key="library-months", on_select="rerun", width="stretch"
        )
        if (span := charts.selected_span(event.selection)) is not None:
            first, last = span
            st.switch_page(search, query_params={"after": first.isoformat(), "before": last.isoformat()})
    left, right = st.columns(2)
    with left:
        if summary.spots:
            st.markdown("**Where** · each point a place, hover to name it")
            with st.container(key="library-places"):
                st.vega_lite_chart(charts.spots_map(summary.spots), width="stretch")
                for place, photos in summary.cities[:LISTED_CITIES]:
                    label = f"{escape_markdown(place.describe())} · {photos}"  # a name from the index, not Markdown
                    st.page_link(search, label=label, query_params={"place": place.city})
        clickable_bars("Countries", summary.countries, "country", "place", search)
    with right:
        clickable_bars("Cameras", summary.cameras, "camera", "camera", search)
        folders = [(name, photos) for name, photos in summary.folders if name]
        clickable_bars("Folders", folders, "folder", "folder", search)


def clickable_bars(title: str, counts: list[tuple[str, int]], what: str, param: str, search: StreamlitPage) -> None:
    """Photos per value as bars; a click opens Search filtered to that value (URL parameter `param`)."""
    if not counts:
        return
    st.markdown(f"**{title}** · click one to search it")
    event: Any = st.vega_lite_chart(
        charts.bars(counts, what), key=f"library-{what}", on_select="rerun", width="stretch"
    )
    if (value := charts.picked(event.selection)) is not None:
        st.switch_page(search, query_params={param: value})


def sidebar(library: Library, with_index: bool) -> None:
    """The labels, and the index panel where there is something to index (but beside the library view, which
    shows it itself): every search runs this, and what the index is, from which model, on which server, the
    library view says."""
    with st.sidebar:
        if with_index and waiting(library):
            st.header("Index")
            index_panel()
        labels_editor()


def waiting(library: Library) -> int:
    """Photos of the photo folder the page may index that the index lacks, holds stale or holds though gone (all
    of them where there is no index yet): 0 where the page may not index it."""
    folder = library.settings.photos_dir
    if not library.may_index(folder):
        return 0
    try:
        store = library.store()
    except IndexMissing:
        return resources.pending(library, library.settings.index_name, folder, "")
    return resources.pending(library, store.schema.name, folder, store.version())


@st.fragment
def index_panel() -> None:
    """How many photos, which model, index and server; and what waits to be indexed. A fragment: checking for
    changes reruns it alone, not the search. It takes no Library: a fragment keeps its arguments for its
    reruns, and must not keep a client or a model alive. Its own runs do not go through the page's handling of
    errors."""
    with problems.explained():
        index_shown(resources.library())


def index_shown(library: Library) -> None:
    """The index panel's lines, and its buttons where this page may index the photo folder."""
    settings = library.settings
    try:
        schema, count = library.store().schema, resources.count(library)
    except IndexMissing:
        schema, count = library.schema(), 0
    st.metric("Photos indexed", count)
    st.caption(f"**Model** {schema.model.name} · {schema.model.pretrained} · {schema.model.dim}-d")
    st.caption(f"**Index** `{schema.name}` ({schema.algorithm}, cosine)")
    st.caption(f"**Server** {settings.server_label}")
    if library.may_index(settings.photos_dir):
        if pending := waiting(library):
            st.warning(f"{pending} photos in `{settings.photos_dir}` are new, changed or gone.")
            if st.button(f"Index {settings.photos_dir}/", type="primary", width="stretch"):
                index_photos(library)
        else:
            st.caption(f"`{settings.photos_dir}/` is fully indexed.")
        st.button("Check for changes", type="tertiary", on_click=resources.pending.clear)
    if "last_report" in st.session_state:
        st.caption(st.session_state.last_report)


def index_photos(library: Library) -> None:
    """Run the loader on the photo folder with a progress bar, then redraw the whole page. The image model is
    loaded only if a photo needs encoding (not for photos that were only moved or deleted)."""
    bar = st.progress(0.0, text="Looking for new, changed and deleted photos…")

    def on_progress(done: int, total: int) -> None:
        bar.progress(done / total, text=f"Indexed {done} of {total} photos")

    indexed = library.index_folder(
        library.settings.photos_dir,
        LoadOptions(prune=True, read_text=library.settings.read_text),
        on_progress=on_progress,
        show_bar=False,
    )
    st.session_state.last_report = "  \n".join(escape_markdown(line) for line in indexed.summary().splitlines())
    resources.pending.clear()
    st.rerun(scope="app")


@st.fragment
def labels_editor() -> None:
    """The labels a photo's "What is in this photo?" ranks. A fragment: editing them reruns nothing else."""
    st.header("What is in this photo?")
    st.text_area(
        "Labels to rank, one per line",
        "\n".join(DEFAULT_LABELS),
        key="labels",
        height=180,
        max_chars=MAX_LABELS_TEXT,
        help=f"Up to {MAX_LABELS} labels of up to {MAX_LABEL_CHARS} characters each.",
    )
    labels = LabelList.parse(st.session_state.labels)
    if labels.left_out or labels.shortened or labels.cut:
        st.caption(
            f"Ranking the first {MAX_LABELS} labels, each cut to {MAX_LABEL_CHARS} characters: "
            f"{labels.left_out} left out, {labels.shortened} shortened"
            + (f", nothing read past {MAX_LABELS_TEXT:,} characters." if labels.cut else ".")
        )
