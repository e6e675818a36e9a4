"""Markdown escaping of text from users and file names: no server, no model."""

from __future__ import annotations

import re

from clipsearch.display import WORD_JOINER, escape_markdown


def test_escaped_text_reads_the_same_and_has_no_markup_left() -> None:
    hostile = "[a](http://x.example/) ![i](y.png) `code` **bold** :red[red] $x$ <b>b</b>\n# heading www.x.example a@b.c"
    escaped = escape_markdown(hostile)
    shown = re.sub(r"\\(.)", r"\1", escaped).replace(WORD_JOINER, "")
    assert shown == " ".join(hostile.split())
    assert "\n" not in escaped
    assert not re.search(r"(?<!\\)[\[\]()`*:<>$#]", escaped), escaped
    assert "://" not in escaped and "www." not in escaped.lower() and "a@b" not in escaped
    assert escape_markdown("holiday photo 2024") == "holiday photo 2024"
