"""Words in file and folder names: how they are made and matched (plain values), and the one ranking they
share with CLIP on both backends and a cluster, through the library, the CLI and an index upgraded in place."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from clipsearch.index.filters import SearchFilter
from clipsearch.index.schema import SCHEMA_VERSION, IndexSchema, PhotoRecord
from clipsearch.index.store import PhotoStore
from clipsearch.index.upgrades import upgrade
from clipsearch.ingest.loader import LoadOptions, PhotoLoader
from clipsearch.library import Library
from clipsearch.search.query import BadQuery
from clipsearch.search.results import Cut, SearchOptions
from clipsearch.search.words import (
    MAX_QUERY_WORDS,
    WORD,
    any_clause,
    every_clause,
    folder_words,
    fuse,
    matched,
    name_words,
    phrase_clause,
    query_words,
    quoted,
    words_of,
)
from tests.conftest import gallery_tiles

BACKENDS = ("redisearch", "valkey-search", "cluster")
APP = str(Path(__file__).resolve().parents[2] / "streamlit_app.py")


# --- plain values ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("IMG_2041-kyotoTemple.jpg", "img 2041 kyoto temple"),
        ("HDRPhoto2.JPG", "hdr photo 2"),
        ("2019_05_Paris trip (1).jpeg", "2019 05 paris trip 1"),
        ("Café_Straße.png", "café straße"),
        ("京都の寺.jpg", "京都の寺"),
        (".hidden", "hidden"),
        ("no extension", "no extension"),
        ("DSC.00042.tar.jpg", "dsc 00042 tar"),
    ],
)
def test_a_file_name_is_split_into_its_words(name: str, words: str) -> None:
    assert name_words(name) == words


def test_folder_words_are_every_folder_of_the_path_once() -> None:
    assert folder_words("2019/Kyoto trip/day 2019/IMG_1.jpg") == "2019 kyoto trip day"
    assert folder_words("IMG_1.jpg") == ""


def test_the_words_of_a_query_are_its_wishes_without_stop_words() -> None:
    assert query_words("a temple in Kyoto - people + 2:EXIT 12") == ("temple", "kyoto", "exit", "12")
    assert query_words("kyotoTemple") == ("kyoto", "temple")  # the same split as a name's
    assert query_words("the the of") == ()
    assert query_words("   ") == ()
    many = " ".join(f"word{n}x" for n in range(20))
    assert len(query_words(many)) == MAX_QUERY_WORDS
    with pytest.raises(BadQuery):
        query_words("a + ")


def test_only_words_as_made_here_reach_a_query() -> None:
    either = "@text:{0} | @name_words:{0} | @folder_words:{0}"
    assert any_clause(["kyoto", "2019"]) == f"({either.format('kyoto')} | {either.format('2019')})"
    assert every_clause(["a", "b"]) == f"(({either.format('a')}) ({either.format('b')}))"
    assert phrase_clause(["exit", "12"]) == f"({either.format(chr(34) + 'exit 12' + chr(34))})"
    for bad in (["exit", "1*"], []):
        with pytest.raises(ValueError):
            phrase_clause(bad)
    for bad in (["kyo*"], ["Kyoto"], ["a b"], ["@x"], ["x|y"], []):
        with pytest.raises(ValueError):
            any_clause(bad)


@given(st.text())
def test_the_words_of_any_text_are_plain_words_in_lower_case(text: str) -> None:
    for word in words_of(text):
        assert WORD.fullmatch(word) and word == word.lower() and word in text.lower()
    try:
        words = query_words(text)
    except BadQuery:
        return
    if words:
        any_clause(words)
        every_clause(words)


def test_quoted_phrases_are_words_in_order_and_bounded() -> None:
    assert quoted('"EXIT 12" sign "Kyoto"') == (("exit", "12"), ("kyoto",))
    assert quoted('an "unclosed quote') == () and quoted('"" "!!"') == ()
    assert quoted('"a b" "a b"') == (("a", "b"),)
    many = " ".join(f'"w{n} x{n} y{n}"' for n in range(5))
    assert sum(map(len, quoted(many))) <= MAX_QUERY_WORDS


def test_matched_says_which_field_carried_which_words() -> None:
    fields = {"name_words": "img 2041 kyoto temple", "folder_words": "2019 kyoto"}
    assert matched(("kyoto", "temple", "exit"), fields) == ("name: kyoto temple", "folder: kyoto")
    assert matched(("exit",), fields) == ()


def test_a_photo_in_both_rankings_rises_and_one_in_the_text_ranking_stands_beside_clips() -> None:
    clip = [("a", 0.30), ("b", 0.29), ("c", 0.28), ("d", 0.27)]
    text = [("x", 0.10, 2), ("c", 0.28, 1)]  # x: every word, not among CLIP's; c: one word
    assert [photo.key for photo in fuse(clip, text)] == ["c", "x", "a", "b", "d"]
    assert [photo.key for photo in fuse(clip, [])] == ["a", "b", "c", "d"]
    assert [photo.key for photo in fuse(clip, [("y", 0.1, 1), ("x", 0.2, 1)], limit=3)] == ["x", "a", "y"]


@given(
    st.integers(1, 30),
    st.lists(st.tuples(st.integers(0, 60), st.floats(-1, 1), st.integers(1, 8)), max_size=60),
)
def test_the_text_matches_never_push_out_more_than_half_of_clips_results(k: int, text: list) -> None:
    clip = [(f"c{i}", 1.0 - i / 100) for i in range(k)]
    matches = list({f"t{key}" if key % 3 else f"c{key}": (score, count) for key, score, count in text}.items())
    fused = fuse(clip, [(key, score, count) for key, (score, count) in matches], limit=k)
    assert len(fused) == min(k, len({*dict(clip), *dict(matches)}))
    kept = [photo.key for photo in fused if photo.clip_rank is not None]
    assert len(kept) >= k // 2
    ranks = [photo.clip_rank for photo in fused if photo.clip_rank is not None and photo.text_rank is None]
    assert ranks == sorted(ranks), "CLIP's results keep their order among themselves"


# --- on the backends ------------------------------------------------------------------------------------

NAMED = {  # sample photo: the path it is indexed under
    0: "IMG_2041-zanzibarLighthouse.jpg",
    1: "Okavango delta/DSC_0001.jpg",
    2: "Okavango delta/DSC_0002.jpg",
}


@pytest.fixture
def named_library(tmp_path: Path, sample_photos: Path, settings, encoder):
    """16 sample photos indexed by the loader: most under plain camera names, one named for what it shows,
    two in a folder named for where they were taken."""
    folder = tmp_path / "collection"
    for number, source in enumerate(sorted(sample_photos.glob("*.jpg"))[::12][:16]):
        target = folder / NAMED.get(number, f"IMG_{1000 + number}.jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    library = Library(
        dataclasses.replace(settings, algorithm="FLAT"), text_encoder=lambda: encoder, image_encoder=lambda: encoder
    )
    PhotoLoader(library.store(create=True), lambda: encoder, LoadOptions(), show_bar=False).index_folder(folder)
    library.store().wait_indexed()
    return library


def searched(library: Library, encoder, text: str, words: bool = True, k: int = 8):
    options = SearchOptions(k=k, fold=False)
    return library.search_vector(encoder.encode_text([text])[0], options, text=text if words else None)


def test_a_word_only_in_a_file_or_folder_name_ranks_its_photo_first(named_library, encoder) -> None:
    library = named_library
    found = searched(library, encoder, "the zanzibar lighthouse at dusk")
    assert found.shown[0].hit.path == NAMED[0]
    assert found.shown[0].matched == ("name: zanzibar lighthouse",)
    assert not math.isnan(found.shown[0].hit.score)  # still its CLIP similarity
    okavango = searched(library, encoder, "okavango")
    # Both photos of the folder: the first ahead of CLIP's best, the second beside CLIP's second (interleaved).
    named = [result.hit.path for result in okavango.shown if result.matched == ("folder: okavango",)]
    assert okavango.shown[0].hit.path in named and sorted(named) == [NAMED[1], NAMED[2]]
    assert [result.hit.path for result in okavango.shown[:3]].count(named[1]) == 1


def test_words_that_match_no_name_keep_clips_ranking_and_no_text_is_clip_alone(named_library, encoder) -> None:
    library = named_library
    for text in ("sunset over the sea", "zanzibar"):
        clip_alone = searched(library, encoder, text, words=False)
        vector = encoder.encode_text([text])[0]
        vectors = {key: library.stored_vector(key) for key in (result.hit.key for result in clip_alone.shown)}
        scores = [float(vectors[result.hit.key] @ vector) for result in clip_alone.shown]
        assert scores == sorted(scores, reverse=True)
        assert all(result.matched == () for result in clip_alone.shown)
    with_words = searched(library, encoder, "sunset over the sea")
    alone = searched(library, encoder, "sunset over the sea", words=False)
    assert [result.hit.key for result in with_words.shown] == [result.hit.key for result in alone.shown]


def test_the_words_respect_the_filters_and_the_cut(named_library, encoder) -> None:
    library = named_library
    vector = encoder.encode_text(["zanzibar"])[0]
    options = SearchOptions(k=8, fold=False)
    elsewhere = library.search_vector(vector, options, SearchFilter(folder="Okavango delta"), text="zanzibar")
    assert {result.hit.path for result in elsewhere.shown} == {NAMED[1], NAMED[2]}
    best = searched(library, encoder, "zanzibar", words=False).shown[0].hit.score
    above = dataclasses.replace(options, cut=Cut(min_similarity=best))
    cut = library.search_vector(vector, above, text="zanzibar")
    assert all(result.hit.score >= best for result in cut.shown) and NAMED[0] not in {r.hit.path for r in cut.shown}


def test_the_cli_says_what_matched_and_no_text_searches_clip_alone(named_library, run_cli, cli_env) -> None:
    found = json.loads(run_cli(cli_env, "search", "zanzibar", "--json", "--no-fold").stdout)
    assert found[0]["path"] == NAMED[0] and found[0]["matched"] == ["name: zanzibar"]
    alone = json.loads(run_cli(cli_env, "search", "zanzibar", "--json", "--no-fold", "--no-text").stdout)
    assert all(hit["matched"] == [] for hit in alone)
    table = run_cli(cli_env, "search", "zanzibar", "--no-fold").stdout
    assert "[name: zanzibar]" in table.splitlines()[0]


def test_an_index_of_the_previous_version_gains_the_words_without_encoding(
    named_library, client, downgrade_to_version_3, encoder
) -> None:
    library = named_library
    store = library.store()
    before = {key: client.hget(key, "vector") for key, _ in store.scan(("path",))}
    downgrade_to_version_3(client, store)
    assert not any(row.name_words for _, row in store.scan(("name_words",)))
    upgraded = PhotoStore.open(client, store.schema, create=True)
    assert upgraded.needs_upgrade

    def no_file(path: str, source: str) -> None:
        pytest.fail("the words come from the stored path and name: no file is read")

    assert upgrade(upgraded, no_file) == len(before)
    assert upgraded.schema.version == SCHEMA_VERSION
    assert {key: client.hget(key, "vector") for key in before} == before  # byte for byte
    rows = {row.path: row for _, row in upgraded.scan(("path", "name_words", "folder_words"))}
    assert rows[NAMED[0]].name_words == "img 2041 zanzibar lighthouse"
    assert rows[NAMED[1]].folder_words == "okavango delta"
    reopened = Library(library.settings, text_encoder=lambda: encoder)
    assert searched(reopened, encoder, "zanzibar").shown[0].hit.path == NAMED[0]


HOSTILE = st.text(alphabet=st.sampled_from([*"@|-{}()\"'~%:;*\\/ \t$[]<>!,.^_+", "é", "中", "İ", "ß", "a", "Z", "7"]))


@pytest.fixture
def hostile_store(client, settings):
    """An empty FLAT index that a test fills with hostile names."""
    from tests.integration.test_store import MODEL

    schema = IndexSchema.from_settings(dataclasses.replace(settings, algorithm="FLAT"), MODEL)
    return PhotoStore.open(client, schema, create=True)


@hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.one_of(HOSTILE, st.text(max_size=30)), min_size=1, max_size=6, unique=True), query=HOSTILE)
def test_any_name_is_found_by_its_words_and_any_query_is_safe(hostile_store, names: list[str], query: str) -> None:
    """Names and queries of any characters reach both backends and the cluster as words: each photo is found by
    the words of its name, and a query's words only ever match names that hold every one of them."""
    store = hostile_store
    vectors = np.eye(len(names), 512, dtype=np.float32)
    example = uuid.uuid4().hex  # a deleted photo may linger a moment in valkey-search's index: paths of its own
    keys = store.upsert(PhotoRecord(f"{example}-{i}.jpg", vectors[i], name=name) for i, name in enumerate(names))
    store.wait_indexed()
    held = [name_words(name or f"{example}-{i}.jpg").split() for i, name in enumerate(names)]  # no name: the file's
    try:
        for i, name in enumerate(names):
            if words := tuple(held[i][:MAX_QUERY_WORDS]):
                found = store.nearest_among(vectors[i], [SearchFilter(words=words)], 100)[0]
                assert keys[i] in {hit.key for hit in found}, (name, words)
        try:
            words = query_words(query)
        except BadQuery:
            return
        if words:
            [found] = store.nearest_among(vectors[0], [SearchFilter(words=words)], 100)
            expected = {keys[i] for i in range(len(names)) if set(words) <= set(held[i])}
            assert {hit.key for hit in found} & set(keys) == expected, (names, words)
    finally:
        store.delete(keys)


