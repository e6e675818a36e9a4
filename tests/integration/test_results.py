"""Near-duplicates folded and grouped, variety (MMR) and the adaptive cut, with the real (random) model and a
real server. Thresholds come from measured similarities of the random model (conftest.PLANTED)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clipsearch.index.schema import PHOTO_FIELDS
from clipsearch.index.store import PhotoStore
from clipsearch.ingest.loader import LoadOptions, PhotoLoader
from clipsearch.search.duplicates import find_duplicates
from clipsearch.search.results import Cut, SearchOptions, find

BACKENDS = ("redisearch", "valkey-search", "cluster")  # the store's operations on a cluster too


@pytest.fixture
def planted_store(open_test_index, encoder, photo_folder: Path, planted_duplicates: dict[str, list[str]]):
    store = open_test_index()
    PhotoLoader(store, lambda: encoder, LoadOptions(), show_bar=False).index_folder(photo_folder)
    return store


def all_vectors(store: PhotoStore) -> tuple[list[str], list[str], np.ndarray]:
    rows = list(store.scan(("path", "vector")))
    return [key for key, _ in rows], [row.path for _, row in rows], np.stack([row.vector for _, row in rows])


def planted_groups(planted: dict[str, list[str]]) -> list[set[str]]:
    return [{original, *copies} for original, copies in planted.items()]


def test_the_planted_copies_are_measured_apart_from_distinct_photos(
    planted_store: PhotoStore, planted_duplicates: dict[str, list[str]]
) -> None:
    """The precondition of every test here: copies above the threshold, distinct photos below it."""
    _, paths, vectors = all_vectors(planted_store)
    similarities = vectors @ vectors.T
    group_of = {path: i for i, group in enumerate(planted_groups(planted_duplicates)) for path in group}
    for a in range(len(paths)):
        for b in range(a + 1, len(paths)):
            same = group_of.get(paths[a], -1 - a) == group_of.get(paths[b], -1 - b)
            if same:
                assert similarities[a, b] >= 0.993, (paths[a], paths[b])
            else:
                assert similarities[a, b] <= 0.985, (paths[a], paths[b])


def test_search_folds_the_copies_under_the_best_and_still_shows_k_photos(
    planted_store: PhotoStore, planted_duplicates: dict[str, list[str]], planted_similarity: float
) -> None:
    keys, paths, _ = all_vectors(planted_store)
    for group in planted_groups(planted_duplicates):
        query = planted_store.vector_of(keys[paths.index(sorted(group)[0])])
        folded = find(planted_store, query, SearchOptions(k=6, duplicate_similarity=planted_similarity))
        first = folded.shown[0]
        assert {first.hit.path, *(hit.path for hit in first.near_duplicates)} == group
        assert [hit.score for hit in first.near_duplicates] == sorted(
            (hit.score for hit in first.near_duplicates), reverse=True
        )
        assert len(folded.shown) == 6, "the index was asked for enough candidates to fill k"
        planted = planted_groups(planted_duplicates)
        for result in folded.shown[1:]:  # other photos, with only their own copies folded under them
            assert result.hit.path not in group
            assert any(
                {result.hit.path, *(hit.path for hit in result.near_duplicates)} <= other for other in planted
            ) or (not result.near_duplicates)

        plain = find(planted_store, query, SearchOptions(k=6, fold=False))
        assert {result.hit.path for result in plain.shown[: len(group)]} == group, "without folding, copies fill k"


def test_folding_equals_a_greedy_fold_of_brute_force(planted_store: PhotoStore, encoder) -> None:
    """At 0.95 the random model folds about half of these photos (measured: 21 of 45 stay results for this
    query), so the first candidates cannot fill k and the index must be asked again."""
    keys, _, vectors = all_vectors(planted_store)
    query = encoder.encode_text(["a quiet harbour"])[0]
    order = np.argsort(-(vectors @ query), kind="stable")
    heads: list[int] = []
    members: dict[int, list[int]] = {}
    for i in order:
        similar = [(float(vectors[i] @ vectors[h]), h) for h in heads]
        best = max(similar, default=(-1.0, -1))
        if best[0] >= 0.95:
            members[best[1]].append(int(i))
        else:
            heads.append(int(i))
            members[int(i)] = []
    k, first_ask = 20, 40  # SearchOptions asks for max(k + 20, 2k) candidates first
    rank = {int(i): r for r, i in enumerate(order)}
    assert sum(rank[h] < first_ask for h in heads) <= k < len(heads), "measured: the first ask cannot fill k"
    found = find(planted_store, query, SearchOptions(k=k, duplicate_similarity=0.95))
    assert [result.hit.key for result in found.shown] == [keys[h] for h in heads[:k]]
    assert len(found.scores) > first_ask, "the index was asked again, for more candidates"
    for result in found.shown:
        head = keys.index(result.hit.key)
        assert sorted(keys.index(hit.key) for hit in result.near_duplicates) == sorted(members[head])


def direct_mmr(vectors: np.ndarray, query: np.ndarray, k: int, diversity: float) -> list[int]:
    """Maximal marginal relevance as Carbonell and Goldstein wrote it, one candidate at a time."""
    chosen: list[int] = []
    while len(chosen) < min(k, len(vectors)):
        best, best_value = -1, -np.inf
        for i in range(len(vectors)):
            if i in chosen:
                continue
            redundancy = max((float(vectors[i] @ vectors[j]) for j in chosen), default=0.0)
            value = (1 - diversity) * float(vectors[i] @ query) - diversity * redundancy
            if value > best_value:
                best, best_value = i, value
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("diversity", [0.0, 0.3, 0.7, 1.0])
def test_variety_reranks_the_candidates_by_mmr(planted_store: PhotoStore, encoder, diversity: float) -> None:
    query = encoder.encode_text(["a beach"])[0]
    found = find(planted_store, query, SearchOptions(k=10, fold=False, variety=diversity))
    pool = planted_store.nearest(query, k=40, fields=("vector",))  # SearchOptions' pool: 4 per result wanted
    expected = direct_mmr(np.stack([hit.photo.vector for hit in pool]), query, 10, diversity)
    assert [result.hit.key for result in found.shown] == [pool[i].key for i in expected]
    if diversity == 0.0:
        assert [result.hit.key for result in found.shown] == [hit.key for hit in pool[:10]]
    else:
        assert [result.hit.key for result in found.shown] != [hit.key for hit in pool[:10]]


def test_the_relative_cut_hides_what_lies_more_than_delta_under_the_best(planted_store: PhotoStore, encoder) -> None:
    query = encoder.encode_text(["a red door"])[0]
    scores = [hit.score for hit in planted_store.nearest(query, k=34)]
    delta = (scores[0] - scores[3] + scores[0] - scores[4]) / 2  # between the 4th and the 5th: measured
    found = find(planted_store, query, SearchOptions(k=20, fold=False, cut=Cut(below_best=delta)))
    assert [result.hit.score for result in found.shown] == pytest.approx(scores[:4], abs=1e-6)
    assert found.threshold == pytest.approx(scores[0] - delta)
    assert found.hidden == len(found.scores) - 4 and not found.more
    both = find(
        planted_store, query, SearchOptions(k=20, fold=False, cut=Cut(min_similarity=scores[1], below_best=delta))
    )
    assert len(both.shown) == 2, "the stricter of the two cuts applies"


def test_duplicates_groups_the_planted_copies_and_nothing_else(
    planted_store: PhotoStore, planted_duplicates: dict[str, list[str]], planted_similarity: float
) -> None:
    seen: list[tuple[int, int]] = []
    report = find_duplicates(
        planted_store, planted_similarity, on_progress=lambda done, total: seen.append((done, total))
    )
    expected = planted_groups(planted_duplicates)
    assert sorted(({hit.path for hit in group.members} for group in report.groups), key=len, reverse=True) == sorted(
        expected, key=len, reverse=True
    )
    assert [len(group.members) for group in report.groups] == [5, 3, 3], "largest first"
    assert report.photos == planted_store.count() and report.duplicates == 2 + 2 + 4
    assert seen[-1] == (report.photos, report.photos)
    for group in report.groups:
        first = group.members[0]
        assert first.score == pytest.approx(1.0, abs=1e-5)
        assert first.photo.width * first.photo.height == max(h.photo.width * h.photo.height for h in group.members)
        assert all(hit.score >= planted_similarity for hit in group.members)
        assert [hit.score for hit in group.members[1:]] == sorted(
            (hit.score for hit in group.members[1:]), reverse=True
        )


def test_a_group_larger_than_the_first_ask_is_found_whole(
    open_test_index, encoder, photo_folder: Path, planted_similarity: float
) -> None:
    """Fourteen copies of one photo: each photo's first ask (8 neighbours) is all duplicates, so it asks again."""
    store = open_test_index()
    for i in range(13):
        (photo_folder / f"copy-{i:02d}.jpg").write_bytes((photo_folder / "kingfisher.jpg").read_bytes() + bytes(i + 1))
    PhotoLoader(store, lambda: encoder, LoadOptions(), show_bar=False).index_folder(photo_folder)
    [group] = [group for group in find_duplicates(store, planted_similarity).groups if len(group.members) > 3]
    assert len(group.members) == 14

    options = SearchOptions(k=3, duplicate_similarity=planted_similarity)
    folded = find(store, store.vector_of(group.members[0].key), options, fields=(*PHOTO_FIELDS, "thumbnail")).shown[0]
    assert len(folded.near_duplicates) == 13
    assert folded.hit.photo.thumbnail, "the result in full"
    assert all(hit.photo.thumbnail is None and hit.path for hit in folded.near_duplicates), "the folded: named only"


