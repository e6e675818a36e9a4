"""Groups of near-identical photos in the index: the same shot resized, re-encoded, converted or lightly
edited. Each photo's neighbours come from the index's own KNN (pipelined, a batch of photos per round trip),
so nothing compares all pairs here; photos linked by a similarity at or above the threshold, directly or
through one another, form a group.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from clipsearch.store import PHOTO_FIELDS, VECTOR_FIELD, Hit, PhotoStore

NEIGHBOURS = 8  # asked for each photo; one whose every neighbour is a duplicate is asked again with more
BATCH = 64  # photos per pipelined round trip


@dataclass(frozen=True)
class DuplicateGroup:
    """Near-identical photos, the one to keep first (the most pixels, then the largest file); each member's
    score is its similarity to that first photo."""

    members: list[Hit]


@dataclass(frozen=True)
class DuplicateReport:
    groups: list[DuplicateGroup]  # largest first
    photos: int  # photos checked
    seconds: float

    @property
    def rate(self) -> float:
        """Photos checked per second."""
        return self.photos / self.seconds if self.seconds > 0 else 0.0

    @property
    def duplicates(self) -> int:
        """Photos that could go: every member of a group but its first."""
        return sum(len(group.members) - 1 for group in self.groups)


def find_duplicates(
    store: PhotoStore,
    similarity: float,
    fields: Sequence[str] = PHOTO_FIELDS,
    on_progress: Callable[[int, int], None] | None = None,
) -> DuplicateReport:
    """Every group of photos linked by a similarity of at least `similarity`, largest first, with `fields`
    read for each member. `on_progress(done, total)` is called after each batch."""
    check_similarity(similarity)
    started = time.perf_counter()
    total = store.count()
    links = _Links()
    done = 0
    batch: list[tuple[str, np.ndarray]] = []

    def check(batch: list[tuple[str, np.ndarray]]) -> int:
        for (key, vector), found in zip(batch, store.neighbours([v for _, v in batch], NEIGHBOURS + 1), strict=True):
            links.add(key, _duplicates_of(store, key, vector, found, similarity, total))
        if on_progress is not None:
            on_progress(min(done + len(batch), total), total)
        return len(batch)

    for key, row in store.scan((VECTOR_FIELD,)):
        if row[VECTOR_FIELD] is None or len(row[VECTOR_FIELD]) != store.schema.model.dim:
            continue  # not a photo this index can search with
        batch.append((key, row[VECTOR_FIELD]))
        if len(batch) >= BATCH:
            done += check(batch)
            batch = []
    if batch:
        done += check(batch)
    groups = [_group(store, keys, fields) for keys in links.groups()]
    groups.sort(key=lambda group: (-len(group.members), group.members[0].path))
    return DuplicateReport(groups, done, time.perf_counter() - started)


def check_similarity(similarity: float) -> None:
    """What makes photos near-duplicates must be a cosine similarity above 0 and at most 1."""
    if not 0.0 < similarity <= 1.0:
        raise ValueError(f"the duplicate similarity must be above 0 and at most 1, not {similarity}")


def _duplicates_of(
    store: PhotoStore, key: str, vector: np.ndarray, found: list[tuple[str, float]], similarity: float, total: int
) -> list[str]:
    """The keys at least `similarity` to the photo, asking again with more neighbours while all are."""
    asked = NEIGHBOURS + 1
    while len(found) == asked and found[-1][1] >= similarity and asked < total:
        asked = min(total, asked * 4)
        [found] = store.neighbours([vector], asked)
    return [other for other, score in found if score >= similarity and other != key]


def _group(store: PhotoStore, keys: list[str], fields: Sequence[str]) -> DuplicateGroup:
    wanted = list(dict.fromkeys([*fields, VECTOR_FIELD, "width", "height", "size", "path"]))
    rows = [(key, row) for key, row in zip(keys, store.get(keys, wanted), strict=True) if row is not None]
    rows.sort(
        key=lambda pair: (-(pair[1]["width"] or 0) * (pair[1]["height"] or 0), -(pair[1]["size"] or 0), pair[1]["path"])
    )
    first = rows[0][1][VECTOR_FIELD]
    members = [Hit(key, float(np.dot(row[VECTOR_FIELD], first)), row) for key, row in rows]
    return DuplicateGroup([members[0], *sorted(members[1:], key=lambda hit: -hit.score)])


class _Links:
    """Which photos are linked, directly or through others (union-find)."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def root(self, key: str) -> str:
        self.parent.setdefault(key, key)
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def add(self, key: str, others: list[str]) -> None:
        for other in others:
            self.parent[self.root(other)] = self.root(key)

    def groups(self) -> list[list[str]]:
        members: dict[str, list[str]] = {}
        for key in list(self.parent):
            members.setdefault(self.root(key), []).append(key)
        return [keys for keys in members.values() if len(keys) > 1]
