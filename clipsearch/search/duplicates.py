"""Groups of near-identical photos in the index: the same shot resized, re-encoded, converted or lightly
edited. Photos linked by a similarity at or above the threshold, directly or through one another, form a
group. How the similar pairs are found depends on the index (docs/benchmarks.md has the measurements):
an HNSW index answers each photo's KNN in about a millisecond, so each photo's neighbours come from the
index (pipelined, a batch of photos per round trip); a FLAT index would compare each photo with every other
inside the server, one query at a time, so instead the vectors are read once, in a scan, and compared here
in blocks (exact, with memory bounded by the vectors and one block of similarities).

The scan keeps every similar pair it finds at or above a floor (SimilarPairs), so that groups at any
threshold above the floor come from memory: a page scans once per index version, whatever threshold each
visitor picks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from clipsearch.index.schema import PHOTO_FIELDS, VECTOR_FIELD, Photo
from clipsearch.index.store import Hit, PhotoStore

NEIGHBOURS = 8  # asked for each photo; one whose every neighbour is a duplicate is asked again with more
BATCH = 64  # photos per pipelined round trip
BLOCK = 2048  # photos per side of a block of similarities compared at once (16 MiB of float32)
ORDER_FIELDS = ("width", "height", "size", "path")  # what puts a group's members in order


@dataclass(frozen=True)
class DuplicateGroup:
    """Near-identical photos, the one to keep first (the most pixels, then the largest file); each member's
    score is its similarity to that first photo. `size` counts every member, also those not read."""

    members: list[Hit]
    size: int


@dataclass(frozen=True)
class DuplicateReport:
    groups: list[DuplicateGroup]  # largest first; the first `groups_read` of them, if it was given
    sizes: list[int]  # of every group, largest first
    photos: int  # photos checked
    seconds: float
    capped: int = 0  # photos linked to their nearest neighbours only (SimilarPairs.capped)

    @property
    def rate(self) -> float:
        """Photos checked per second."""
        return self.photos / self.seconds if self.seconds > 0 else 0.0

    @property
    def duplicates(self) -> int:
        """Photos that could go: every member of a group but its first."""
        return sum(size - 1 for size in self.sizes)


@dataclass(frozen=True)
class SimilarPairs:
    """Pairs of photos (indexes into `keys`) at least `floor` similar, as far as each photo's neighbours were
    read: all of them, or its `max_neighbours` nearest (then `capped` counts the photos that had more)."""

    keys: list[str]
    first: np.ndarray
    second: np.ndarray
    similarity: np.ndarray
    floor: float
    photos: int
    seconds: float
    capped: int = 0

    def groups(self, similarity: float) -> list[list[int]]:
        """The photos linked by pairs at least `similarity` similar, directly or through others: each group's
        indexes, largest group first."""
        if similarity < self.floor:
            raise ValueError(f"these pairs were found at {self.floor} or more, not at {similarity}")
        kept = self.similarity >= similarity
        labels = connected_labels(len(self.keys), self.first[kept], self.second[kept])
        members: dict[int, list[int]] = {}
        for index in np.unique(np.concatenate([self.first[kept], self.second[kept]])).tolist():
            members.setdefault(int(labels[index]), []).append(index)
        return sorted(members.values(), key=len, reverse=True)


def connected_labels(count: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """For each of `count` nodes, the smallest node it is linked to through the edges (first[i], second[i]):
    hooking each edge's larger label to its smaller, then pointer jumping, in numpy until nothing moves."""
    labels = np.arange(count)
    while True:
        low = np.minimum(labels[first], labels[second])
        hooked = labels.copy()
        np.minimum.at(hooked, labels[first], low)
        np.minimum.at(hooked, labels[second], low)
        while not np.array_equal(jumped := hooked[hooked], hooked):
            hooked = jumped
        if np.array_equal(hooked, labels):
            return labels
        labels = hooked


