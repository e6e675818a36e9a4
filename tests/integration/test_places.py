"""Places from GPS positions (the offline geocoder), the place and radius filters against brute force, and
the upgrade of an index of the previous version: on both backends and a cluster, with photos that carry real
EXIF GPS tags."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from clipsearch.index.filters import SearchFilter
from clipsearch.index.schema import SCHEMA_VERSION, IndexSchema, PhotoRecord
from clipsearch.index.store import PhotoStore
from clipsearch.index.upgrades import upgrade
from clipsearch.ingest.facts import PhotoFacts, read_facts
from clipsearch.ingest.loader import LoadOptions, PhotoLoader
from clipsearch.ingest.places import (
    EARTH_RADIUS_KM,
    Near,
    Place,
    distance_km,
    fold_name,
    parse_position,
    places_at,
)
from clipsearch.search.results import SearchOptions, find, why_nothing
from clipsearch.settings import Settings
from tests.conftest import LOCATIONS
from tests.integration.test_store import MODEL, unit_vectors

BACKENDS = ("redisearch", "valkey-search", "cluster")


# --- pure logic: names, distances, the radius ------------------------------------------------


def test_place_names_fold_accents_and_case() -> None:
    assert fold_name("São Paulo") == fold_name("SAO PAULO ") == "sao paulo"
    assert fold_name("Kyōto") == "kyoto" and fold_name("Zürich") == "zurich" and fold_name("Reykjavík") == "reykjavik"
    assert Place("Kyoto", "Kyoto", "Japan").describe() == "Kyoto, Japan"
    assert Place("Se", "São Paulo", "Brazil").names() == ["Se", "São Paulo", "Brazil"]


def test_distances_on_the_globe() -> None:
    assert distance_km((48.8566, 2.3522), (51.5074, -0.1278)) == pytest.approx(343.5, abs=1.0)  # Paris-London
    assert distance_km((0, 179.9), (0, -179.9)) == pytest.approx(22.2, abs=0.1)  # across the 180th meridian
    assert distance_km((90, 0), (-90, 0)) == pytest.approx(math.pi * EARTH_RADIUS_KM)


def destination(start: tuple[float, float], bearing: float, km: float) -> tuple[float, float]:
    """Where one gets going `km` from `start` on a great circle at `bearing` degrees."""
    lat, lon, angle, theta = math.radians(start[0]), math.radians(start[1]), km / EARTH_RADIUS_KM, math.radians(bearing)
    lat2 = math.asin(math.sin(lat) * math.cos(angle) + math.cos(lat) * math.sin(angle) * math.cos(theta))
    lon2 = lon + math.atan2(
        math.sin(theta) * math.sin(angle) * math.cos(lat), math.cos(angle) - math.sin(lat) * math.sin(lat2)
    )
    return math.degrees(lat2), (math.degrees(lon2) + 540) % 360 - 180


@settings(max_examples=300, deadline=None)
@given(
    st.floats(-89.9, 89.9),
    st.floats(-180, 180),
    st.floats(0.01, 3000),
    st.floats(0, 360),
    st.floats(0, 1),
)
def test_the_box_asked_of_the_index_holds_every_position_of_the_circle(
    latitude: float, longitude: float, km: float, bearing: float, fraction: float
) -> None:
    near = Near(latitude, longitude, km)
    point = destination((latitude, longitude), bearing, km * fraction * 0.999999)
    south, north, west, east = near.box()
    assert south <= point[0] <= north and west <= point[1] <= east
    assert near.holds(*point)
    assert not near.holds(*destination((latitude, longitude), bearing, km * 1.001 + 0.01)) or km * 1.001 > 20_000


def test_positions_and_radii_a_person_writes_are_checked() -> None:
    assert parse_position(" 35.01, 135.77 ") == (35.01, 135.77)
    for bad in ("35.01", "a,b", "91,0", "0,181", "nan,0", "1,2,3", ""):
        with pytest.raises(ValueError, match="position|globe"):
            parse_position(bad)
    for radius in (0, -1, math.inf, math.nan, 30_000):
        with pytest.raises(ValueError, match="radius"):
            Near(0, 0, radius)
    assert not Near(0, 0, 10).holds(None, None)


def test_the_place_and_radius_filters_as_queries() -> None:
    where = SearchFilter(places=("São Paulo",), near=Near(35.0, 135.0, 10))
    query = where.query()
    assert "@places:{sao\\ paulo}" in query
    south, north, west, east = Near(35.0, 135.0, 10).box()
    assert f"@latitude:[{south!r} {north!r}] @longitude:[{west!r} {east!r}]" in query
    assert SearchFilter(places=("  ",)).query() == "*"
    assert Near(0.0, 179.99, 10).box()[2:] == (-180.0, 180.0)  # crosses the 180th meridian: every longitude
    assert Near(89.99, 0.0, 10).box()[2:] == (-180.0, 180.0)  # reaches the pole


def test_the_geocoder_names_known_cities_and_nothing_at_sea() -> None:
    kyoto, lisbon, sea = places_at([(35.0116, 135.7681), (38.7223, -9.1393), (0.0, -30.0)])
    assert kyoto is not None and kyoto.country == "Japan" and "Kyoto" in kyoto.names()
    assert lisbon is not None and lisbon.country == "Portugal" and lisbon.region == "Lisbon"
    assert sea is None  # the nearest populated place is far beyond MAX_PLACE_KM
    assert places_at([]) == []


# --- against a real server ----------------------------------------------------------------


def test_photos_with_gps_tags_are_stored_with_the_geocoders_places(
    located_library: Path, encoder, open_test_index
) -> None:
    store = open_test_index()
    PhotoLoader(store, lambda: encoder, LoadOptions(), show_bar=False).index_folder(located_library)
    rows = {row.path: row for _, row in store.scan(("path", "latitude", "longitude", "city", "region", "country"))}
    assert len(rows) == len(LOCATIONS)
    for where, position in LOCATIONS.items():
        row = rows[f"{where}.jpg"]
        if position is None:
            assert row.position is None and row.place is None
            continue
        assert row.position == pytest.approx(position, abs=1e-5)
        facts = read_facts((located_library / f"{where}.jpg").read_bytes(), 0.0)
        [expected] = places_at([(facts.latitude, facts.longitude)])  # type: ignore[list-item]
        assert row.place == expected
    assert rows["at-sea.jpg"].place is None and rows["at-sea.jpg"].position is not None
    assert rows["lisbon.jpg"].place is not None and rows["lisbon.jpg"].place.country == "Portugal"


def located_records(vectors: np.ndarray) -> tuple[list[PhotoRecord], list[tuple[float, float] | None]]:
    """Photos scattered within 300 km of four cities (one in five without a position), as the loader writes
    them: facts with a position, and the place the geocoder gives it."""
    from clipsearch.ingest.facts import PhotoFacts

    rng = np.random.default_rng(5)
    centres = [(35.0116, 135.7681), (38.7223, -9.1393), (40.7128, -74.0060), (-33.8688, 151.2093)]
    records, positions = [], []
    for i, vector in enumerate(vectors):
        position = None
        if i % 5:
            centre = centres[i % len(centres)]
            position = destination(centre, float(rng.uniform(0, 360)), float(rng.uniform(0, 300)))
        lat, lon = position or (None, None)
        facts = PhotoFacts(1.6e9 + i * 3600.0, "exif", "", "Apple iPhone 12", lat, lon)
        records.append(PhotoRecord(path=f"photo-{i:05d}.jpg", vector=vector, facts=facts))
        positions.append(position)
    return records, positions


def test_place_and_radius_filters_equal_brute_force_over_the_photos_that_pass(client, settings: Settings) -> None:
    vectors = unit_vectors(np.random.default_rng(17), 600, 512)
    records, positions = located_records(vectors)
    places = places_at([position for position in positions if position is not None])
    place_of = iter(places)
    place_by_row = [next(place_of) if position is not None else None for position in positions]
    schema = IndexSchema.from_settings(dataclasses.replace(settings, algorithm="FLAT"), MODEL)
    store = PhotoStore.open(client, schema, create=True)
    store.upsert(records)
    store.wait_indexed()
    countries = sorted({place.country for place in places if place is not None})
    assert {"Japan", "Portugal", "United States", "Australia"} <= set(countries)
    filters: list[tuple[SearchFilter, list[bool]]] = []
    for name in ("japan", "PORTUGAL", "new york", "Nueva York"):
        wanted = fold_name(name)
        passes = [place is not None and wanted in (fold_name(n) for n in place.names()) for place in place_by_row]
        filters.append((SearchFilter(places=(name,)), passes))
    for centre, km in (((35.0116, 135.7681), 100.0), ((38.7223, -9.1393), 40.0), ((-33.8688, 151.2093), 250.0)):
        near = Near(*centre, km)
        filters.append((SearchFilter(near=near), [p is not None and distance_km(centre, p) <= km for p in positions]))
    assert any(passes[i] for _, passes in filters for i in range(len(records)))
    for where, passes in filters:
        subset = [i for i, passed in enumerate(passes) if passed]
        for query in unit_vectors(np.random.default_rng(3), 3, 512):
            results = find(store, query, SearchOptions(k=10, fold=False), where=where)
            expected = [subset[j] for j in np.argsort(-(vectors[subset] @ query), kind="stable")[:10]]
            assert [result.hit.path for result in results.shown] == [records[i].path for i in expected], where


def test_an_index_of_the_previous_version_gains_places_and_keeps_every_vector(
    located_library: Path, encoder, open_test_index, client, downgrade_to_version_2, run_cli, cli_env
) -> None:
    store = open_test_index()
    PhotoLoader(store, lambda: encoder, LoadOptions(), show_bar=False).index_folder(located_library)
    before = {key: client.hget(key, "vector") for key, _ in store.scan(("path",))}
    expected = {row.path: row.place for _, row in store.scan(("path", "city", "region", "country"))}
    downgrade_to_version_2(client, store)
    assert not any(row.place for _, row in store.scan(("city", "region", "country")))
    upgraded = open_test_index()
    assert upgraded.needs_upgrade

    def no_file(path: str, source: str) -> None:
        pytest.fail("the places come from the stored positions: no file is read")

    assert upgrade(upgraded, no_file) == len(LOCATIONS)
    assert upgraded.schema.version == SCHEMA_VERSION
    assert {key: client.hget(key, "vector") for key in before} == before  # byte for byte
    assert {row.path: row.place for _, row in upgraded.scan(("path", "city", "region", "country"))} == expected
    found = json.loads(run_cli(cli_env, "search", "a photo", "--place", "kyoto", "--json", "--no-fold").stdout)
    assert sorted(hit["path"] for hit in found) == ["kyoto-1.jpg", "kyoto-2.jpg"]
    assert all(hit["place"]["country"] == "Japan" and hit["latitude"] for hit in found)
    near = json.loads(run_cli(cli_env, "search", "a photo", "--near", "38.72,-9.14", "--within", "5", "--json").stdout)
    assert [hit["path"] for hit in near] == ["lisbon.jpg"]


def test_a_photo_rewritten_without_its_gps_tags_loses_its_place(
    located_library: Path, encoder, open_test_index
) -> None:
    store = open_test_index()
    PhotoLoader(store, lambda: encoder, LoadOptions(), show_bar=False).index_folder(located_library)
    lisbon = located_library / "lisbon.jpg"
    image = Image.open(lisbon)
    image.save(lisbon, "JPEG", quality=80)  # saved again without any EXIF
    PhotoLoader(store, lambda: encoder, LoadOptions(), show_bar=False).index_folder(located_library)
    rows = {row.path: row for _, row in store.scan(("path", "latitude", "city", "country", "places"))}
    assert (rows["lisbon.jpg"].latitude, rows["lisbon.jpg"].place, rows["lisbon.jpg"].places) == (None, None, None)
    assert rows["kyoto-1.jpg"].place is not None


@pytest.mark.parametrize(
    ("near", "elsewhere"),
    [
        (Near(35.6, 135.2, 80.0), (35.0116, 135.7681)),  # Kyoto: in the box's corner, 83 km away
        (Near(-18.12, -179.9, 150.0), (-18.0, 100.0)),  # across the 180th meridian: the box is a band
    ],
)
def test_a_radius_whose_box_holds_photos_but_whose_circle_holds_none_says_so(
    client, settings: Settings, near: Near, elsewhere: tuple[float, float]
) -> None:
    vectors = unit_vectors(np.random.default_rng(5), 3, 512)
    facts = PhotoFacts(1.6e9, "exif", "", "", *elsewhere)
    store = PhotoStore.open(client, IndexSchema.from_settings(settings, MODEL), create=True)
    store.upsert([PhotoRecord(path=f"p{i}.jpg", vector=vector, facts=facts) for i, vector in enumerate(vectors)])
    store.wait_indexed()
    south, north, west, east = near.box()
    assert south <= elsewhere[0] <= north and west <= elsewhere[1] <= east, "the box holds the photos"
    assert not near.holds(*elsewhere), "the circle does not"
    where = SearchFilter(near=near)
    results = find(store, vectors[0], SearchOptions(k=5), where=where)
    assert results.shown == [] and results.scores, "the index answered with the box's photos"
    assert why_nothing(results, where) == f"No photo {near.describe()}."


def test_the_cli_says_why_a_filtered_search_found_nothing(
    located_library: Path, open_test_index, encoder, run_cli, cli_env
) -> None:
    PhotoLoader(open_test_index(), lambda: encoder, LoadOptions(), show_bar=False).index_folder(located_library)
    for args, said in (
        (["--near", "35.6,135.2", "--within", "80"], "No photo within 80 km of 35.6000, 135.2000."),
        (["--near=-18.12,-179.9", "--within", "150"], "No photo within 150 km of -18.1200, -179.9000."),
        (["--place", "nowhere"], "No photo in nowhere."),
        (["--min-similarity", "0.99"], "No result reaches similarity 0.990"),
    ):
        done = run_cli(cli_env, "search", "city", *args)
        assert done.returncode == 0 and said in done.stdout and not done.stderr, (args, done.stdout, done.stderr)
        assert run_cli(cli_env, "search", "city", "--json", *args).stdout.strip() == "[]"
