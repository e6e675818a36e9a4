"""Counting a collection: per month, camera, place and folder, and the spots of its map, on plain rows."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from clipsearch.index.schema import Photo
from clipsearch.ingest.facts import day_start
from clipsearch.ingest.places import Place
from clipsearch.search.overview import MAX_BARS, month_of, month_span, overview, per_month, top_folder

KYOTO = Place("Kyoto", "Kyoto", "Japan")
FIJI = Place("Levuka", "Eastern", "Fiji")


def test_months_and_their_spans() -> None:
    assert month_of(day_start("2021-12-31")) == "2021-12" and month_of(day_start("2022-01-01")) == "2022-01"
    assert month_span("2021-11", "2022-02") == (date(2021, 11, 1), date(2022, 2, 28))
    assert month_span("2024-02", "2024-02") == (date(2024, 2, 1), date(2024, 2, 29))
    assert per_month([day_start("2022-03-05"), day_start("2021-01-01"), day_start("2022-03-31")]) == [
        ("2021-01", 1),
        ("2022-03", 2),
    ]


@given(st.lists(st.integers(0, 4_000_000_000), max_size=50))
def test_per_month_counts_every_time_once_in_time_order(times: list[int]) -> None:
    counted = per_month([float(t) for t in times])
    assert sum(n for _, n in counted) == len(times)
    assert [month for month, _ in counted] == sorted({month_of(t) for t in times})


def test_an_overview_counts_what_the_rows_hold() -> None:
    rows = [
        Photo(path="2021/japan/a.jpg", source="file", taken=day_start("2021-04-02"), camera="Apple iPhone 12",
              latitude=35.01, longitude=135.76, city="Kyoto", region="Kyoto", country="Japan"),
        Photo(path="2021/japan/b.jpg", source="file", taken=day_start("2021-04-20"), camera="Apple iPhone 12",
              latitude=35.03, longitude=135.78, city="Kyoto", region="Kyoto", country="Japan"),
        Photo(path="2022/sea.jpg", source="file", taken=day_start("2022-07-01"), camera="Canon EOS R6",
              latitude=0.04, longitude=-30.02),
        Photo(path="top.jpg", source="file"),
        Photo(path="https://example.com/x.jpg", source="url", latitude=-17.68, longitude=178.84, city="Levuka",
              region="Eastern", country="Fiji"),
        Photo(path="2022/fiji.jpg", source="file", latitude=-17.70, longitude=-179.99, city="Levuka",
              region="Eastern", country="Fiji"),
    ]  # fmt: skip
    summary = overview(rows)
    assert (summary.photos, summary.undated, summary.located) == (6, 3, 5)
    assert summary.months == [("2021-04", 2), ("2022-07", 1)]
    assert summary.cameras == [("Apple iPhone 12", 2), ("Canon EOS R6", 1)]
    assert summary.countries == [("Japan", 2), ("Fiji", 2)]
    assert summary.cities == [(KYOTO, 2), (FIJI, 2)]
    assert dict(summary.folders) == {"2021": 2, "2022": 2, "": 1}
    spots = {spot.name: spot for spot in summary.spots}
    assert spots["Kyoto, Japan"].photos == 2 and abs(spots["Kyoto, Japan"].latitude - 35.02) < 1e-9
    assert spots["0.0, -30.0"].place is None  # at sea: a position without a place
    fiji = spots["Levuka, Eastern, Fiji"]
    assert fiji.photos == 2 and abs(fiji.longitude - 179.425) < 1e-6  # across the 180th meridian, not 0
    assert top_folder(rows[4]) is None


def test_an_overview_keeps_the_most_common_bars() -> None:
    rows = [Photo(path=f"{i}.jpg", source="file", camera=f"camera {i % (MAX_BARS + 5)}") for i in range(200)]
    cameras = overview(rows).cameras
    assert len(cameras) == MAX_BARS and cameras[0][1] >= cameras[-1][1]
