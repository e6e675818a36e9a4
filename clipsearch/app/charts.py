"""The page's charts as Altair (Vega-Lite) specifications: the timeline of a search's candidates, the map of
its results, and the library's bars and map. Their data goes inline: a few hundred rows at most (months,
results, places), so no dataframe is built.

The maps draw the land (Natural Earth's 1:110m outline, served by the page itself from static/) under a
graticule, so they need no tile server: offline, or where the outline cannot load, the points stand on a
plain background. Charts render as SVG, whose marks a browser test can count.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

import altair as alt

from clipsearch.overview import Spot

SVG = {"embedOptions": {"renderer": "svg"}}
LAND_URL = "app/static/land-110m.json"  # Streamlit's static serving (server.enableStaticServing)
POINT_COLOUR = "#d62728"
BAR_COLOUR = "#1f77b4"
MIN_SPAN_DEGREES = 1.0  # the least a map shows around its points: a city and its surroundings
SPAN = "span"  # the timeline's selection


def timeline(months: Sequence[tuple[str, int]], height: int = 150) -> alt.Chart:
    """Photos per month, each a bar from the month's first day to the next month's (in UTC, as PhotoFacts times
    are); dragging across them selects a span (selection SPAN)."""
    values = [{"month": f"{month}-01", "end": _next_month(month), "photos": photos} for month, photos in months]
    return (
        alt.Chart(alt.Data(values=values), name="months")
        .mark_bar(color=BAR_COLOUR, stroke="white", strokeWidth=0.5)
        .encode(
            x=alt.X(
                "month:T", title=None, scale=alt.Scale(type="utc"), axis=alt.Axis(format="%b %Y", formatType="utc")
            ),
            x2="end:T",
            y=alt.Y("photos:Q", title="photos", axis=alt.Axis(tickMinStep=1)),
            y2=alt.datum(0),
            tooltip=[alt.Tooltip("month:T", title="month", format="%B %Y", formatType="utc"), alt.Tooltip("photos:Q")],
        )
        .add_params(alt.selection_interval(name=SPAN, encodings=["x"]))
        .properties(height=height, usermeta=SVG)
    )


def _next_month(month: str) -> str:
    year, number = map(int, month.split("-"))
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}-01"


def selected_months(selection: dict[str, Any]) -> tuple[float, float] | None:
    """The span a timeline selection holds, as (first, last) milliseconds since the epoch; None for none."""
    chosen = selection.get(SPAN) or {}
    for bounds in chosen.values():  # one field: the month, however Vega-Lite names it
        if isinstance(bounds, list) and len(bounds) == 2:
            return float(min(bounds)), float(max(bounds))
    return None


def world_map(points: Sequence[dict[str, Any]], labelled: bool, height: int = 320) -> dict[str, Any]:
    """Points (each a dict with latitude, longitude, name, place, and `label` when `labelled`) on the land,
    fitted to them; hovering a point names it. A Vega-Lite specification for st.vega_lite_chart: Altair builds
    and checks the chart once (_map_template), and each map only puts its points and extent in, since building
    a layered, projected chart costs a search more than everything else it draws."""
    spec: dict[str, Any] = json.loads(_map_template(labelled, height))
    for layer in spec["layer"]:
        if layer.get("name") in ("points", "labels"):
            layer["data"] = {"values": list(points)}
    spec["projection"]["fit"] = _extent([(point["latitude"], point["longitude"]) for point in points])
    return spec


@functools.cache
def _map_template(labelled: bool, height: int) -> str:
    sea = alt.Chart(alt.sphere()).mark_geoshape(fill="#eef3f7", stroke=None, clip=True)
    land = (
        alt.Chart(alt.Data(url=LAND_URL, format=alt.DataFormat(type="topojson", feature="land")))
        .mark_geoshape(fill="#e3e8dc", stroke="#b9c2ad", strokeWidth=0.5, clip=True)
    )  # fmt: skip
    grid = alt.Chart(alt.graticule(step=[5, 5])).mark_geoshape(
        filled=False, stroke="#c8d0d8", strokeWidth=0.3, clip=True
    )
    placeholder = alt.Data(values=[{"latitude": 0.0, "longitude": 0.0, "label": "", "name": "", "place": ""}])
    tooltip = [alt.Tooltip("name:N", title="photo"), alt.Tooltip("place:N", title="place")]
    dots = (
        alt.Chart(placeholder, name="points")
        .mark_circle(color=POINT_COLOUR, opacity=0.85, stroke="white", strokeWidth=1, clip=True)
        .encode(longitude="longitude:Q", latitude="latitude:Q", tooltip=tooltip, size=alt.value(260))
    )
    layers = [sea, land, grid, dots]
    if labelled:
        layers.append(
            alt.Chart(placeholder, name="labels")
            .mark_text(color="white", fontSize=10, fontWeight="bold", clip=True)
            .encode(longitude="longitude:Q", latitude="latitude:Q", text="label:N", tooltip=tooltip)
        )
    chart = alt.layer(*layers).project(type="mercator").properties(height=height, usermeta=SVG)
    return json.dumps(chart.to_dict())


def spots_map(spots: Sequence[Spot], height: int = 360) -> dict[str, Any]:
    """The library's places, each a point sized by its photos."""
    points = [
        {"latitude": spot.latitude, "longitude": spot.longitude, "name": f"{spot.photos} photos", "place": spot.name}
        for spot in spots
    ]
    return world_map(points, labelled=False, height=height)


def bars(counts: Sequence[tuple[str, int]], what: str) -> alt.Chart:
    """Photos per camera, country, city or folder, most first; clicking a bar selects it (selection "pick")."""
    values = [{what: name or "(top)", "photos": photos, "value": name} for name, photos in counts]
    return (
        alt.Chart(alt.Data(values=values), name="bars")
        .mark_bar(color=BAR_COLOUR, cursor="pointer")
        .encode(
            y=alt.Y(f"{what}:N", sort="-x", title=None),
            x=alt.X("photos:Q", title="photos", axis=alt.Axis(tickMinStep=1)),
            tooltip=[alt.Tooltip(f"{what}:N"), alt.Tooltip("photos:Q")],
        )
        .add_params(alt.selection_point(name="pick", fields=["value"]))
        .properties(height=alt.Step(22), usermeta=SVG)
    )


def picked(selection: dict[str, Any]) -> str | None:
    """The value of the bar a `bars` selection holds; None for none."""
    chosen = selection.get("pick") or []
    return str(chosen[0]["value"]) if chosen and "value" in chosen[0] else None


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
