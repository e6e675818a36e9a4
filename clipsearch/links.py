"""What a shared link may say: every URL parameter the search page reads, with its kind and bounds.

A link is written by a stranger, so the page holds it to this table before anything reads it: text is cut
to its length, and a number out of its range, an unknown choice, a malformed date or an unknown parameter is
dropped (the control then shows its default). The page builds its controls from the same bounds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from clipsearch.index.filters import ORDERS
from clipsearch.ingest.facts import day_start
from clipsearch.ingest.places import MAX_WITHIN_KM, parse_position
from clipsearch.search.query import MAX_QUERY_CHARS

MAX_RESULTS = 100  # the Results slider
MAX_COLUMNS = 8  # the Columns slider
MAX_SHOWN = 1000  # "Show more" stops here
MAX_BELOW_BEST = 0.3  # the "Below the best by at most" slider
MAX_NAME_CHARS = 256  # a folder, a camera, a photo's key
CUT_MODES = ("absolute", "relative")  # a minimum similarity, or a distance from the best result's
VIEWS = ("search", "duplicates", "library")  # the page's views, each at its own path (/duplicates)
TOGGLE = ("true", "false")  # how Streamlit writes a bound toggle
MAX_NUMBER_CHARS = 32  # no number the page takes is longer


@dataclass(frozen=True)
class Param:
    """One URL parameter: text (cut to `max_chars`), a whole number or a number in [low, high], one of
    `choices`, a day as YYYY-MM-DD, or a position as LAT,LON."""

    kind: Literal["text", "whole", "number", "choice", "day", "position"]
    low: float = 0.0
    high: float = 0.0
    choices: tuple[str, ...] = ()
    max_chars: int = MAX_NUMBER_CHARS

    def held(self, value: str) -> str | None:
        """The value as the page may read it, or None to drop it."""
        if self.kind == "text":
            return value[: self.max_chars]
        if len(value) > self.max_chars:
            return None
        if self.kind == "choice":
            return value if value in self.choices else None
        if self.kind in ("day", "position"):
            try:
                day_start(value) if self.kind == "day" else parse_position(value)
            except ValueError:
                return None
            return value
        try:
            number = int(value) if self.kind == "whole" else float(value)
        except ValueError:
            return None
        return value if math.isfinite(number) and self.low <= number <= self.high else None


PARAMS: dict[str, Param] = {
    "q": Param("text", max_chars=MAX_QUERY_CHARS),  # the words searched for
    "literal": Param("choice", choices=TOGGLE),  # the words searched as written: no place, date or camera read
    "text": Param("choice", choices=TOGGLE),  # the words also matched against file and folder names
    "as_written": Param("text", max_chars=MAX_QUERY_CHARS),  # words understood, given back to CLIP (by line)
    "also": Param("text", max_chars=MAX_QUERY_CHARS),  # words added to a photo
    "like": Param("text", max_chars=MAX_NAME_CHARS),  # "More like this": a photo's key
    "folder": Param("text", max_chars=MAX_NAME_CHARS),
    "camera": Param("text", max_chars=MAX_NAME_CHARS),
    "place": Param("text", max_chars=MAX_NAME_CHARS),  # a city, region or country
    "near": Param("position", max_chars=64),  # LAT,LON
    "within": Param("number", 0.1, MAX_WITHIN_KM),  # km, with near
    "after": Param("day"),
    "before": Param("day"),
    "order": Param("choice", choices=ORDERS),
    "k": Param("whole", 1, MAX_RESULTS),
    "columns": Param("whole", 1, MAX_COLUMNS),
    "pages": Param("whole", 1, MAX_SHOWN),  # of "Show more"
    "variety": Param("number", 0.0, 1.0),
    "cut": Param("choice", choices=CUT_MODES),
    "min_similarity": Param("number", 0.0, 1.0),
    "below_best": Param("number", 0.0, MAX_BELOW_BEST),
    "fold": Param("choice", choices=TOGGLE),
    "duplicate_similarity": Param("number", 0.0, 1.0),  # the duplicates view's (its slider has its own floor)
    "view": Param("choice", choices=VIEWS),  # links from before the views had paths: ?view=duplicates
}
# The names links used before one name per idea (docs/development.md): still read, written anew.
OLD_NAMES = {
    "cols": "columns",
    "min": "min_similarity",
    "below": "below_best",
    "dedup": "fold",
    "dup": "duplicate_similarity",
}


def held_link(params: Mapping[str, str]) -> dict[str, str]:
    """A link's parameters held to PARAMS: known names only (old names under their new ones), each value
    within its bounds."""
    held: dict[str, str] = {}
    for name, value in params.items():
        name = OLD_NAMES.get(name, name)
        param = PARAMS.get(name)
        if param is not None and (kept := param.held(value)) is not None:
            held.setdefault(name, kept)
    return held
