"""What the search page offers: example prompts, default labels, limits, and the score cut."""

from __future__ import annotations

from collections.abc import Iterable

from clipsearch.store import Hit

EXAMPLE_PROMPTS = ("cat", "dog on chair", "man jumping", "snowy streets", "woolen hat", "santa claus")
DEFAULT_LABELS = (
    "cat", "dog", "bird", "fish", "horse", "wild animal", "person", "crowd", "child", "food", "drink",
    "car", "boat", "airplane", "building", "monument", "church", "bridge", "city street", "mountain",
    "beach", "sea", "forest", "desert", "snow", "sky", "night", "flower", "tool", "musical instrument",
    "sport", "furniture", "electronics", "planet", "text or document", "painting",
)  # fmt: skip
DEFAULT_RESULTS = 12
MAX_RESULTS = 100
DEFAULT_COLUMNS = 4
MAX_COLUMNS = 8


def above_threshold(hits: Iterable[Hit], min_score: float) -> list[Hit]:
    """Hits at or above min_score; 0 keeps them all (CLIP similarities can be negative)."""
    return [hit for hit in hits if hit.score >= min_score] if min_score > 0 else list(hits)
