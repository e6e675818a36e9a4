"""The page: its settings, the link held to its bounds, the shared sidebar, and the views under
st.navigation (Search, Duplicates, Library). Errors a person can act on are shown with their title."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from clipsearch.app import duplicates, library_view, problems, resources, search
from clipsearch.errors import IndexMissing
from clipsearch.library import Library
from clipsearch.links import held_link
from clipsearch.settings import Settings

View = Callable[[Settings, Library], None]


def hold_the_link() -> None:
    """The URL's parameters held to their bounds (clipsearch.links) before anything reads them: a link is
    written by a stranger. Old names are written anew."""
    link = st.query_params.to_dict()
    held = held_link(link)
    if held != link:
        st.query_params.from_dict(held)
        if held.keys() - link.keys():  # an old name written anew: the controls read the URL as the run began
            st.rerun()


def needs_index(settings: Settings, library: Library, view: View) -> Callable[[], None]:
    """The view, or where there is no index yet, a message saying how to make one."""

    def shown() -> None:
        try:
            library.store()
        except IndexMissing:
            hint = (
                f"use **Index {settings.photos_dir}/** in the sidebar or the Library view, or run "
                if library.may_index(settings.photos_dir)
                else "run "
            )
            st.info(f"No photos indexed yet: {hint}`python scripts/load_photos.py [FOLDER]`.")
            return
        view(settings, library)

    return shown


def main() -> None:
    st.set_page_config(page_title="clipsearch", page_icon="🔎", layout="wide", initial_sidebar_state="auto")
    hold_the_link()
    library = resources.library()
    settings = library.settings
    library.schema()  # the model, and the index checked against it: here, where its errors reach run()
    search_page = st.Page(
        needs_index(settings, library, search.view), title="Search", icon=":material/search:", default=True
    )
    pages = {
        "search": search_page,
        "duplicates": st.Page(
            needs_index(settings, library, duplicates.view),
            title="Duplicates",
            icon=":material/content_copy:",
            url_path="duplicates",
        ),
        "library": st.Page(
            lambda: library_view.view(library, search_page),
            title="Library",
            icon=":material/photo_library:",
            url_path="library",
        ),
    }
    current = st.navigation(list(pages.values()), position="top")
    if (old := st.query_params.get("view")) in pages:  # a link from before the views had their own paths
        del st.query_params["view"]
        if pages[old] is not current:
            st.switch_page(pages[old], query_params=st.query_params.to_dict())
    library_view.sidebar(library, with_index=current is not pages["library"])
    current.run()


def run() -> None:
    with problems.explained():
        main()
