"""A search box that understands where, when and with what: the grammar on plain values (fast), and searches
whose words name places, dates and cameras on both backends and a cluster, against brute force over the photos
that pass the filters the words should give."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from clipsearch import library as library_module
from clipsearch.index.filters import FilterConflict, SearchFilter
from clipsearch.index.schema import PhotoRecord
from clipsearch.index.store import PhotoStore
from clipsearch.ingest.facts import DAY, PhotoFacts, day_start
from clipsearch.ingest.places import fold_name, places_at
from clipsearch.library import Library
from clipsearch.search.query import MAX_QUERY_CHARS
from clipsearch.search.results import SearchOptions
from clipsearch.search.understanding import MAX_NAME_WORDS, Span, Vocabulary, understand
from clipsearch.sharing import Shared
from tests.conftest import gallery_tiles

BACKENDS = ("redisearch", "valkey-search", "cluster")
APP = str(Path(__file__).resolve().parents[2] / "streamlit_app.py")
TODAY = date(2026, 12, 7)  # a Monday
CITIES = {  # where the test photos were taken: each a city, with its region and country (as GeoNames says)
    "kyoto": (35.0116, 135.7681),  # Kyoto, Kyoto, Japan
    "istanbul": (41.0082, 28.9784),  # Eminönü, Istanbul, Turkey
    "ankara": (39.9334, 32.8597),  # Ankara, Ankara, Turkey
    "nice": (43.7102, 7.2620),  # Nice, Provence-Alpes-Côte d'Azur, France
    "orange": (44.1381, 4.8075),  # Orange, Provence-Alpes-Côte d'Azur, France
    "reading": (51.4543, -0.9781),  # Reading, England, United Kingdom
    "lisbon": (38.7223, -9.1393),  # Intendente, Lisbon, Portugal
    "new-york": (40.7128, -74.0060),  # New York City, New York, United States
    "sao-paulo": (-23.5505, -46.6333),  # Se, São Paulo, Brazil
}
CAMERAS = ("Google Pixel 7", "Google Pixel 6", "Apple iPhone 12", "Canon EOS 5D Mark IV")
PLACE_NAMES = sorted({name for place in places_at(list(CITIES.values())) if place for name in place.names()})
VOCABULARY = Vocabulary.of(PLACE_NAMES, CAMERAS, (2019, 2026))


def years(first: int, last: int) -> Span:
    return Span(date(first, 1, 1), date(last, 12, 31))


# Each phrasing, the words left for CLIP, and what it should understand: (kind, words as typed, value).
PHRASINGS: list[tuple[str, str, list[tuple[str, str, object]]]] = [
    ("temple in Kyoto 2021", "temple", [("place", "in Kyoto", "Kyoto"), ("date", "2021", years(2021, 2021))]),
    ("snow in Turkey", "snow", [("place", "in Turkey", "Turkey")]),
    ("dinner in Reading", "dinner", [("place", "in Reading", "Reading")]),
    ("sunset at Nice", "sunset", [("place", "at Nice", "Nice")]),
    ("streets of sao paulo", "streets of", [("place", "sao paulo", "São Paulo")]),
    ("Kyoto, Japan", "", [("place", "Kyoto", "Kyoto"), ("place", "Japan", "Japan")]),
    ("bridge in new york city", "bridge", [("place", "in new york city", "New York City")]),
    ("a tram in LISBON", "a tram", [("place", "in LISBON", "Lisbon")]),
    ("castle in Provence-Alpes-Côte d'Azur", "castle", [("place", "in Provence-Alpes-Côte d'Azur", None)]),
    ("market in March 2022", "market", [("date", "in March 2022", Span(date(2022, 3, 1), date(2022, 3, 31)))]),
    ("2022-03 rain", "rain", [("date", "2022-03", Span(date(2022, 3, 1), date(2022, 3, 31)))]),
    ("15 March 2022", "", [("date", "15 March 2022", Span(date(2022, 3, 15), date(2022, 3, 15)))]),
    ("beach between 2019 and 2021", "beach", [("date", "between 2019 and 2021", years(2019, 2021))]),
    ("cats 2020 to 2022", "cats", [("date", "2020 to 2022", years(2020, 2022))]),
    ("boats before 2020", "boats", [("date", "before 2020", Span(None, date(2019, 12, 31)))]),
    ("boats after May 2020", "boats", [("date", "after May 2020", Span(date(2020, 6, 1), None))]),
    ("since 2021", "", [("date", "since 2021", Span(date(2021, 1, 1), None))]),
    ("beach last summer", "beach", [("date", "last summer", Span(date(2026, 6, 1), date(2026, 8, 31)))]),
    ("party this year", "party", [("date", "this year", years(2026, 2026))]),
    ("party last year", "party", [("date", "last year", years(2025, 2025))]),
    ("snow winter 2020", "snow", [("date", "winter 2020", Span(date(2020, 12, 1), date(2021, 2, 28)))]),
    ("dog taken with my Pixel", "dog", [("camera", "taken with my Pixel", ("Google Pixel 6", "Google Pixel 7"))]),
    ("shot on iPhone", "", [("camera", "shot on iPhone", ("Apple iPhone 12",))]),
    ("Pixel 7 sunset", "sunset", [("camera", "Pixel 7", ("Google Pixel 7",))]),
    ("snow in Turkey last winter", "snow", [("place", "in Turkey", "Turkey"), ("date", "last winter", None)]),
    # Sentences whose words must stay CLIP's, though the index holds Turkey, Nice, Reading and Orange:
    ("a turkey in the snow", "a turkey in the snow", []),
    ("nice weather", "nice weather", []),
    ("a reading lamp", "a reading lamp", []),
    ("orange in 2021", "orange", [("date", "in 2021", years(2021, 2021))]),
    ("a cat in orange", "a cat in orange", []),
    ("pixel art", "pixel art", []),
    ("1984 poster", "1984 poster", []),  # no photo of 1984 here: a year the index lacks is words
    ("a nice turkey reading", "a nice turkey reading", []),
    ("may flowers", "may flowers", []),
    ("a canon on a hill", "a canon on a hill", []),
    ("temple - Kyoto", "temple - Kyoto", []),  # query arithmetic: a term taken away is CLIP's
    ("2:Kyoto + beach 2021", "2:Kyoto + beach", [("date", "2021", years(2021, 2021))]),
    ('"Kyoto" sign in Japan', '"Kyoto" sign', [("place", "in Japan", "Japan")]),  # quoted: the word itself
]


@pytest.mark.parametrize(("text", "left", "expected"), PHRASINGS, ids=[text for text, _, _ in PHRASINGS])
def test_each_phrasing_is_understood_as_expected(text: str, left: str, expected: list) -> None:
    understood = understand(text, VOCABULARY, TODAY)
    assert understood.words == left
    got = [(part.kind, part.words, part.place or part.span or part.cameras) for part in understood.parts]
    assert [(kind, words) for kind, words, _ in got] == [(kind, words) for kind, words, _ in expected]
    for (_, _, value), (_, _, wanted) in zip(got, expected, strict=True):
        assert wanted is None or value == wanted


def test_seasons_and_relative_days_count_from_today() -> None:
    def span(text: str, today: date) -> Span | None:
        [part] = understand(text, VOCABULARY, today).parts
        return part.span

    assert span("last winter", date(2027, 1, 10)) == Span(date(2025, 12, 1), date(2026, 2, 28))  # one not ended
    assert span("last winter", date(2027, 3, 1)) == Span(date(2026, 12, 1), date(2027, 2, 28))
    assert span("this winter", date(2027, 1, 10)) == Span(date(2026, 12, 1), date(2027, 2, 28))
    assert span("last summer", date(2026, 7, 1)) == Span(date(2025, 6, 1), date(2025, 8, 31))
    assert span("this month", TODAY) == Span(date(2026, 12, 1), date(2026, 12, 31))
    assert span("last month", date(2026, 1, 5)) == Span(date(2025, 12, 1), date(2025, 12, 31))
    assert span("last week", TODAY) == Span(date(2026, 11, 30), date(2026, 12, 6))
    assert span("yesterday", date(2024, 3, 1)) == Span(date(2024, 2, 29), date(2024, 2, 29))
    assert span("the 90s", TODAY) == years(1990, 1999) and span("the 20s", TODAY) == years(2020, 2029)


def test_words_that_are_not_dates_stay_words() -> None:
    assert understand("2021 to 2019", VOCABULARY, TODAY).parts[0].span == years(2019, 2021)
    assert understand("February 30 2022", VOCABULARY, TODAY).words == "February 30"  # no such day; 2022 is a year
    for text in ("2022-13", "2022-02-30", "march", "summer", "the 50th", "3000"):
        assert understand(text, VOCABULARY, TODAY).words == text, text


def test_a_chip_removed_gives_its_words_back_to_clip() -> None:
    understood = understand("temple in Kyoto 2021", VOCABULARY, TODAY)
    kept = understood.without(["in Kyoto"])
    assert kept.words == "temple in Kyoto" and [part.words for part in kept.parts] == ["2021"]
    assert kept.filter() == SearchFilter(after=day_start("2021-01-01"), before=day_start("2021-12-31") + DAY)


def test_understood_parts_become_one_filter_and_conflicts_are_said() -> None:
    understood = understand("Kyoto, Japan in 2021 shot on iPhone", VOCABULARY, TODAY)
    where = understood.filter()
    assert where.places == ("Kyoto", "Japan") and where.cameras == ("Apple iPhone 12",)
    assert where.after == day_start("2021-01-01") and where.before == day_start("2022-01-01")
    assert where.narrowed(SearchFilter.of_days("2021-06-01", None, camera="Apple iPhone 12")).after == day_start(
        "2021-06-01"
    )
    with pytest.raises(FilterConflict, match="do not meet"):
        where.narrowed(SearchFilter.of_days("2022-01-01", None))
    with pytest.raises(FilterConflict, match="Apple iPhone 12"):
        where.narrowed(SearchFilter.of_days(None, None, camera="Google Pixel 7"))
    with pytest.raises(FilterConflict):
        understand("2021 2023", VOCABULARY, TODAY).filter()


def test_the_vocabulary_is_what_the_index_holds() -> None:
    assert understand("snow in Brazil", Vocabulary.of(["Kyoto"], [], None), TODAY).words == "snow in Brazil"
    assert understand("2021", Vocabulary.of([], [], None), TODAY).parts == ()  # an undated index: a bare year
    assert understand("in 2021", Vocabulary.of([], [], None), TODAY).words == ""  # said to be a date


PIECES = [*"abc 0129-.,'\u2019\u00c9", "in ", "Kyoto ", "Turkey ", "Pixel ", "2021 ", "may ", "to ", "last ", "2022-03"]
TEXT = st.lists(st.sampled_from(PIECES) | st.text(max_size=3), max_size=60).map("".join)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_any_text_is_understood_in_order_without_overlaps(text: str) -> None:
    understood = understand(text, VOCABULARY, TODAY)
    ends = 0
    for part in understood.parts:
        assert ends <= part.start < part.end and text[part.start : part.end] == part.words
        ends = part.end
        assert part.kind in ("place", "date", "camera") and part.value()
    assert len(understood.words) <= len(text)


class Counted(dict):
    """A vocabulary's names, counting each lookup."""

    lookups = 0

    def __contains__(self, key: object) -> bool:
        Counted.lookups += 1
        return super().__contains__(key)


