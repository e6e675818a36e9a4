"""Query arithmetic: the grammar, its errors, and the vector it stands for."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clipsearch.search.query import MAX_QUERY_CHARS, MAX_TERMS, MAX_WEIGHT, BadQuery, Term, combine, parse_query

BACKENDS = ("redisearch", "valkey-search", "cluster")  # the store's operations on a cluster too


@pytest.mark.parametrize(
    ("query", "terms"),
    [
        ("a dog on a chair", [Term("a dog on a chair")]),
        ("2:golden retriever + pool - 0.5:people", [Term("golden retriever", 2), Term("pool"), Term("people", -0.5)]),
        ("t-shirt - red", [Term("t-shirt"), Term("red", -1)]),  # no spaces round '-': one word
        ("12:30 train + 3:00 pm", [Term("12:30 train"), Term("3:00 pm")]),  # a time, not a weight
        ("- people + dog", [Term("people", -1), Term("dog")]),
        ("  cat  +  .5:kitten ", [Term("cat"), Term("kitten", 0.5)]),
        ("https://example.com/x", [Term("https://example.com/x")]),
    ],
)
def test_the_grammar(query: str, terms: list[Term]) -> None:
    assert parse_query(query) == terms


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("+ + x", "an operator without a term on both sides"),
        ("x +", "an operator without a term on both sides"),
        ("a + - b", "an operator without a term on both sides"),
        ("2x:dog", "the weight '2x' is not a number"),
        ("- people", "only negative terms"),
        ("-1:dog", "only negative terms"),
        ("   ", "the query is empty"),
    ],
)
def test_malformed_queries_are_explained(query: str, message: str) -> None:
    with pytest.raises(BadQuery, match=message):
        parse_query(query)


def test_terms_that_cancel_out_are_refused() -> None:
    vector = np.array([0.6, 0.8], dtype=np.float32)
    with pytest.raises(BadQuery, match="cancel each other out"):
        combine([vector, vector], [1.0, -1.0])


def test_cli_query_vector_is_the_weighted_sum_and_hits_equal_brute_force(
    cli_env: dict[str, str], run_cli, encoder, open_test_index, sample_photos: Path
) -> None:
    loaded = run_cli(cli_env, script="scripts/load_photos.py")
    assert loaded.returncode == 0, loaded.stderr
    store = open_test_index()
    rows = dict(store.scan(("path", "vector")))
    keys = list(rows)
    matrix = np.stack([rows[key].vector for key in keys])
    like = next(key for key in keys if rows[key].path == "chair.jpg")
    photo = sample_photos / "giraffe.jpg"
    query = "2:golden retriever + pool - 0.5:people"
    found = run_cli(cli_env, "search", query, "--image", str(photo), "--like", like, "--k", "8", "--json", "--no-dedup")
    assert found.returncode == 0, found.stderr
    texts = encoder.encode_text(["golden retriever", "pool", "people"])  # each term encoded on its own
    image = encoder.encode_images([encoder_photo(photo)])[0]
    expected = 2 * texts[0] + texts[1] - 0.5 * texts[2] + image + rows[like].vector
    expected /= np.linalg.norm(expected)
    scores = matrix @ expected
    best = np.argsort(-scores)[:8]
    hits = json.loads(found.stdout)
    assert [hit["key"] for hit in hits] == [keys[i] for i in best]
    np.testing.assert_allclose([hit["score"] for hit in hits], scores[best], atol=1e-5)

    without_people = run_cli(cli_env, "search", "- people", "--like", like, "--k", "3", "--json", "--no-dedup")
    assert without_people.returncode == 0, "with a photo, the words may be only negative"
    expected = rows[like].vector - texts[2]
    scores = matrix @ (expected / np.linalg.norm(expected))
    assert [hit["key"] for hit in json.loads(without_people.stdout)] == [keys[i] for i in np.argsort(-scores)[:3]]
    only_negative = run_cli(cli_env, "search", "- people")
    assert only_negative.returncode == 2 and "only negative terms" in only_negative.stderr

    bad = run_cli(cli_env, "search", "2x:dog + cat")
    assert bad.returncode == 2 and "the weight '2x' is not a number" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_cli(cli_env, "search", "--like", "no-such-key")
    assert missing.returncode == 2 and "no photo of index" in missing.stderr


def encoder_photo(path: Path):
    from clipsearch.ingest.decoding import DECODE_MARGIN, decode_photo

    return decode_photo(path.read_bytes(), at_least=DECODE_MARGIN * 224)


# --- bounded cost: queries come from strangers -------------------------------------------------

OLD_OPERATOR = re.compile(r"(?:^|\s+)([+-])\s+")
OLD_WEIGHT = re.compile(r"^([^\s:]*\d[^\s:]*):(?=[^\s\d])")
OLD_DANGLING = re.compile(r"^[+-](\s|$)|\s[+-]$")


def regex_grammar(query: str, with_photos: bool = False) -> list[Term]:
    """The grammar as the regular expressions of the first parser said it (with today's weight bound): exact,
    but quadratic on long runs of spaces or digits. The reference on short queries."""
    if not query.strip():
        raise BadQuery("the query is empty")
    pieces = OLD_OPERATOR.split(" " + query.strip())
    signed = [("+", pieces[0])] if pieces[0].strip() else []
    signed += list(zip(pieces[1::2], pieces[2::2], strict=True))
    terms = []
    for sign, raw in signed:
        text = raw.strip()
        if not text or OLD_DANGLING.search(text):
            raise BadQuery("an operator without a term on both sides")
        weight = 1.0
        if match := OLD_WEIGHT.match(text):
            try:
                weight = float(match.group(1))
            except ValueError:
                raise BadQuery("the weight is not a number") from None
            if abs(weight) > MAX_WEIGHT:  # the bound the new parser adds
                raise BadQuery("the weight is out of bounds")
            text = text[match.end() :].strip()
        terms.append(Term(" ".join(text.split()), -weight if sign == "-" else weight))
    if not with_photos and all(term.weight <= 0 for term in terms):
        raise BadQuery("only negative terms")
    return terms


def outcome(parse, query: str, with_photos: bool) -> list[Term] | str:
    try:
        return parse(query, with_photos)
    except BadQuery as error:
        return "BadQuery: " + str(error).split(": ")[-1].split(" (")[0]


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="ab1.:+- \t", max_size=24), st.booleans())
def test_the_parser_equals_the_regex_grammar_on_short_queries(query: str, with_photos: bool) -> None:
    expected = outcome(regex_grammar, query, with_photos)
    got = outcome(parse_query, query, with_photos)
    if isinstance(expected, str):  # refused too (a query with two faults may be refused for either)
        assert isinstance(got, str) and got.startswith("BadQuery: "), (query, expected, got)
    else:
        assert got == expected, query


CPU_BUDGET_S = 0.25  # per call; the quadratic parser took seconds on the hostile queries below


def within_budget(call, *args):
    """call(*args)'s value or BadQuery, and the CPU seconds it took."""
    started = time.process_time()
    try:
        value = call(*args)
    except BadQuery as error:
        value = error
    return value, time.process_time() - started


@pytest.mark.parametrize(
    "query",
    [
        "a" + " " * 60_000 + "b",  # spaces: the operator pattern backtracked over every run
        "a" + " +" * 30_000 + " b",
        "1" * 16_000 + "x",  # digits: the weight pattern did
        "1" * 16_000 + ":dog",
        " + ".join(f"dog{i}" for i in range(4000)),  # 4,000 terms, each one a text to encode
        "x" * 90_000,
    ],
    ids=["spaces", "operators", "digits", "digit-weight", "4000-terms", "90k-letters"],
)
def test_hostile_queries_are_refused_at_once(query: str) -> None:
    value, seconds = within_budget(parse_query, query)
    assert isinstance(value, BadQuery)
    assert seconds < CPU_BUDGET_S, seconds


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    st.one_of(
        st.text(max_size=3000),
        st.builds(lambda unit, n: unit * n, st.sampled_from([" ", "1", " + ", "1:", "- ", "\t", "é", "9e9:"]),
                  st.integers(0, 40_000)),
    ),
    st.booleans(),
)  # fmt: skip
def test_any_query_is_parsed_or_refused_within_budget(query: str, with_photos: bool) -> None:
    value, seconds = within_budget(parse_query, query, with_photos)
    assert seconds < CPU_BUDGET_S, (len(query), seconds)
    if not isinstance(value, BadQuery):
        assert 1 <= len(value) <= MAX_TERMS
        assert all(math.isfinite(term.weight) and abs(term.weight) <= MAX_WEIGHT for term in value)


@pytest.mark.parametrize("weight", ["1e39", "1e309", "-1e39", "101", "nan1"])
def test_absurd_weights_are_refused(weight: str) -> None:
    with pytest.raises(BadQuery, match="weight"):
        parse_query(f"{weight}:dog + cat")


def test_limits_are_inclusive() -> None:
    assert len(parse_query(" + ".join(["dog"] * MAX_TERMS))) == MAX_TERMS
    assert parse_query(f"{MAX_WEIGHT:g}:dog")[0].weight == MAX_WEIGHT
    assert parse_query("d" * MAX_QUERY_CHARS)[0].text == "d" * MAX_QUERY_CHARS
    with pytest.raises(BadQuery, match="at most"):
        parse_query("d" * (MAX_QUERY_CHARS + 1))


def test_a_sum_that_overflows_is_refused() -> None:
    unit = np.ones(4, dtype=np.float32) / 2
    with np.errstate(over="ignore"), pytest.raises(BadQuery, match="finite"):
        combine([unit, unit], [3e38, 3e38])
