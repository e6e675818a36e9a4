"""Text from users, file names and URLs, made safe to show in Streamlit's Markdown."""

from __future__ import annotations

import re

# CommonMark's punctuation that can start markup, and ':' for Streamlit's own :color[...] and :emoji: directives.
_MARKUP = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$=])")
# GitHub-flavoured Markdown turns bare addresses into links even when their punctuation is escaped.
_AUTOLINK = re.compile(r"(://|www\.|@)", re.IGNORECASE)
WORD_JOINER = "\u2060"  # invisible, and no address contains it


# Unicode's bidirectional embeddings, overrides and isolates: in a name they reverse what is shown after it
# ("photo\u202egpj.exe" shows as "photoexe.jpg", and the date beside it backwards).
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def without_bidi_controls(text: str) -> str:
    return _BIDI_CONTROLS.sub("", text)


def escape_markdown(text: str) -> str:
    """`text` shown as itself: no links, images, code spans, HTML, colours or LaTeX can come out of it, and
    nothing that reorders the text after it."""
    flat = " ".join(without_bidi_controls(text).split())  # a newline would start a new block (a heading, a list)
    unlinked = _AUTOLINK.sub(lambda match: match[0][0] + WORD_JOINER + match[0][1:], flat)
    return _MARKUP.sub(r"\\\1", unlinked)
