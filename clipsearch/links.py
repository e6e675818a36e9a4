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

from clipsearch.photos import day_start
from clipsearch.query import MAX_QUERY_CHARS
from clipsearch.store import ORDERS

MAX_RESULTS = 100  # the Results slider
MAX_COLUMNS = 8  # the Gallery columns slider
MAX_SHOWN = 1000  # "Show more" stops here
MAX_BELOW_BEST = 0.3  # the "At most this far below the best" slider
MAX_NAME_CHARS = 256  # a folder, a camera, a photo's key
CUT_MODES = ("absolute", "relative")  # a minimum similarity, or a distance from the best result's
VIEWS = ("search", "duplicates")
TOGGLE = ("true", "false")  # how Streamlit writes a bound toggle
MAX_NUMBER_CHARS = 32  # no number the page takes is longer


@dataclass(frozen=True)
class Param:
    """One URL parameter: text (cut to `max_chars`), a whole number or a number in [low, high], one of
    `choices`, or a day as YYYY-MM-DD."""

    kind: Literal["text", "whole", "number", "choice", "day"]
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
        if self.kind == "day":
            try:
                day_start(value)
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
    "also": Param("text", max_chars=MAX_QUERY_CHARS),  # words added to a photo
    "like": Param("text", max_chars=MAX_NAME_CHARS),  # "More like this": a photo's key
    "folder": Param("text", max_chars=MAX_NAME_CHARS),
    "camera": Param("text", max_chars=MAX_NAME_CHARS),
    "after": Param("day"),
    "before": Param("day"),
    "order": Param("choice", choices=ORDERS),
    "k": Param("whole", 1, MAX_RESULTS),
    "cols": Param("whole", 1, MAX_COLUMNS),
    "pages": Param("whole", 1, MAX_SHOWN),  # of "Show more"
    "variety": Param("number", 0.0, 1.0),
    "cut": Param("choice", choices=CUT_MODES),
    "min": Param("number", 0.0, 1.0),
    "below": Param("number", 0.0, MAX_BELOW_BEST),
    "dedup": Param("choice", choices=TOGGLE),
    "view": Param("choice", choices=VIEWS),
    "dup": Param("number", 0.0, 1.0),  # the duplicates view's threshold (the slider has its own floor)
}


def held_link(params: Mapping[str, str]) -> dict[str, str]:
    """A link's parameters held to PARAMS: known names only, each value within its bounds."""
    held = {}
    for name, value in params.items():
        param = PARAMS.get(name)
        if param is not None and (kept := param.held(value)) is not None:
            held[name] = kept
    return held
