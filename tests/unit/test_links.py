"""Shared links as strangers write them: every URL parameter the page reads, held to its bounds at a bounded
cost, and what the page then does with it raises nothing but clipsearch's own errors. No server, no model."""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clipsearch.index.filters import SearchFilter
from clipsearch.ingest.places import DEFAULT_WITHIN_KM, Near, parse_position
from clipsearch.links import PARAMS, held_link
from clipsearch.search.query import BadQuery, parse_query

ROOT = Path(__file__).resolve().parents[2]
CPU_BUDGET_S = 0.25

# Generated values, and the adversarial ones the issue found: long runs of what the old parser backtracked
# over, huge numbers, non-finite numbers, impossible dates, markup, control characters.
VALUES = st.one_of(
    st.text(max_size=300),
    st.from_regex(r"-?\d{1,40}(\.\d{0,40})?(e[+-]?\d{1,4})?", fullmatch=True),
    st.sampled_from(["nan", "inf", "-inf", "1e309", "1e39:dog + cat", "9999-99-99", "0000-01-01", "2021-02-30",
                     "true", "false", "relative", "newest", "duplicates", "", " ", "/ /", "\t", "\x00", "<b>x</b>"]),
    st.builds(lambda unit, n: unit * n, st.sampled_from([" ", "1", " + ", "a", "é", "9", "{", "\\"]),
              st.integers(1, 90_000)),
)  # fmt: skip


def page_reads(held: dict[str, str]) -> None:
    """What the page does with a held link before it asks the server anything: parse the words, build the
    filter's query, and read the numbers and choices."""
    for name in ("q", "also"):
        if name in held:
            with contextlib.suppress(BadQuery):
                parse_query(held[name], with_photos=name == "also")
    near = None
    if "near" in held:
        near = Near(*parse_position(held["near"]), float(held.get("within", DEFAULT_WITHIN_KM)))
    where = SearchFilter.of_days(
        held.get("after"), held.get("before"), held.get("folder"), held.get("camera"), held.get("place"), near
    )
    assert len(where.query()) < 6 * 256 + 400
    for name in ("k", "cols", "pages"):
        if name in held:
            assert PARAMS[name].low <= int(held[name]) <= PARAMS[name].high
    for name in ("variety", "min", "below", "dup"):
        if name in held:
            assert PARAMS[name].low <= float(held[name]) <= PARAMS[name].high


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.dictionaries(st.sampled_from([*PARAMS, "embed", "x" * 40, ""]), VALUES, max_size=len(PARAMS) + 2))
def test_any_link_is_held_and_read_within_budget(link: dict[str, str]) -> None:
    started = time.process_time()
    held = held_link(link)
    page_reads(held)
    assert time.process_time() - started < CPU_BUDGET_S
    assert set(held) <= set(PARAMS) and set(held) <= set(link)
    for name, value in held.items():
        param = PARAMS[name]
        assert len(value) <= param.max_chars
        if param.kind == "choice":
            assert value in param.choices
        if param.kind != "text":
            assert value == link[name], "only text is cut; anything else is kept whole or dropped"


@pytest.mark.parametrize(
    ("link", "held"),
    [
        ({"q": "a dog", "k": "30", "variety": "0.5", "after": "2021-07-14"},) * 2,
        ({"k": "0", "cols": "9", "below": "0.31", "min": "nan", "dup": "1e309", "pages": "1001"}, {}),
        ({"cut": "bogus", "order": "sideways", "dedup": "maybe", "view": "admin"}, {}),
        ({"after": "9999-99-99", "before": "2021-02-30"}, {}),
        ({"q": "x" * 90_000, "folder": "f" * 5_000}, {"q": "x" * 1000, "folder": "f" * 256}),
        ({"unknown": "1", "q": "cat"}, {"q": "cat"}),
        ({"place": "São Paulo", "near": "35.01,135.77", "within": "25"},) * 2,
        ({"near": "91,0", "within": "0"}, {}),
        ({"near": "1,2,3", "within": "20001"}, {}),
        ({"near": "nan,0", "within": "nan", "place": "p" * 300}, {"place": "p" * 256}),
    ],
)
def test_links_held_to_their_bounds(link: dict[str, str], held: dict[str, str]) -> None:
    assert held_link(link) == held


def test_the_page_reads_no_parameter_the_table_lacks() -> None:
    """Every widget bound to the URL and every parameter the page reads itself is in clipsearch.links.PARAMS."""
    page = "\n".join(path.read_text(encoding="utf-8") for path in sorted((ROOT / "clipsearch" / "app").glob("*.py")))
    bound = set(re.findall(r'key="(\w+)",\s*bind="query-params"', page))
    read = set(re.findall(r'query_params(?:\.get\(|\[)"(\w+)"', page)) | {"view"}  # read as `old` in main
    assert len(bound) == page.count('bind="query-params"'), "each bound widget names its key just before bind"
    assert bound | read == set(PARAMS), (bound | read) ^ set(PARAMS)


def test_old_names_are_read_under_their_new_ones() -> None:
    """Links shared before one name per idea still reproduce their search."""
    old = {"cols": "2", "min": "0.3", "below": "0.1", "dedup": "false", "dup": "0.97", "q": "cat"}
    assert held_link(old) == {
        "columns": "2", "min_similarity": "0.3", "below_best": "0.1", "fold": "false", "duplicate_similarity": "0.97",
        "q": "cat",
    }  # fmt: skip
    assert held_link({"columns": "3", "cols": "5"}) == {"columns": "3"}, "the new name wins when both are given"
    assert held_link({"cols": "99"}) == {}, "an old name is held to the new one's bounds"
