"""Duplicate grouping as pure logic: connected components of similar pairs, groups at a threshold, and one scan
shared by concurrent callers. No server, no model (tests/integration/test_results.py groups real photos in a
real index)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clipsearch.search.duplicates import SimilarPairs, _both_ways, connected_labels
from clipsearch.sharing import Shared


def union_find_groups(count: int, edges: list[tuple[int, int]]) -> set[frozenset[int]]:
    parent = list(range(count))

    def root(node: int) -> int:
        while parent[node] != node:
            node = parent[node]
        return node

    for a, b in edges:
        parent[root(a)] = root(b)
    groups: dict[int, set[int]] = {}
    for node in range(count):
        groups.setdefault(root(node), set()).add(node)
    return {frozenset(group) for group in groups.values()}


def graphs(count: int) -> st.SearchStrategy[tuple[int, list[tuple[int, int]]]]:
    node = st.integers(0, count - 1)
    return st.tuples(st.just(count), st.lists(st.tuples(node, node)))


@given(st.integers(1, 60).flatmap(graphs))
def test_connected_labels_equal_a_union_find(graph: tuple[int, list[tuple[int, int]]]) -> None:
    count, edges = graph
    first = np.array([a for a, _ in edges], dtype=np.int64)
    second = np.array([b for _, b in edges], dtype=np.int64)
    labels = connected_labels(count, first, second)
    groups: dict[int, set[int]] = {}
    for node, label in enumerate(labels.tolist()):
        groups.setdefault(label, set()).add(node)
    assert {frozenset(group) for group in groups.values()} == union_find_groups(count, edges)
    assert all(label == min(groups[label]) for label in groups), "each group is labelled by its smallest photo"


def pairs(edges: list[tuple[int, int, float]], floor: float = 0.9) -> SimilarPairs:
    first, second, similarity = zip(*edges, strict=True)
    return SimilarPairs(
        keys=[f"k{i}" for i in range(8)],
        first=np.array(first),
        second=np.array(second),
        similarity=np.array(similarity, dtype=np.float32),
        floor=floor,
        photos=8,
        seconds=0.0,
    )


def test_groups_at_a_threshold_keep_only_the_pairs_that_reach_it() -> None:
    found = pairs([(0, 1, 0.99), (1, 2, 0.95), (3, 4, 0.92), (5, 6, 0.999), (6, 5, 0.999), (2, 7, 0.9)])
    assert found.groups(0.9) == [[0, 1, 2, 7], [3, 4], [5, 6]]
    assert found.groups(0.95) == [[0, 1, 2], [5, 6]]
    assert found.groups(0.99) == [[0, 1], [5, 6]]
    assert found.groups(1.0) == []
    with pytest.raises(ValueError, match="found at 0.9 or more"):
        found.groups(0.8)


@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9), st.floats(0.9, 1.0))))
def test_a_pair_found_from_one_side_counts_both_ways_once(found: list[tuple[int, int, float]]) -> None:
    """HNSW can leave a near-copy that the others' searches do not reach: its own search still finds the pair."""
    found = [(a, b, score) for a, b, score in found if a != b]
    both = _both_ways(found)
    directed = [(a, b) for a, b, _ in both]
    assert len(directed) == len(set(directed)), "each direction once"
    assert set(directed) == {(a, b) for a, b, _ in found} | {(b, a) for a, b, _ in found}
    scores = {(a, b): score for a, b, score in both}
    assert all(scores[(a, b)] in {s for x, y, s in found if {x, y} == {a, b}} for a, b in directed)


def test_one_scan_serves_every_caller_that_asks_while_it_runs() -> None:
    shared: Shared[SimilarPairs] = Shared(kept=2)
    started, release = threading.Event(), threading.Event()
    scanned: list[str] = []
    result = pairs([(0, 1, 0.99)])

    def slow_scan() -> SimilarPairs:
        scanned.append("a")
        started.set()
        release.wait(10)
        return result

    got: list[SimilarPairs] = []
    callers = [threading.Thread(target=lambda: got.append(shared.make("a", slow_scan))) for _ in range(4)]
    callers[0].start()
    started.wait(10)
    for caller in callers[1:]:
        caller.start()
    release.set()
    for caller in callers:
        caller.join()
    assert scanned == ["a"] and got == [result] * 4
    for key in ("b", "c"):
        shared.make(key, lambda: result)
    assert shared.get("a") is None and shared.get("c") is result, "the oldest goes past `kept`"


def test_a_value_that_goes_is_released_and_made_again_when_asked() -> None:
    released: list[str] = []
    shared: Shared[str] = Shared(kept=1, on_drop=released.append)
    assert shared.make("a", lambda: "client a") == "client a"
    assert shared.make("a", lambda: "another") == "client a", "made once per key"
    shared.make("b", lambda: "client b")
    assert released == ["client a"] and shared.get("a") is None
    shared.drop("b")
    assert released == ["client a", "client b"]
    assert shared.make("b", lambda: "client b again") == "client b again"