def test_cli_duplicates_and_search_flags(
    cli_env: dict[str, str],
    run_cli,
    photo_folder: Path,
    planted_duplicates: dict[str, list[str]],
    planted_similarity: float,
) -> None:
    assert run_cli(cli_env, "index", str(photo_folder)).returncode == 0
    shown = run_cli(cli_env, "duplicates", "--threshold", str(planted_similarity))
    assert shown.returncode == 0, shown.stderr
    assert "3 groups of near-duplicates" in shown.stdout and "photos/s" in shown.stdout
    as_json = run_cli(cli_env, "duplicates", "--threshold", str(planted_similarity), "--json")
    groups = json.loads(as_json.stdout)
    assert [len(group) for group in groups] == [5, 3, 3]
    assert {frozenset(row["path"] for row in group) for group in groups} == set(
        map(frozenset, planted_groups(planted_duplicates))
    )
    assert all({"key", "path", "score"} <= set(row) for group in groups for row in group)

    navajo = next(row for group in groups for row in group if row["path"] == "monuments-navajo.jpg")
    folded = json.loads(
        run_cli(cli_env, "search", "--like", navajo["key"], "--k", "3", "--json",
                "--dedup-similarity", str(planted_similarity)).stdout
    )  # fmt: skip
    assert len(folded[0]["near_duplicates"]) == 4 and len(folded) == 3
    assert {folded[0]["path"], *(row["path"] for row in folded[0]["near_duplicates"])} == {
        "monuments-navajo.jpg", *planted_duplicates["monuments-navajo.jpg"]
    }  # fmt: skip
    plain = json.loads(run_cli(cli_env, "search", "--like", navajo["key"], "--k", "3", "--json", "--no-fold").stdout)
    assert all(row["near_duplicates"] == [] for row in plain) and len(plain) == 3
    varied = run_cli(cli_env, "search", "--like", navajo["key"], "--no-fold", "--variety", "0.5", "--k", "3")
    assert varied.returncode == 0 and len(varied.stdout.splitlines()) == 3
    old_names = run_cli(cli_env, "search", "--like", navajo["key"], "--no-dedup", "--diversity", "0.5", "--k", "3")
    assert old_names.stdout == varied.stdout, "the options' names before one name per idea still work"
    bad = run_cli(cli_env, "search", "x", "--variety", "2")
    assert bad.returncode == 2 and "not between 0 and 1" in bad.stderr


def test_options_and_cuts_are_checked() -> None:
    assert Cut().threshold(0.3) is None
    assert Cut(min_similarity=0.2).threshold(0.3) == 0.2
    assert Cut(below_best=0.05).threshold(0.3) == pytest.approx(0.25)
    assert Cut(min_similarity=0.28, below_best=0.05).threshold(0.3) == 0.28
    for bad in (
        {"k": 0},
        {"variety": 1.5},
        {"variety": -0.1},
        {"duplicate_similarity": 0.0},
        {"duplicate_similarity": 1.2},
        {"order": "random"},
    ):
        with pytest.raises(ValueError):
            SearchOptions(**bad)  # type: ignore[arg-type]
