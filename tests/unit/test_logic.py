"""The pure logic of the library on plain values and arrays, no server and no model: folding, variety, cuts,
options, filters and their query syntax, ordering, the schema's table and rows, the algorithm's fit, the
loader's plan, CSV rows, download checks, keeping a duplicate group's best, the score chart and composing a
query. Every one of these is also exercised end to end against a real server and model elsewhere."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from clipsearch.display import escape_markdown
from clipsearch.index.filters import SearchFilter, escape_tag, in_order
from clipsearch.index.schema import (
    AUTO_FLAT_UP_TO,
    FIELDS,
    PHOTO_FIELDS,
    IndexSchema,
    Photo,
    PhotoRecord,
    check_fields,
    fitting_algorithm,
    tag_value,
)
from clipsearch.index.store import Hit
from clipsearch.ingest.facts import FIRST_DAY, LAST_DAY, PhotoFacts, day_start
from clipsearch.ingest.files import BadPhoto, display_path
from clipsearch.ingest.loader import Known, LoadOptions, Part, _plan
from clipsearch.ingest.sources import Source, check_download_url, csv_sources
from clipsearch.library import Found, Library, TermVectors
from clipsearch.model.identity import ModelIdentity
from clipsearch.model.labels import MAX_LABELS, MAX_LABELS_TEXT, LabelList
from clipsearch.search.chart import score_chart_svg
from clipsearch.search.duplicates import _most_similar, keep_first
from clipsearch.search.query import BadQuery
from clipsearch.search.results import Cut, Result, Results, SearchOptions, fold, fold_heads, mmr_order


def units(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


unit_rows = (
    arrays(np.float32, st.tuples(st.integers(1, 30), st.just(6)), elements=st.floats(-1, 1, width=32))
    .filter(lambda rows: bool(np.all(np.linalg.norm(rows, axis=1) > 0.1)))
    .map(units)
)


def greedy_heads(vectors: np.ndarray, similarity: float) -> list[int]:
    """Folding written the plainest way: each row against every earlier head, all similarities at once."""
    heads: list[int] = []
    out = []
    for place in range(len(vectors)):
        scores = [float(vectors[head] @ vectors[place]) for head in heads]
        if scores and max(scores) >= similarity - 1e-6:
            out.append(heads[int(np.argmax(scores))])
        else:
            heads.append(place)
            out.append(place)
    return out


@settings(max_examples=200, deadline=None)
@given(unit_rows, st.floats(0.5, 1.0))
def test_fold_heads_equal_the_plain_greedy_fold(vectors: np.ndarray, similarity: float) -> None:
    # A pair within rounding of the threshold may fall either way (but identical rows always fold).
    identical = np.all(vectors[:, None, :] == vectors[None, :, :], axis=-1)
    assume(not np.any((np.abs(vectors @ vectors.T - similarity) < 1e-4) & ~identical))
    heads = fold_heads(vectors, similarity)
    expected = greedy_heads(vectors, similarity)
    for place, (head, plain) in enumerate(zip(heads, expected, strict=True)):
        if head != plain:  # a tie between two heads, broken apart by rounding: either is right
            assert head != place and plain != place
            assert abs(float(vectors[head] @ vectors[place]) - float(vectors[plain] @ vectors[place])) < 1e-5
    assert all(heads[head] == head and head <= place for place, head in enumerate(heads)), "heads are their own"


def test_identical_rows_fold_at_similarity_one() -> None:
    rows = units(np.array([[0.125, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [0.125, 1, 1, 1, 1, 1]], np.float32))
    assert fold_heads(rows, 1.0) == [0, 1, 0]


def test_fold_puts_each_hit_under_its_most_similar_better_result() -> None:
    a, b = np.array([1, 0, 0], np.float32), np.array([0, 1, 0], np.float32)
    near_a = units(np.array([[1, 0.1, 0]], np.float32))[0]
    hits = [Hit(key, score, Photo(vector=v)) for key, score, v in (("a", 0.9, a), ("b", 0.8, b), ("c", 0.7, near_a))]
    assert fold(hits, 0.95) == [Result(hits[0], (hits[2],)), Result(hits[1])]
    assert fold(hits, None) == [Result(hit) for hit in hits]


@settings(max_examples=200, deadline=None)
@given(unit_rows, st.integers(1, 10), st.floats(0.0, 1.0))
def test_mmr_picks_distinct_rows_and_is_relevance_order_without_variety(
    vectors: np.ndarray, k: int, variety: float
) -> None:
    query = vectors.mean(axis=0) + np.float32(0.01)
    order = mmr_order(vectors, query, k, variety)
    assert len(order) == min(k, len(vectors)) and len(set(order)) == len(order)
    relevance = vectors @ (query / np.linalg.norm(query))
    assert order[0] == int(np.argmax(relevance)), "the first is always the most relevant"
    if variety == 0:
        assert [relevance[i] for i in order] == sorted((relevance[i] for i in order), reverse=True)


def test_mmr_with_full_variety_takes_the_row_least_like_the_first() -> None:
    vectors = units(np.array([[1, 0], [0.99, 0.1], [0, 1]], np.float32))
    assert mmr_order(vectors, np.array([1, 0.05], np.float32), 2, 1.0) == [0, 2]


@given(st.floats(-1, 1), st.none() | st.floats(-1, 1), st.none() | st.floats(0, 0.3))
def test_the_cut_is_the_stricter_of_its_bounds(best: float, minimum: float | None, below: float | None) -> None:
    threshold = Cut(min_similarity=minimum, below_best=below).threshold(best)
    bounds = [bound for bound in (minimum, None if below is None else best - below) if bound is not None]
    assert threshold == (max(bounds) if bounds else None)


@pytest.mark.parametrize(
    "bad", [{"k": 0}, {"variety": 1.5}, {"duplicate_similarity": 0.0}, {"duplicate_similarity": 1.01}, {"order": "x"}]
)
def test_search_options_refuse_what_has_no_meaning(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SearchOptions(**bad)  # type: ignore[arg-type]


def test_folding_follows_the_fold_switch() -> None:
    assert SearchOptions(duplicate_similarity=0.9).folding == 0.9
    assert SearchOptions(fold=False).folding is None


def test_a_filter_becomes_an_escaped_prefilter() -> None:
    assert SearchFilter().query() == "*"
    where = SearchFilter.of_days("2021-03-01", "2021-03-31", folder="2021/Japan ", camera="Apple iPhone 12")
    assert where.after == day_start("2021-03-01") and where.before == day_start("2021-03-31") + 86_400
    assert where.query() == (
        f"(@taken:[{where.after!r} ({where.before!r}] @folders:{{2021\\/japan}} @camera_tag:{{apple\\ iphone\\ 12}})"
    )
    assert SearchFilter(folder=" / ").query() == "*" and SearchFilter(before=5.0).query() == "(@taken:[-inf (5.0])"
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        SearchFilter.of_days("March", None)


@given(st.text(max_size=40))
def test_escaped_tags_hold_no_bare_punctuation(text: str) -> None:
    escaped = escape_tag(tag_value(text))
    place = 0
    while place < len(escaped):  # every character is a letter, a digit, _, or escaped by a backslash
        if escaped[place] == "\\":
            place += 2
            continue
        assert escaped[place].isalnum() or escaped[place] == "_", (text, escaped)
        place += 1
    assert "|" not in tag_value(text)


def test_order_by_time_keeps_undated_last_and_ties_in_relevance_order() -> None:
    hits = [Hit(name, 1.0, Photo(taken=taken)) for name, taken in (("a", 2.0), ("b", None), ("c", 3.0), ("d", 2.0))]
    assert [hit.key for hit in in_order(hits, "relevance")] == ["a", "b", "c", "d"]
    assert [hit.key for hit in in_order(hits, "newest")] == ["c", "a", "d", "b"]
    assert [hit.key for hit in in_order(hits, "oldest")] == ["a", "d", "c", "b"]
    with pytest.raises(ValueError):
        in_order(hits, "random")


def test_the_schema_table_drives_reading_and_the_search_index() -> None:
    vector = np.arange(4, dtype="<f4")
    photo = Photo.decoded(
        ["vector", "width", "name", "taken", "thumbnail"], [vector.tobytes(), b"640", b"x.jpg", None, b"\xff"]
    )
    assert np.array_equal(photo.vector, vector) and photo.width == 640 and photo.name == "x.jpg" and photo.taken is None
    assert photo.merged(Photo(taken=3.0, width=None)).taken == 3.0 and photo.merged(Photo()).width == 640
    assert set(PHOTO_FIELDS) <= FIELDS.keys()
    with pytest.raises(ValueError, match="no such photo field"):
        check_fields(["path", "colour"])
    schema = IndexSchema("idx", ModelIdentity("m", "p", 4), "HNSW", 16, 200, 100)
    indexed = {field.name: type(field).__name__ for field in schema.fields()}
    assert indexed == {
        "vector": "VectorField",
        "taken": "NumericField",
        "folders": "TagField",
        "camera_tag": "TagField",
        "latitude": "NumericField",
        "longitude": "NumericField",
        "places": "TagField",
        "name_words": "TextField",
        "text": "TextField",
        "folder_words": "TextField",
    }
    key = schema.key_for("a/b.jpg")
    assert schema.is_photo_key(key) and not schema.is_photo_key("idx:meta") and key == schema.key_for("a/b.jpg")


def test_a_record_writes_only_fields_of_the_table() -> None:
    facts = PhotoFacts(taken=10.0, taken_from="exif", offset="+09:00", camera="Canon | R6", latitude=1.5, longitude=2.5)
    mapping = PhotoRecord("2021/japan/x.jpg", np.ones(4), facts=facts).to_mapping(4)
    assert mapping.keys() <= FIELDS.keys()
    assert mapping["folders"] == "2021|2021/japan" and mapping["camera_tag"] == "canon / r6"
    assert mapping["name_words"] == "x" and mapping["folder_words"] == "2021 japan"
    assert "places" not in mapping and mapping["latitude"] == "1.5"  # in the Gulf of Guinea: no place near
    in_kyoto = dataclasses.replace(facts, latitude=35.0116, longitude=135.7681)
    mapping = PhotoRecord("x.jpg", np.ones(4), facts=in_kyoto).to_mapping(4)
    assert mapping["country"] == "Japan" and "japan" in str(mapping["places"]).split("|")
    with pytest.raises(ValueError, match="shape"):
        PhotoRecord("x.jpg", np.ones(3)).to_mapping(4)


def test_the_algorithm_fits_the_size_with_a_margin_against_flapping() -> None:
    assert fitting_algorithm(AUTO_FLAT_UP_TO + 1, "FLAT") == "HNSW"
    assert fitting_algorithm(AUTO_FLAT_UP_TO, "FLAT") == "FLAT"
    assert fitting_algorithm(int(0.9 * AUTO_FLAT_UP_TO), "HNSW") == "HNSW", "between 80 % and the limit: kept"
    assert fitting_algorithm(int(0.7 * AUTO_FLAT_UP_TO), "HNSW") == "FLAT"


def test_the_plan_reads_new_and_changed_files_only() -> None:
    def source(path: str, size: int, mtime: float, kind: str = "file") -> Source:
        return Source(path, lambda: b"", kind, size, mtime)

    known = {"same.jpg": Known("k1", 10, 1.0, "h1"), "touched.jpg": Known("k2", 10, 1.0, "h2"),
             "https://x/y.jpg": Known("k3", 0, 0.0, "h3")}  # fmt: skip
    sources = [source("same.jpg", 10, 1.0), source("touched.jpg", 10, 2.0), source("new.jpg", 5, 1.0),
               Source("https://x/y.jpg", lambda: b"", "url")]  # fmt: skip
    todo, unchanged = _plan(sources, known)
    assert [(s.path, k.key if k else None) for s, k in todo] == [("touched.jpg", "k2"), ("new.jpg", None)]
    assert unchanged == 2, "a URL already indexed is not downloaded again"


def test_csv_rows_become_sources_once_each_and_paths_stay_inside(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    listing = tmp_path / "photos.tsv"
    listing.write_text("id\tphoto_image_url\n1\thttps://example.com/p.jpg\n2\ta.jpg\n3\ta.jpg\n4\t../out.jpg\n5\t\n")
    sources = csv_sources(listing, None, LoadOptions().fetching)
    assert [(s.kind, Path(s.path).name) for s in sources] == [("url", "p.jpg"), ("file", "a.jpg"), ("file", "out.jpg")]
    with pytest.raises(BadPhoto, match="outside the CSV's folder"):
        sources[2].read()
    with pytest.raises(ValueError, match="no column"):
        csv_sources(listing, "nope", LoadOptions().fetching)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [("ftp://example.com/x.jpg", False), ("file:///etc/passwd", False), ("http://127.0.0.1/x.jpg", False),
     ("http://10.0.0.8/x.jpg", False), ("http://169.254.169.254/latest", False), ("http://[::1]/x", False)],
)  # fmt: skip
def test_downloads_refuse_other_schemes_and_this_machines_network(url: str, allowed: bool) -> None:
    with pytest.raises(BadPhoto):
        check_download_url(url, allow_private_hosts=False)


def test_private_hosts_are_allowed_when_asked() -> None:
    check_download_url("http://127.0.0.1/x.jpg", allow_private_hosts=True)


def test_the_photo_to_keep_has_the_most_pixels_then_the_largest_file() -> None:
    photos = [Photo(path="b", width=10, height=10, size=5), Photo(path="a", width=20, height=10, size=1),
              Photo(path="c", width=10, height=10, size=9), Photo(path="d")]  # fmt: skip
    assert [photo.path for photo in sorted(photos, key=keep_first)] == ["a", "c", "b", "d"]


def test_the_score_chart_draws_every_candidate_and_the_cut() -> None:
    assert score_chart_svg([], None) == ""
    svg = score_chart_svg([0.3, 0.25, 0.1], 0.2)
    assert svg.count("<circle") == 3 and 'data-cut="0.200000"' in svg and svg.count("#bbbbbb") == 1
    assert "data-cut" not in score_chart_svg([0.3, 0.3], None), "no cut, no line; equal scores draw flat"


def test_composing_a_query_weights_unit_terms_and_photos() -> None:
    terms = TermVectors((2.0, -1.0), np.array([[2, 0, 0], [0, 3, 0]], np.float32))
    photo = np.array([0, 0, 5], np.float32)
    vector = Library.compose(terms, [photo])
    expected = np.array([2, -1, 1], np.float32) / math.sqrt(6)
    assert np.allclose(vector, expected)
    with pytest.raises(BadQuery, match="nothing to search for"):
        Library.compose(None, [])
    with pytest.raises(BadQuery, match="cancel"):
        Library.compose(TermVectors((1.0, -1.0), np.array([[1, 0], [2, 0]], np.float32)))


@given(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=60, unique=True), st.integers(1, 7))
def test_the_parts_of_a_collection_never_overlap_and_cover_it(paths: list[str], count: int) -> None:
    parts = [Part(number, count) for number in range(1, count + 1)]
    for path in paths:
        assert sum(part.holds(path) for part in parts) == 1, path


def test_a_part_is_read_as_i_of_n() -> None:
    assert Part.parse("2/3") == Part(2, 3) and str(Part(2, 3)) == "2/3"
    for text in ("0/3", "4/3", "2", "a/b", "/3", "-1/2"):
        with pytest.raises(ValueError, match="i/n|1 <= i <= n"):
            Part.parse(text)
    with pytest.raises(ValueError, match="each part sees only its own photos"):
        LoadOptions(part=Part(1, 2), prune=True)


@given(st.lists(st.tuples(st.integers(0, 6), st.floats(0, 1, width=32)), max_size=60), st.integers(1, 4))
def test_each_photo_keeps_its_most_similar_pairs(pairs: list[tuple[int, float]], most: int) -> None:
    rows = np.array([row for row, _ in pairs], dtype=np.int64)
    scores = np.array([score for _, score in pairs], dtype=np.float32)
    kept, over = _most_similar(rows, scores, most)
    for row in set(rows.tolist()):
        own = sorted(scores[rows == row].tolist(), reverse=True)
        assert sorted(scores[kept][rows[kept] == row].tolist(), reverse=True) == own[:most]
    assert over == sum(1 for row in set(rows.tolist()) if (rows == row).sum() > most)


# --- what a visitor can send: labels, days, timeline selections, names ------------------------------------


def test_labels_are_read_up_to_their_limit_whatever_is_sent() -> None:
    flood = "\n".join(f"label {i}" for i in range(2_000_000))  # 20 MB, as pasted or sent over the websocket
    parsed = LabelList.parse(flood)
    assert parsed == dataclasses.replace(LabelList.parse(flood[:MAX_LABELS_TEXT]), cut=True)
    assert len(parsed.labels) == MAX_LABELS and parsed.cut and not LabelList.parse("cat\ndog").cut


@pytest.mark.parametrize("day", ["1799-12-31", "2200-01-01", "9999-12-31", "0001-01-01"])
def test_days_outside_what_a_filter_takes_are_refused_with_the_bounds(day: str) -> None:
    with pytest.raises(ValueError, match="1800-01-01 to 2199-12-31"):
        day_start(day)
    assert day_start("1800-01-01") < day_start("2005-06-01") < day_start("2199-12-31")


def test_photos_with_a_clock_in_year_9999_or_1_stay_off_the_timelines() -> None:
    from clipsearch.search.overview import overview, per_month

    odd = [datetime(9999, 12, 31, tzinfo=UTC).timestamp(), datetime(1, 1, 1, tzinfo=UTC).timestamp()]
    times = [day_start("2003-04-05"), day_start("2005-11-30"), *odd]
    assert per_month(times) == [("2003-04", 1), ("2005-11", 1)]
    counted = overview(Photo(taken=taken) for taken in times)
    assert counted.months == [("2003-04", 1), ("2005-11", 1)] and counted.undated == 2


@given(
    st.dictionaries(
        st.text(max_size=8),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
            max_leaves=8,
        ),
        max_size=3,
    )
)
@settings(max_examples=300, deadline=None)
def test_any_chart_selection_a_browser_sends_is_a_span_within_bounds_or_none(selection: dict) -> None:
    from clipsearch.app import charts

    for chosen in (selection, {charts.SPAN: selection}, {charts.PICK: list(selection.values())}):
        span = charts.selected_span(chosen)
        assert span is None or (FIRST_DAY <= span[0] <= span[1] <= LAST_DAY)
        assert charts.picked(chosen) is None or isinstance(charts.picked(chosen), str)


def test_a_drag_past_the_last_month_a_filter_takes_ends_there() -> None:
    from clipsearch.app import charts

    last_month, year_10000 = datetime(2199, 12, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC)
    selection = {charts.SPAN: {"month": [last_month.timestamp() * 1000, year_10000.timestamp() * 1000]}}
    assert charts.selected_span(selection) == (date(2199, 12, 1), LAST_DAY)
    assert charts.timeline([("2022-05", 3)])["layer"][0]["data"]["values"][0]["label"] == "May 2022"


def test_bidirectional_controls_in_names_cannot_reorder_what_is_shown_beside_them() -> None:
    name = "photo\u202egpj.exe\u2066x\u2069.jpg"
    assert display_path(name) == "photogpj.exex.jpg"
    assert "\u202e" not in escape_markdown(name) and "\u2066" not in escape_markdown("camera \u2067A\u2069")


def test_a_drag_within_the_first_millisecond_of_a_month_is_that_month() -> None:
    from clipsearch.app import charts

    assert charts.selected_span({charts.SPAN: {"month": [0.0, 0.5]}}) == (date(1970, 1, 1), date(1970, 1, 31))


def test_a_heading_says_what_was_searched_and_marks_what_a_person_gave() -> None:
    nothing = Results([], [], None, False)
    vector = np.ones(2, np.float32)

    def heading(vector, searched="", subjects=(), where=None, order="relevance") -> str:
        found = Found(nothing, vector, where or SearchFilter(), None, searched, subjects, (), order)
        return found.heading(lambda words: f"<{words}>", lambda words: f"[{words}]")

    assert heading(vector, "red car") == "Photos matching <red car>"
    assert heading(vector, "", ("cat.jpg",)) == "Photos like <cat.jpg>"
    assert heading(vector, "at night", ("cat.jpg", "dog.jpg")) == "Photos like <cat.jpg> and <dog.jpg> <+ at night>"
    assert heading(vector, "- people", ("cat.jpg",)) == "Photos like <cat.jpg> <- people>"
    kyoto = SearchFilter(places=("Kyoto",))
    assert heading(None, where=kyoto) == f"Photos [{kyoto.describe()}], newest first"
    assert heading(None, where=kyoto, order="oldest") == f"Photos [{kyoto.describe()}], oldest first"
