"""The similarity of every candidate of a search by rank, as a small SVG: where the scores drop, and the cut.

Drawn here rather than by a charting library: the page shows it on every search, and a chart library would
bring a dataframe library into the page's process and a chart runtime into every browser for one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

SHOWN_COLOUR = "#1f77b4"
HIDDEN_COLOUR = "#bbbbbb"
CUT_COLOUR = "#d62728"


def score_chart_svg(scores: Sequence[float], threshold: float | None, width: int = 640, height: int = 120) -> str:
    """An SVG line of `scores` (best first) from left to right, points under `threshold` grey, and the
    threshold as a dashed red line; axis labels at the best and worst score. Empty for no scores."""
    if not scores:
        return ""
    margin_left, margin_right, margin_y = 44, 8, 10
    low = min(min(scores), threshold if threshold is not None else min(scores))
    high = max(max(scores), threshold if threshold is not None else max(scores))
    span = (high - low) or 1.0
    inner_width = width - margin_left - margin_right
    inner_height = height - 2 * margin_y

    def x(rank: int) -> float:
        return margin_left + (inner_width * rank / max(len(scores) - 1, 1))

    def y(score: float) -> float:
        return margin_y + inner_height * (high - score) / span

    points = " ".join(f"{x(rank):.1f},{y(score):.1f}" for rank, score in enumerate(scores))
    dots = "".join(
        f'<circle cx="{x(rank):.1f}" cy="{y(score):.1f}" r="2" '
        f'fill="{HIDDEN_COLOUR if threshold is not None and score < threshold else SHOWN_COLOUR}"/>'
        for rank, score in enumerate(scores)
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(_description(scores, threshold))}">',
        f'<polyline points="{points}" fill="none" stroke="{SHOWN_COLOUR}" stroke-width="1"/>',
        dots,
        f'<text x="{margin_left - 4}" y="{y(high) + 4:.1f}" font-size="10" text-anchor="end">{high:.3f}</text>',
        f'<text x="{margin_left - 4}" y="{y(low) + 4:.1f}" font-size="10" text-anchor="end">{low:.3f}</text>',
    ]
    if threshold is not None:
        parts.append(
            f'<line class="cut" x1="{margin_left}" x2="{width - margin_right}" y1="{y(threshold):.1f}" '
            f'y2="{y(threshold):.1f}" stroke="{CUT_COLOUR}" stroke-dasharray="4 2" data-cut="{threshold:.6f}"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _description(scores: Sequence[float], threshold: float | None) -> str:
    cut = f", cut at {threshold:.3f}" if threshold is not None else ""
    return f"similarity of {len(scores)} candidates from {scores[0]:.3f} to {scores[-1]:.3f}{cut}"