def similar_pairs(
    store: PhotoStore,
    floor: float,
    max_neighbours: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> SimilarPairs:
    """Every pair of the index's photos at least `floor` similar: of each photo, all the photos that similar,
    or its `max_neighbours` most similar of them (None: no limit). A FLAT index's vectors are compared in
    blocks here, an HNSW index is asked each photo's KNN. `on_progress(done, total)` is called as it goes."""
    check_similarity(floor)
    if store.schema.algorithm == "FLAT":
        return _compared_in_blocks(store, floor, max_neighbours, on_progress)
    return _through_the_index(store, floor, max_neighbours, on_progress)


def _compared_in_blocks(
    store: PhotoStore, floor: float, max_neighbours: int | None, on_progress: Callable[[int, int], None] | None
) -> SimilarPairs:
    """The vectors read in one scan, then each block of photos compared with every photo, a block at a time."""
    started = time.perf_counter()
    keys: list[str] = []
    vectors: list[np.ndarray] = []
    for key, photo in store.scan((VECTOR_FIELD,)):
        if photo.vector is not None and len(photo.vector) == store.schema.model.dim:
            keys.append(key)
            vectors.append(photo.vector)
    matrix = np.stack(vectors).astype(np.float32, copy=False) if vectors else np.empty((0, store.schema.model.dim))
    del vectors
    columns: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    capped = 0
    for start in range(0, len(keys), BLOCK):
        block = matrix[start : start + BLOCK]
        row, column, score = [], [], []
        # Capped, each photo needs all its pairs at once; uncapped, a block pair is compared once (the blocks
        # from this one on) and each pair found above the diagonal of blocks stands for both directions.
        for across in range(0 if max_neighbours is not None else start, len(keys), BLOCK):
            similarity = block @ matrix[across : across + BLOCK].T
            at_row, at_column = np.nonzero(similarity >= floor)
            distinct = start + at_row != across + at_column
            pair = (start + at_row[distinct], across + at_column[distinct])
            value = similarity[at_row[distinct], at_column[distinct]]
            mirrored = max_neighbours is None and across != start
            row.extend([pair[0], pair[1]] if mirrored else [pair[0]])
            column.extend([pair[1], pair[0]] if mirrored else [pair[1]])
            score.extend([value, value] if mirrored else [value])
        found = [np.concatenate(part) for part in (row, column, score)]
        if max_neighbours is not None:
            kept, more = _most_similar(found[0], found[2], max_neighbours)
            found, capped = [part[kept] for part in found], capped + more
        rows.append(found[0])
        columns.append(found[1])
        scores.append(found[2])
        if on_progress is not None:
            on_progress(min(start + BLOCK, len(keys)), len(keys))
    return SimilarPairs(
        keys=keys,
        first=np.concatenate(rows).astype(np.int64) if rows else np.empty(0, np.int64),
        second=np.concatenate(columns).astype(np.int64) if columns else np.empty(0, np.int64),
        similarity=np.concatenate(scores).astype(np.float32) if scores else np.empty(0, np.float32),
        floor=floor,
        photos=len(keys),
        seconds=time.perf_counter() - started,
        capped=capped,
    )


def _most_similar(row: np.ndarray, score: np.ndarray, most: int) -> tuple[np.ndarray, int]:
    """Of pairs (row, score), the positions of each row's `most` best, and how many rows had more."""
    order = np.lexsort((-score, row))  # by row, best first within each row
    ranked_row = row[order]
    first_of_row = np.searchsorted(ranked_row, ranked_row, side="left")
    rank = np.arange(len(order)) - first_of_row
    over = np.unique(ranked_row[rank >= most])
    return np.sort(order[rank < most]), len(over)


def _through_the_index(
    store: PhotoStore, floor: float, max_neighbours: int | None, on_progress: Callable[[int, int], None] | None
) -> SimilarPairs:
    """Each photo's KNN in the index, asking again with more neighbours while all of them pass, up to
    `max_neighbours` (None: the whole index)."""
    started = time.perf_counter()
    total = store.count()
    most = total if max_neighbours is None else min(total, max_neighbours + 1)
    index: dict[str, int] = {}
    pairs: list[tuple[int, int, float]] = []
    done = capped = 0
    batch: list[tuple[str, np.ndarray]] = []

    def check(batch: list[tuple[str, np.ndarray]]) -> int:
        nonlocal capped
        vectors = [vector for _, vector in batch]
        for (key, vector), found in zip(batch, store.nearest_each(vectors, min(NEIGHBOURS + 1, most)), strict=True):
            found, more = _at_least(store, vector, found, floor, most, total)
            capped += more
            this = index.setdefault(key, len(index))
            # Among equal scores (the same file twice) the KNN need not return the photo itself: `most` counts
            # it, so its others are cut to one fewer.
            others = [(other, score) for other, score in found if other != key][: most - 1]
            pairs.extend((this, index.setdefault(other, len(index)), score) for other, score in others)
        if on_progress is not None:
            on_progress(min(done + len(batch), total), total)
        return len(batch)

    for key, photo in store.scan((VECTOR_FIELD,)):
        if photo.vector is None or len(photo.vector) != store.schema.model.dim:
            continue  # not a photo this index can search with
        batch.append((key, photo.vector))
        if len(batch) >= BATCH:
            done += check(batch)
            batch = []
    if batch:
        done += check(batch)
    if max_neighbours is None:
        pairs = _both_ways(pairs)
    first, second, similarity = (np.array(column) for column in zip(*pairs, strict=True)) if pairs else ([], [], [])
    return SimilarPairs(
        keys=list(index),
        first=np.asarray(first, dtype=np.int64),
        second=np.asarray(second, dtype=np.int64),
        similarity=np.asarray(similarity, dtype=np.float32),
        floor=floor,
        photos=done,
        seconds=time.perf_counter() - started,
        capped=capped,
    )


def find_duplicates(
    store: PhotoStore,
    similarity: float,
    fields: Sequence[str] = PHOTO_FIELDS,
    on_progress: Callable[[int, int], None] | None = None,
) -> DuplicateReport:
    """Every group of photos linked by a similarity of at least `similarity`, largest first, with `fields`
    read for each member. `on_progress(done, total)` is called after each batch."""
    return report(store, similar_pairs(store, similarity, on_progress=on_progress), similarity, fields)


def report(
    store: PhotoStore,
    pairs: SimilarPairs,
    similarity: float,
    fields: Sequence[str] = PHOTO_FIELDS,
    groups_read: int | None = None,
    members_read: int | None = None,
) -> DuplicateReport:
    """The groups at `similarity` among the pairs, largest first (then by the first member's path): each with
    its members in order, the first `members_read` of them (None: all) read with `fields`, for the first
    `groups_read` groups (None: all). Every member's order fields are read, the rest only where shown."""
    groups = [[pairs.keys[i] for i in group] for group in pairs.groups(similarity)]
    ordered = _in_order(store, groups[:groups_read] if groups_read is not None else groups)
    ordered.sort(key=lambda keys: (-len(keys), keys[0][1]))
    built = [_group(store, keys, fields, members_read) for keys in ordered]
    return DuplicateReport(built, [len(group) for group in groups], pairs.photos, pairs.seconds, pairs.capped)


def check_similarity(similarity: float) -> None:
    """What makes photos near-duplicates must be a cosine similarity above 0 and at most 1."""
    if not 0.0 < similarity <= 1.0:
        raise ValueError(f"the duplicate similarity must be above 0 and at most 1, not {similarity}")


def _both_ways(pairs: list[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    """Each pair found from either photo, in both directions, once. HNSW is approximate: among many near-copies
    its graph can leave one that the others' searches do not reach, though its own search finds them."""
    both = {(first, second): score for first, second, score in pairs}
    for first, second, score in pairs:
        both.setdefault((second, first), score)
    return [(first, second, score) for (first, second), score in both.items()]


def _at_least(
    store: PhotoStore, vector: np.ndarray, found: list[tuple[str, float]], floor: float, most: int, total: int
) -> tuple[list[tuple[str, float]], bool]:
    """The neighbours at least `floor` similar to the photo, asking again with 4x more while all pass, up to
    `most`; and whether it stopped at `most` with more of them left."""
    asked = len(found)
    while len(found) == asked and found[-1][1] >= floor and asked < most:
        asked = min(most, asked * 4)
        [found] = store.nearest_each([vector], asked)
    capped = len(found) == asked and asked < total and found[-1][1] >= floor
    return [(other, score) for other, score in found if score >= floor], capped


def _in_order(store: PhotoStore, groups: list[list[str]]) -> list[list[tuple[str, str]]]:
    """Each group's (key, path) with the photo to keep first: the most pixels, then the largest file, then
    the path. Photos gone since the scan are left out."""
    keys = [key for group in groups for key in group]
    rows = dict(zip(keys, store.get(keys, ORDER_FIELDS), strict=True))
    ordered = []
    for group in groups:
        present = [(key, photo) for key in group if (photo := rows[key]) is not None]
        present.sort(key=lambda pair: keep_first(pair[1]))
        if len(present) > 1:
            ordered.append([(key, photo.path or "") for key, photo in present])
    return ordered


def keep_first(photo: Photo) -> tuple[int, int, str]:
    """The order of a group's members: the most pixels first, then the largest file, then the path."""
    return (-(photo.width or 0) * (photo.height or 0), -(photo.size or 0), photo.path or "")


def _group(store: PhotoStore, keys: list[tuple[str, str]], fields: Sequence[str], read: int | None) -> DuplicateGroup:
    shown = [key for key, _ in (keys if read is None else keys[:read])]
    wanted = list(dict.fromkeys([*fields, VECTOR_FIELD, *ORDER_FIELDS]))
    rows = [(key, photo) for key, photo in zip(shown, store.get(shown, wanted), strict=True) if photo is not None]
    first = rows[0][1].vector
    members = [Hit(key, float(np.dot(np.asarray(photo.vector), np.asarray(first))), photo) for key, photo in rows]
    return DuplicateGroup([members[0], *sorted(members[1:], key=lambda hit: -hit.score)], len(keys))