def test_understanding_costs_a_bounded_number_of_lookups_per_word() -> None:
    """The longest query, against ten thousand place names: each word is looked up at most MAX_NAME_WORDS
    times for places and for cameras (and once more after a place word), whatever the query."""
    vocabulary = Vocabulary.of([f"Place{number} Town" for number in range(10_000)], CAMERAS, (2000, 2026))
    counted = Vocabulary(Counted(vocabulary.places), Counted(vocabulary.cameras), vocabulary.years)
    for text in (("in Place1234 Town 2021 near a " * 40)[:MAX_QUERY_CHARS], "a " * (MAX_QUERY_CHARS // 2)):
        Counted.lookups = 0
        understood = understand(text, counted, TODAY)
        assert Counted.lookups <= 2 * (MAX_NAME_WORDS + 1) * len(re.findall(r"\w+", text))
    assert [part.place for part in understood.parts] == []


@settings(max_examples=100, deadline=None)
@given(TEXT)
def test_the_lookups_are_linear_in_the_words_of_any_text(text: str) -> None:
    counted = Vocabulary(Counted(VOCABULARY.places), Counted(VOCABULARY.cameras), VOCABULARY.years)
    Counted.lookups = 0
    understand(text, counted, TODAY)
    assert Counted.lookups <= 2 * (MAX_NAME_WORDS + 1) * len(re.findall(r"\w+", text))


# --- searches, on the backends ---------------------------------------------------------------------


def unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def travels(settings, encoder):
    """90 photos: ten in each city of CITIES, from the four CAMERAS, taken from 2019 to 2026 (random vectors of
    the test model's width); and the facts each was written with."""
    rng = np.random.default_rng(11)
    vectors = unit(rng.normal(size=(90, encoder.identity.dim)))
    records, facts = [], []
    for i, vector in enumerate(vectors):
        latitude, longitude = list(CITIES.values())[i % len(CITIES)]
        taken = day_start(f"{2019 + i % 8}-{1 + (i * 7) % 12:02d}-{1 + i % 28:02d}") + 3600.0 * (i % 24)
        fact = PhotoFacts(taken, "exif", "", CAMERAS[i // 3 % 4], latitude + 0.001 * (i % 5), longitude)
        records.append(PhotoRecord(path=f"photo-{i:03d}.jpg", vector=vector, name=f"photo-{i:03d}.jpg", facts=fact))
        facts.append(fact)
    flat = dataclasses.replace(settings, algorithm="FLAT")
    library = Library(flat, text_encoder=lambda: encoder)
    store = library.store(create=True)
    store.upsert(records)
    store.wait_indexed()
    places = places_at([(fact.latitude, fact.longitude) for fact in facts])
    return library, vectors, facts, places


# The phrasings searched: the CLIP words left, and the photos that should pass, as a test of each photo's facts
# (a place's names, the camera, the day).
def in_place(name: str):
    return lambda fact, place: fold_name(name) in {fold_name(n) for n in place.names()}


def days(first: str, last: str | None):
    return lambda fact, place: day_start(first) <= fact.taken < (day_start(last) + DAY if last else math.inf)


def both(*tests):
    return lambda fact, place: all(test(fact, place) for test in tests)


SEARCHED = [
    ("temple in Kyoto 2021", "temple", both(in_place("Kyoto"), days("2021-01-01", "2021-12-31"))),
    ("snow in Turkey", "snow", in_place("Turkey")),
    ("a turkey in the snow", "a turkey in the snow", lambda fact, place: True),
    ("nice weather", "nice weather", lambda fact, place: True),
    ("orange in 2021", "orange", days("2021-01-01", "2021-12-31")),
    ("dinner in Reading before 2022", "dinner", both(in_place("Reading"), days("1800-01-01", "2021-12-31"))),
    ("bridge in new york", "bridge", in_place("New York")),
    ("market in Provence-Alpes-Côte d'Azur since 2024", "market", both(in_place("Provence-Alpes-Côte d'Azur"),
                                                                      days("2024-01-01", None))),
    ("dog taken with my Pixel", "dog", lambda fact, place: fact.camera in ("Google Pixel 6", "Google Pixel 7")),
    ("streets of São Paulo in 2022", "streets of", both(in_place("São Paulo"), days("2022-01-01", "2022-12-31"))),
    ("Kyoto 2021", "", both(in_place("Kyoto"), days("2021-01-01", "2021-12-31"))),
    ("Kyoto shot on iPhone", "", lambda fact, place: fact.camera == "Apple iPhone 12" and place.city == "Kyoto"),
    ("beach last summer", "beach", days("2026-06-01", "2026-08-31")),
    ("boats after May 2020", "boats", days("2020-06-01", None)),
    ("market between 2019 and 2020", "market", days("2019-01-01", "2020-12-31")),
    ("a tram in Lisbon in the winter of 2022", "a tram", both(in_place("Lisbon"), days("2022-12-01", "2023-02-28"))),
    ("Kyoto, Japan", "", in_place("Kyoto")),
    ("night in Ankara, Turkey", "night", both(in_place("Ankara"), in_place("Turkey"))),
    ("Pixel 7 sunset in France", "sunset", both(in_place("France"), lambda fact, _: fact.camera == "Google Pixel 7")),
    ("a reading lamp", "a reading lamp", lambda fact, place: True),
    ("a cat in orange", "a cat in orange", lambda fact, place: True),
    ("pixel art", "pixel art", lambda fact, place: True),
    ("a canon on a hill", "a canon on a hill", lambda fact, place: True),
    ("may flowers", "may flowers", lambda fact, place: True),
    ("1984 poster", "1984 poster", lambda fact, place: True),
]  # fmt: skip


@pytest.mark.parametrize(("text", "left", "passes"), SEARCHED, ids=[text for text, _, _ in SEARCHED])
def test_searches_by_words_equal_brute_force_over_the_photos_that_pass(travels, encoder, text, left, passes) -> None:
    library, vectors, facts, places = travels
    understood = library.understand(text, today=TODAY)
    assert understood.words == left
    subset = [i for i, (fact, place) in enumerate(zip(facts, places, strict=True)) if passes(fact, place)]
    assert subset, text
    options = SearchOptions(k=8, fold=False)
    if left:
        query = encoder.encode_text([left])[0]
        results = library.search_vector(query, options, where=understood.filter())
        expected = [subset[j] for j in np.argsort(-(vectors[subset] @ query), kind="stable")[:8]]
    else:  # only filters: the photos that pass, newest first
        results = library.listing(understood.filter(), options)
        expected = sorted(subset, key=lambda i: -facts[i].taken)[:8]
        assert all(math.isnan(result.hit.score) for result in results.shown)
    assert [result.hit.path for result in results.shown] == [f"photo-{i:03d}.jpg" for i in expected]
    assert results.more == (len(subset) > 8)


def test_the_cli_says_what_it_understood_and_searches_the_rest(travels, run_cli, cli_env) -> None:
    _, _, facts, places = travels
    env = {**cli_env, "CLIPSEARCH_ALGORITHM": "FLAT"}
    done = run_cli(env, "search", "temple in Kyoto 2021", "--json")
    assert done.returncode == 0, done.stderr
    assert "understood 'in Kyoto' (place: Kyoto) · '2021' (date: 2021-01-01 to 2021-12-31)" in done.stderr
    rows = json.loads(done.stdout)
    kyoto_2021 = {f"photo-{i:03d}.jpg" for i, (fact, place) in enumerate(zip(facts, places, strict=True))
                  if place.city == "Kyoto" and datetime.fromtimestamp(fact.taken, UTC).year == 2021}  # fmt: skip
    assert rows and {row["path"] for row in rows} == kyoto_2021
    assert rows[0]["understood"] == [
        {"kind": "place", "words": "in Kyoto", "value": "Kyoto"},
        {"kind": "date", "words": "2021", "value": "2021-01-01 to 2021-12-31"},
    ]
    literal = run_cli(env, "search", "temple in Kyoto 2021", "--literal", "--json", "--k", "90")
    assert literal.returncode == 0 and "understood" not in literal.stderr
    assert len(json.loads(literal.stdout)) == 90 and json.loads(literal.stdout)[0]["understood"] == []
    listed = run_cli(env, "search", "Kyoto shot on iPhone")  # only filters: newest first, no similarity
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    kyoto_iphone = [
        i
        for i, (fact, place) in enumerate(zip(facts, places, strict=True))
        if place.city == "Kyoto" and fact.camera == "Apple iPhone 12"
    ]
    wanted = sorted(kyoto_iphone, key=lambda i: -facts[i].taken)
    assert [line.split()[-1] for line in lines] == [f"photo-{i:03d}.jpg" for i in wanted]
    assert all(line.split()[1] == "-" for line in lines)
    conflict = run_cli(env, "search", "temple in 2021", "--after", "2022-01-01")
    said = "cannot both hold: the days from 2022-01-01 and 2021-01-01 to 2021-12-31 do not meet"
    assert conflict.returncode == 2 and said in conflict.stderr, conflict.stderr


# --- the page -------------------------------------------------------------------------------------


@pytest.fixture
def page_over_travels(travels, monkeypatch, search_server, settings, random_checkpoint, tmp_path):
    """The page's environment over the travels index (no photo files: the gallery shows what it can)."""
    for name in ("VALKEY_URL", "CLIPSEARCH_MODEL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in search_server.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CLIPSEARCH_ALGORITHM", "FLAT")
    monkeypatch.setenv("CLIPSEARCH_INDEX", settings.index_name)
    monkeypatch.setenv("CLIPSEARCH_PRETRAINED", str(random_checkpoint))
    monkeypatch.setenv("CLIPSEARCH_PHOTOS", str(tmp_path))
    return travels


TILE = re.compile(r"^#(\d+)(?: · (-?\d\.\d{3}))? · (photo-\d{3}\.jpg) · (\d{4}-\d\d-\d\d) \(no thumbnail\)$")


def tiles(app: AppTest) -> list[re.Match[str]]:
    """Each gallery tile's caption (these photos have no thumbnail), in rank order: rank, similarity, name, day."""
    found = [match for tile in gallery_tiles(app) if (match := TILE.match(tile["caption"]))]
    return sorted(found, key=lambda match: int(match[1]))


def gallery_names(app: AppTest) -> list[str]:
    return [match[3] for match in tiles(app)]


def part_chips(app: AppTest) -> list[str]:
    return [button.label for button in app.button if button.key and button.key.startswith("part-")]


def test_the_page_shows_each_understood_part_as_a_chip_that_gives_its_words_back(page_over_travels, encoder) -> None:
    _, vectors, facts, places = page_over_travels
    app = AppTest.from_file(APP, default_timeout=120)
    app.query_params["q"] = "temple in Kyoto 2021"
    app.query_params["k"] = "20"
    app.run()
    assert not app.exception and part_chips(app) == ["in Kyoto ✕", "2021 ✕"]
    of_2021 = [i for i, fact in enumerate(facts) if datetime.fromtimestamp(fact.taken, UTC).year == 2021]
    kyoto_2021 = [i for i in of_2021 if places[i].city == "Kyoto"]
    temple = encoder.encode_text(["temple"])[0]
    expected = [kyoto_2021[j] for j in np.argsort(-(vectors[kyoto_2021] @ temple), kind="stable")]
    assert gallery_names(app) == [f"photo-{i:03d}.jpg" for i in expected]

    app.button(key="part-0").click().run()  # the place chip removed: "temple in Kyoto" among every 2021 photo
    assert part_chips(app) == ["2021 ✕"] and app.query_params["as_written"] == "in Kyoto"
    words = encoder.encode_text(["temple in Kyoto"])[0]
    expected = [of_2021[j] for j in np.argsort(-(vectors[of_2021] @ words), kind="stable")[:20]]
    assert gallery_names(app) == [f"photo-{i:03d}.jpg" for i in expected]
    assert app.text_input(key="q").value == "temple in Kyoto 2021"  # the URL keeps the words as typed

    app.toggle(key="literal").set_value(True).run()  # every word to CLIP
    assert part_chips(app) == [] and len(gallery_names(app)) == 20


def test_a_query_of_filters_alone_lists_the_photos_newest_first(page_over_travels) -> None:
    _, _, facts, places = page_over_travels
    app = AppTest.from_file(APP, default_timeout=120)
    app.query_params["q"] = "Kyoto shot on iPhone"
    app.run()
    assert not app.exception and part_chips(app) == ["Kyoto ✕", "shot on iPhone ✕"]
    wanted = sorted(
        (i for i, fact in enumerate(facts) if places[i].city == "Kyoto" and fact.camera == "Apple iPhone 12"),
        key=lambda i: -facts[i].taken,
    )
    assert gallery_names(app) == [f"photo-{i:03d}.jpg" for i in wanted]
    assert all(match[2] is None for match in tiles(app))  # no similarity: listed by the filters alone
    assert any("newest first" in markdown.value for markdown in app.markdown)
    conflict = AppTest.from_file(APP, default_timeout=120)
    conflict.query_params["q"] = "temple in 2021"
    conflict.query_params["after"] = "2023-01-01"
    conflict.run()
    assert any("cannot both hold" in error.value for error in conflict.error)


def test_the_vocabulary_is_scanned_once_per_index_version_for_every_process(travels, settings, encoder, monkeypatch):
    """A second process (a CLI run) reads the vocabulary the first kept in the server; a write makes it anew;
    dropping the index drops it."""
    library, vectors, _, _ = travels
    assert library.understand("snow in Turkey", today=TODAY).words == "snow"
    store = library.store()
    key = f"{store.schema.name}:vocabulary"
    assert store.client.exists(key)
    monkeypatch.setattr(library_module, "_VOCABULARIES", Shared(4))  # as in another process

    def no_scan(*args, **kwargs):
        pytest.fail("the vocabulary kept for this version is read, not scanned again")

    monkeypatch.setattr(PhotoStore, "scan", no_scan)
    another = Library(dataclasses.replace(settings, algorithm="FLAT"), text_encoder=lambda: encoder)
    assert [part.place for part in another.understand("snow in Turkey", today=TODAY).parts] == ["Turkey"]
    monkeypatch.undo()
    reykjavik = PhotoFacts(day_start("2024-02-02"), "exif", "", "Apple iPhone 12", 64.1466, -21.9426)
    store.upsert([PhotoRecord(path="iceland.jpg", vector=vectors[0], name="iceland.jpg", facts=reykjavik)])
    store.wait_indexed()
    assert [part.place for part in another.understand("ice in Iceland", today=TODAY).parts] == ["Iceland"]
    store.drop()
    assert not store.client.exists(key)
