"""The page's kinds of chart, defined with Altair: `python -m clipsearch.app.chart_templates` writes their
Vega-Lite specifications (with placeholder data) to chart_templates.json, which clipsearch.app.charts fills
with each chart's rows. The page never imports this module; tests/unit/test_charts.py checks that the file is
what this module builds.

Charts render as SVG (their marks are in the page, where a browser test counts them). The maps draw the
land (Natural Earth's 1:110m outline, served by the page itself from static/) under a graticule, so they
need no tile server: offline, or where the outline cannot load, the points stand on a plain background.
"""

from __future__ import annotations

import json
from typing import Any

import altair as alt

from clipsearch.app.charts import PICK, SPAN, TEMPLATES

SVG = {"embedOptions": {"renderer": "svg"}}
LAND_URL = "app/static/land-110m.json"  # Streamlit's static serving (server.enableStaticServing)
POINT_COLOUR = "#d62728"
BAR_COLOUR = "#1f77b4"
KINDS = ("timeline", "bars", "map", "map-labelled")


def build(kind: str) -> dict[str, Any]:
    """The specification of a kind of chart, checked by Altair; its named layers take the rows."""
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
                    alt.Tooltip("label:N", title="month"),
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
    elif kind in ("map", "map-labelled"):
        chart = world_map(labelled=kind == "map-labelled", placeholder=placeholder)
    else:
        raise ValueError(f"no chart of kind {kind!r}: {', '.join(KINDS)}")
    spec: dict[str, Any] = chart.properties(usermeta=SVG).to_dict()
    spec.pop("data", None)  # each named layer gets its rows (clipsearch.app.charts)
    return spec


def world_map(labelled: bool, placeholder: alt.Data) -> alt.LayerChart:
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


def written() -> str:
    """What chart_templates.json holds: every kind's specification."""
    return json.dumps({kind: build(kind) for kind in KINDS}, indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    TEMPLATES.write_text(written(), encoding="utf-8")
    print(f"wrote {TEMPLATES}")
