"""How the page shows what went wrong: an error a person can act on with its title, and a lost connection to the
server forgotten, so that the next run connects again. Around the whole page, and around each fragment that
reads the server (the search, the index panel, the dialogs), whose own runs do not go through the page's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from clipsearch.app import resources
from clipsearch.display import escape_markdown
from clipsearch.errors import ClipsearchError
from clipsearch.library import LOST


@contextmanager
def explained() -> Iterator[None]:
    try:
        yield
    except ClipsearchError as problem:
        st.error(f"**{problem.title}.** {escape_markdown(str(problem))}")
    except LOST as problem:
        resources.forget_client()
        st.error(
            f"**Lost the connection to the Valkey server** ({escape_markdown(str(problem))}). "
            "Reload the page to reconnect."
        )
