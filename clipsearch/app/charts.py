"""The page's charts: the timeline of a search's candidates, the map of its results, and the library's bars
and map, as Vega-Lite specifications for st.vega_lite_chart (selections included).

Each kind of chart is defined with Altair in clipsearch.app.chart_templates, which writes its specification
(placeholder data) to chart_templates.json; each chart drawn is that specification with its own rows put
inline in its layers. So the page's process never imports Altair (its schema and validator take memory,
and checking every chart on every search would take time), and never turns a chart's data
into an Arrow table, as st.altair_chart does with top-level data (that brings pandas and pyarrow). The
rows are few (months, results, places: a few hundred at most).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from clipsearch.library import FIRST_DAY, LAST_DAY, Spot, month_of, month_span

TEMPLATES = Path(__file__).with_name("chart_templates.json")
MIN_SPAN_DEGREES = 1.0  # the least a map shows around its points: a city and its surroundings
SPAN = "span"  # the timeline's selection (named in chart_templates)
PICK = "pick"  # a bar chart's selection
Spec = dict[str, Any]


def timeline(months: Sequence[tuple[str, int]]) -> Spec:
    """Photos per month, each a bar from the month's first day to the next month's (in UTC, as PhotoFacts times
    are); dragging across them selects a span (selection SPAN)."""
    values = [
        {"month": f"{month}-01", "end": _next_month(month), "label": _month_name(month), "photos": photos}
        for month, photos in months
    ]
    return _filled(_template("timeline"), values)


def selected_months(selection: dict[str, Any]) -> tuple[float, float] | None:
    """The span a timeline selection holds, as (first, last) milliseconds since the epoch; None for none."""
    chosen = selection.get(SPAN) or {}
    if not isinstance(chosen, dict):
        return None
    for bounds in chosen.values():  # one field: the month, however Vega-Lite names it
        if isinstance(bounds, list) and len(bounds) == 2 and all(_is_number(bound) for bound in bounds):
            return float(min(bounds)), float(max(bounds))
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def selected_span(selection: dict[str, Any]) -> tuple[date, date] | None:
    """The months a timeline selection spans, as a date filter: the first day of the first month and the last
    day of the last (a span ending on a month's first instant ends with the month before), held to the days a
    filter takes; None for none (a selection is what a browser sent: any number)."""
    span = selected_months(selection)
    if span is None:
        return None
    first, last = (max(_FIRST_MS, min(ms, _AFTER_LAST_MS)) for ms in span)
    if not first < last:
        return None
    first_month = month_of(first / 1000)
    return month_span(first_month, max(first_month, month_of((last - 1) / 1000)))  # YYYY-MM: ordered as text


def world_map(points: Sequence[dict[str, Any]], labelled: bool) -> Spec:
    """Points (each a dict with latitude, longitude, name, place, and `label` when `labelled`) on the land,
    fitted to them; hovering a point names it."""
    spec = _filled(_template("map-labelled" if labelled else "map"), points)
    spec["projection"]["fit"] = _extent([(point["latitude"], point["longitude"]) for point in points])
    return spec


def spots_map(spots: Sequence[Spot]) -> Spec:
    """The library's places, each a point."""
    points = [
        {"latitude": spot.latitude, "longitude": spot.longitude, "name": f"{spot.photos} photos", "place": spot.name}
        for spot in spots
    ]
    return world_map(points, labelled=False)


def bars(counts: Sequence[tuple[str, int]], what: str) -> Spec:
    """Photos per camera, country, city or folder (`what`), most first; clicking a bar selects it (selection
    PICK)."""
    values = [{"name": name or "(top)", "photos": photos, "value": name} for name, photos in counts]
    spec = _filled(_template("bars"), values)
    spec["layer"][0]["encoding"]["tooltip"][0]["title"] = what
    return spec


def picked(selection: dict[str, Any]) -> str | None:
    """The value of the bar a `bars` selection holds; None for none."""
    chosen = selection.get(PICK)
    if isinstance(chosen, list) and chosen and isinstance(chosen[0], dict) and "value" in chosen[0]:
        return str(chosen[0]["value"])
    return None


def _filled(template: str, rows: Sequence[dict[str, Any]]) -> Spec:
    """A copy of a template with `rows` as the data of its named layers (the others draw the land)."""
    spec: Spec = json.loads(template)
    for layer in spec["layer"]:
        if "name" in layer:
            layer["data"] = {"values": list(rows)}
    return spec


@functools.cache
def _template(kind: str) -> str:
    """The specification of a kind of chart, as JSON (read once from TEMPLATES)."""
    return json.dumps(json.loads(TEMPLATES.read_text(encoding="utf-8"))[kind])


_FIRST_MS = datetime(FIRST_DAY.year, 1, 1, tzinfo=UTC).timestamp() * 1000
_AFTER_LAST_MS = datetime(LAST_DAY.year + 1, 1, 1, tzinfo=UTC).timestamp() * 1000


def _month_name(month: str) -> str:
    """ "2022-05" as "May 2022": the tooltip's words (Vega formats a date field given as text as NaN)."""
    return datetime.strptime(month, "%Y-%m").strftime("%B %Y")


def _next_month(month: str) -> str:
    year, number = map(int, month.split("-"))
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}-01"


def _extent(positions: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """A GeoJSON outline the projection fits: the points' box, at least MIN_SPAN_DEGREES wide and high (one
    point alone is not a map)."""
    south, north = min(lat for lat, _ in positions), max(lat for lat, _ in positions)
    west, east = min(lon for _, lon in positions), max(lon for _, lon in positions)
    pad_lat = max(MIN_SPAN_DEGREES - (north - south), 0) / 2 + (north - south) * 0.1
    pad_lon = max(MIN_SPAN_DEGREES - (east - west), 0) / 2 + (east - west) * 0.1
    south, north = max(south - pad_lat, -80.0), min(north + pad_lat, 80.0)
    west, east = max(west - pad_lon, -180.0), min(east + pad_lon, 180.0)
    corners = [[west, south], [east, south], [east, north], [west, north]]
    return {"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": corners}, "properties": {}}
