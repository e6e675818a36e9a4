"""The library view and the sidebar's index panel: what the index holds, from which model, on which server,
and (on the embedded server, over its own folder) the button that indexes the photo folder."""

from __future__ import annotations

import streamlit as st

from clipsearch.app import resources
from clipsearch.display import escape_markdown
from clipsearch.errors import IndexMissing
from clipsearch.labels import DEFAULT_LABELS, MAX_LABEL_CHARS, MAX_LABELS, LabelList
from clipsearch.library import Library
from clipsearch.loader import LoadOptions
from clipsearch.settings import Settings


def view(settings: Settings, library: Library) -> None:
    st.subheader("Your library")
    index_panel(settings, library)


def sidebar(settings: Settings, library: Library, with_index: bool) -> None:
    """The index panel (but beside the library view, which shows it itself) and the labels."""
    with st.sidebar:
        if with_index:
            st.header("Index")
            index_panel(settings, library)
        labels_editor()


@st.fragment
def index_panel(settings: Settings, library: Library) -> None:
    """How many photos, which model, index and server; and what waits to be indexed. A fragment: checking for
    changes reruns it alone, not the search."""
    try:
        store = library.store()
        version, schema = store.version(), store.schema
        count = resources.count(library, schema.name, version)
    except IndexMissing:
        version, count, schema = "", 0, library.schema()
    st.metric("Photos indexed", count)
    st.caption(f"**Model** {schema.model.name} · {schema.model.pretrained} · {schema.model.dim}-d")
    st.caption(f"**Index** `{schema.name}` ({schema.algorithm}, cosine)")
    st.caption(f"**Server** {settings.server_label}")
    if library.may_index(settings.photos_dir):
        waiting = resources.pending(library, schema.name, settings.photos_dir, version)
        if waiting:
            st.warning(f"{waiting} photos in `{settings.photos_dir}` are new, changed or gone.")
            if st.button(f"Index {settings.photos_dir}/", type="primary", width="stretch"):
                index_photos(settings, library)
        else:
            st.caption(f"`{settings.photos_dir}/` is fully indexed.")
        st.button("Check for changes", type="tertiary", on_click=resources.pending.clear)
    if "last_report" in st.session_state:
        st.caption(st.session_state.last_report)


def index_photos(settings: Settings, library: Library) -> None:
    """Run the loader on the photo folder with a progress bar, then redraw the whole page. The image model is
    loaded only if a photo needs encoding (not for photos that were only moved or deleted)."""
    bar = st.progress(0.0, text="Looking for new, changed and deleted photos…")

    def on_progress(done: int, total: int) -> None:
        bar.progress(done / total, text=f"Indexed {done} of {total} photos")

    indexed = library.index_folder(
        settings.photos_dir, LoadOptions(prune=True), on_progress=on_progress, show_bar=False
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
        help=f"Up to {MAX_LABELS} labels of up to {MAX_LABEL_CHARS} characters each.",
    )
    labels = LabelList.parse(st.session_state.labels)
    if labels.left_out or labels.shortened:
        st.caption(
            f"Ranking the first {MAX_LABELS} labels, each cut to {MAX_LABEL_CHARS} characters: "
            f"{labels.left_out} left out, {labels.shortened} shortened."
        )
