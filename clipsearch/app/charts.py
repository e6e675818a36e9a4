"""The page's charts: the timeline of a search's candidates, the map of its results, and the library's bars
and map, as Vega-Lite specifications for st.vega_lite_chart (selections included).

Altair builds and checks each kind of chart once, with placeholder data (_template); each chart drawn is
that specification with its own rows put inline in its layers. Two reasons: st.altair_chart turns a chart's
top-level data into an Arrow table, which brings pandas and pyarrow into the page's process, while data
inline in a layer stays JSON; and building a layered, projected chart with Altair costs a search more than
everything else it draws. The rows are few (months, results, places: a few hundred at most).

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
PICK = "pick"  # a bar chart's selection
Spec = dict[str, Any]


def timeline(months: Sequence[tuple[str, int]]) -> Spec:
    """Photos per month, each a bar from the month's first day to the next month's (in UTC, as PhotoFacts times
    are); dragging across them selects a span (selection SPAN)."""
    values = [{"month": f"{month}-01", "end": _next_month(month), "photos": photos} for month, photos in months]
    return _filled(_template("timeline"), values)


def selected_months(selection: dict[str, Any]) -> tuple[float, float] | None:
    """The span a timeline selection holds, as (first, last) milliseconds since the epoch; None for none."""
    chosen = selection.get(SPAN) or {}
    for bounds in chosen.values():  # one field: the month, however Vega-Lite names it
        if isinstance(bounds, list) and len(bounds) == 2:
            return float(min(bounds)), float(max(bounds))
    return None


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
    chosen = selection.get(PICK) or []
    return str(chosen[0]["value"]) if chosen and "value" in chosen[0] else None


def _filled(template: str, rows: Sequence[dict[str, Any]]) -> Spec:
    """A copy of a template with `rows` as the data of its named layers (the others draw the land)."""
    spec: Spec = json.loads(template)
    for layer in spec["layer"]:
        if "name" in layer:
            layer["data"] = {"values": list(rows)}
    return spec


@functools.cache
def _template(kind: str) -> str:
    """The Vega-Lite specification of a kind of chart, built and checked by Altair, as JSON."""
    placeholder = alt.Data(values=[{}])
    if kind == "timeline":
        x_axis = alt.Axis(format="%b %Y", formatType="utc")
        unit = (
            alt.Chart(placeholder, name="months")
            .mark_bar(color=BAR_COLOUR, stroke="white", strokeWidth=0.5)
            .encode(
                x=alt.X("month:T", title=None, scale=alt.Scale(type="utc"), axis=x_axis),
                x2="end:T",
                y=alt.Y("photos:Q", title="photos", axis=alt.Axis(tickMinStep=1)),
                y2=alt.datum(0),
                tooltip=[
                    alt.Tooltip("month:T", title="month", format="%B %Y", formatType="utc"),
                    alt.Tooltip("photos:Q"),
                ],
            )
            .add_params(alt.selection_interval(name=SPAN, encodings=["x"]))
        )
        chart = alt.layer(unit).properties(height=150)
    elif kind == "bars":
        unit = (
            alt.Chart(placeholder, name="bars")
            .mark_bar(color=BAR_COLOUR, cursor="pointer")
            .encode(
                y=alt.Y("name:N", sort="-x", title=None),
                x=alt.X("photos:Q", title="photos", axis=alt.Axis(tickMinStep=1)),
                tooltip=[alt.Tooltip("name:N"), alt.Tooltip("photos:Q")],
            )
            .add_params(alt.selection_point(name=PICK, fields=["value"]))
        )
        chart = alt.layer(unit).properties(height=alt.Step(22))
    else:
        chart = _map(labelled=kind == "map-labelled", placeholder=placeholder)
    spec: Spec = chart.properties(usermeta=SVG).to_dict()
    spec.pop("data", None)  # each named layer gets its rows in _filled
    return json.dumps(spec)


def _map(labelled: bool, placeholder: alt.Data) -> alt.LayerChart:
    sea = alt.Chart(alt.sphere()).mark_geoshape(fill="#eef3f7", stroke=None, clip=True)
    land = (
        alt.Chart(alt.Data(url=LAND_URL, format=alt.DataFormat(type="topojson", feature="land")))
        .mark_geoshape(fill="#e3e8dc", stroke="#b9c2ad", strokeWidth=0.5, clip=True)
    )  # fmt: skip
    grid = alt.Chart(alt.graticule(step=[5, 5])).mark_geoshape(
        filled=False, stroke="#c8d0d8", strokeWidth=0.3, clip=True
    )
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
    return alt.layer(*layers).project(type="mercator").properties(height=320)


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
