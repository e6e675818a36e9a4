"""The page's chart specifications, on plain values: what the browser tests then find drawn."""

from __future__ import annotations

from datetime import date
from typing import Any

from clipsearch.app import chart_templates, charts


def test_the_timeline_has_a_bar_per_month_and_reads_its_span() -> None:
    spec = charts.timeline([("2021-12", 3), ("2022-02", 1)])
    assert "data" not in spec, "data at the top would become an Arrow table (pandas, pyarrow) in the page"
    values = spec["layer"][0]["data"]["values"]
    assert values == [
        {"month": "2021-12-01", "end": "2022-01-01", "label": "December 2021", "photos": 3},
        {"month": "2022-02-01", "end": "2022-03-01", "label": "February 2022", "photos": 1},
    ]
    assert spec["params"][0]["name"] == charts.SPAN and spec["usermeta"] == chart_templates.SVG
    assert charts.selected_months({charts.SPAN: {"month": [20.0, 10.0]}}) == (10.0, 20.0)
    may, july = 1651363200000.0, 1656633600000.0  # 2022-05-01 and 2022-07-01, 00:00 UTC
    assert charts.selected_span({charts.SPAN: {"month": [may + 5, july]}}) == (date(2022, 5, 1), date(2022, 6, 30))
    assert charts.selected_span({}) is None
    assert charts.selected_months({}) is None and charts.selected_months({charts.SPAN: {}}) is None


def test_a_map_holds_its_points_and_fits_them_with_a_margin() -> None:
    points = [
        {"latitude": 35.0, "longitude": 135.7, "label": "1", "name": "#1 a.jpg", "place": "Kyoto, Japan"},
        {"latitude": 35.1, "longitude": 135.8, "label": "2", "name": "#2 b.jpg", "place": "Kyoto, Japan"},
    ]
    spec = charts.world_map(points, labelled=True)
    assert "data" not in spec
    layers = {layer.get("name"): layer for layer in spec["layer"]}
    assert layers["points"]["data"]["values"] == points and layers["labels"]["data"]["values"] == points
    assert spec["layer"][1]["data"]["url"] == chart_templates.LAND_URL
    corners = spec["projection"]["fit"]["geometry"]["coordinates"]
    west, south = corners[0]
    east, north = corners[2]
    assert east - west >= charts.MIN_SPAN_DEGREES and north - south >= charts.MIN_SPAN_DEGREES
    assert west < 135.7 and east > 135.8 and south < 35.0 and north > 35.1
    assert "labels" not in {layer.get("name") for layer in charts.world_map(points, labelled=False)["layer"]}
    assert charts.world_map(points[:1], labelled=True)["layer"][3]["data"]["values"] == points[:1]  # not shared


def test_bars_name_the_value_a_click_picks() -> None:
    spec = charts.bars([("2021", 3), ("", 1)], "folder")
    assert "data" not in spec and spec["params"][0]["name"] == charts.PICK
    assert [row["name"] for row in spec["layer"][0]["data"]["values"]] == ["2021", "(top)"]
    assert spec["layer"][0]["encoding"]["tooltip"][0]["title"] == "folder"
    assert charts.bars([("x", 1)], "camera")["layer"][0]["encoding"]["tooltip"][0]["title"] == "camera"
    assert charts.picked({"pick": [{"value": "Apple iPhone 12"}]}) == "Apple iPhone 12"
    assert charts.picked({"pick": []}) is None and charts.picked({}) is None


def test_the_page_reads_the_specifications_altair_builds() -> None:
    """chart_templates.json is what `python -m clipsearch.app.chart_templates` writes today (with the altair that
    requirements-dev.txt pins)."""
    assert charts.TEMPLATES.read_text(encoding="utf-8") == chart_templates.written()


def encoded_fields(layer: dict[str, Any]) -> set[str]:
    """Every field a layer's encoding reads from its rows, tooltips included."""
    channels = [*layer.get("encoding", {}).values()]
    found = set()
    for channel in channels:
        for each in channel if isinstance(channel, list) else [channel]:
            if isinstance(each, dict) and "field" in each:
                found.add(each["field"])
    return found


def test_each_chart_draws_its_marks_from_the_fields_its_rows_carry() -> None:
    """A wrong chart fails here, not only a file left unregenerated: each named layer's mark, and every field its
    encoding and its selection read, against the rows clipsearch.app.charts fills it with."""
    point = {"latitude": 35.0, "longitude": 135.7, "label": "1", "name": "#1 a.jpg", "place": "Kyoto, Japan"}
    specs = {
        "timeline": charts.timeline([("2021-12", 3)]),
        "bars": charts.bars([("Apple iPhone 12", 3)], "camera"),
        "map": charts.world_map([point], labelled=False),
        "map-labelled": charts.world_map([point], labelled=True),
    }
    marks = {"months": "bar", "bars": "bar", "points": "circle", "labels": "text"}
    for kind, spec in specs.items():
        named = [layer for layer in spec["layer"] if layer.get("name")]
        assert named, kind
        for layer in named:
            rows = layer["data"]["values"]
            assert layer["mark"]["type"] == marks[layer["name"]], (kind, layer["name"])
            assert encoded_fields(layer) <= set(rows[0]), (kind, layer["name"], encoded_fields(layer) - set(rows[0]))
        for param in spec.get("params", []):
            selected = param["select"]
            assert set(selected.get("fields", [])) <= set(named[0]["data"]["values"][0]), (kind, param)
            assert set(selected.get("encodings", [])) <= set(named[0]["encoding"]), (kind, param)
    timeline = specs["timeline"]["layer"][0]["encoding"]
    assert (timeline["x"]["type"], timeline["x"]["field"], timeline["x2"]["field"]) == ("temporal", "month", "end")
    assert specs["bars"]["layer"][0]["encoding"]["y"]["sort"] == "-x", "most photos first"
    assert [layer["mark"]["type"] for layer in specs["map"]["layer"][:3]] == ["geoshape"] * 3, "sea, land, graticule"