def test_the_page_says_what_matched_and_match_names_off_is_clip_alone(
    named_library, monkeypatch, search_server, settings, random_checkpoint, tmp_path
) -> None:
    for name in ("VALKEY_URL", "CLIPSEARCH_MODEL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        **search_server.environment(),
        "CLIPSEARCH_ALGORITHM": "FLAT",
        "CLIPSEARCH_INDEX": settings.index_name,
        "CLIPSEARCH_PRETRAINED": str(random_checkpoint),
        "CLIPSEARCH_PHOTOS": str(tmp_path / "collection"),
    }.items():
        monkeypatch.setenv(name, value)
    app = AppTest.from_file(APP, default_timeout=120)
    app.query_params["q"] = "zanzibar"
    app.run()
    assert not app.exception
    captions = [tile["caption"] for tile in gallery_tiles(app)]
    first = next(caption for caption in captions if caption.startswith("#1 "))
    assert "zanzibar" in first and "name: zanzibar" in first, first
    app.toggle(key="text").set_value(False).run()
    assert not any("name: zanzibar" in tile["caption"] for tile in gallery_tiles(app))
    assert any(button.label.startswith("names not matched") for button in app.button)
    linked = AppTest.from_file(APP, default_timeout=120)  # a shared link with the toggle off
    linked.query_params |= {"q": "zanzibar", "text": "false"}
    linked.run()
    assert not linked.exception and linked.toggle(key="text").value is False
    assert not any("name: zanzibar" in tile["caption"] for tile in gallery_tiles(linked))
