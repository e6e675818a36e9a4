"""What a search shows: near-duplicates folded under the better result, variety by maximal marginal relevance,
and a similarity cut that is absolute or relative to the best result of the query.

The index answers the k nearest; everything here works on a larger set of candidates, best first, whose
vectors are read back from the index (they are the photos' own, so no photo is encoded again).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from clipsearch.duplicates import check_similarity
from clipsearch.store import PHOTO_FIELDS, VECTOR_FIELD, Hit, PhotoStore, SearchFilter, in_order

MAX_CANDIDATES = 2000  # the most candidates one search reads back (2 KiB of vector each)
EXTRA_CANDIDATES = 20  # beyond k: enough to see the drop of the scores after the k-th
VARIETY_POOL = 4  # variety chooses among this many candidates per result wanted
SIMILAR_IN_FULL = 8  # folded photos per result read with every field asked for; the rest with path and name


@dataclass(frozen=True)
class Cut:
    """Which similarities are shown: at least `minimum`, and at most `below_best` under the query's best."""

    minimum: float | None = None
    below_best: float | None = None

    def threshold(self, best: float) -> float | None:
        """The lowest similarity shown when the best candidate has `best`; None when nothing is cut."""
        relative = None if self.below_best is None else best - self.below_best
        bounds = [bound for bound in (self.minimum, relative) if bound is not None]
        return max(bounds) if bounds else None


@dataclass(frozen=True)
class ResultOptions:
    k: int = 12
    duplicates: float | None = 0.95  # fold results at least this similar to a better one; None: keep them all
    diversity: float = 0.0  # 0: by relevance alone; towards 1, each next result unlike those before it
    cut: Cut = field(default_factory=Cut)
    order: str = "relevance"  # of the results chosen: relevance, newest or oldest

    def __post_init__(self) -> None:
        if self.k <= 0:
            raise ValueError(f"k must be above 0, not {self.k}")
        if not 0.0 <= self.diversity <= 1.0:
            raise ValueError(f"diversity must be between 0 and 1, not {self.diversity}")
        if self.duplicates is not None:
            check_similarity(self.duplicates)


@dataclass(frozen=True)
class Result:
    hit: Hit
    similar: tuple[Hit, ...] = ()  # near-duplicates folded under it, best first


@dataclass(frozen=True)
class Results:
    shown: list[Result]
    scores: list[float]  # every candidate's similarity, best first: what a chart of the drop shows
    threshold: float | None  # the cut's similarity for this query (None: no cut)
    more: bool  # asking for more results could show more

    @property
    def hidden(self) -> int:
        """Candidates under the cut."""
        return 0 if self.threshold is None else sum(score < self.threshold for score in self.scores)


def find(
    store: PhotoStore,
    vector: np.ndarray,
    options: ResultOptions,
    where: SearchFilter | None = None,
    fields: Sequence[str] = PHOTO_FIELDS,
) -> Results:
    """The results of one query vector as `options` say, with `fields` read for every photo shown (folded
    ones too). Asks the index for more candidates, up to MAX_CANDIDATES, until folding leaves k results."""
    with_vectors = options.duplicates is not None or options.diversity > 0
    per_result = VARIETY_POOL if options.diversity else 2 if options.duplicates is not None else 1
    pool = min(MAX_CANDIDATES, max(options.k + EXTRA_CANDIDATES, options.k * per_result))
    vectors: dict[str, np.ndarray | None] = {}  # read once, however often the index is asked again
    while True:
        ranked = store.nearest(vector, pool, where=where)
        threshold = options.cut.threshold(ranked[0][1]) if ranked else None
        passing = [(key, score) for key, score in ranked if threshold is None or score >= threshold]
        cut_reached = len(passing) < len(ranked)  # no later candidate can pass either
        if with_vectors:
            missing = [key for key, _ in passing if key not in vectors]
            for key, row in zip(missing, store.get(missing, (VECTOR_FIELD,)), strict=True):
                vectors[key] = row[VECTOR_FIELD] if row else None  # None: deleted since the KNN query
            passing = [(key, score) for key, score in passing if vectors[key] is not None]
        hits = [Hit(key, score, {VECTOR_FIELD: vectors[key]} if with_vectors else {}) for key, score in passing]
        groups = fold(hits, options.duplicates)
        exhausted = len(ranked) < pool or cut_reached or pool >= MAX_CANDIDATES
        if len(groups) > options.k or exhausted:
            break
        # As many more as folding needs, going by how much it folded so far (at least twice as many).
        pool = min(MAX_CANDIDATES, max(2 * pool, math.ceil(1.5 * pool * (options.k + 1) / max(len(groups), 1))))
    chosen = mmr(groups, np.asarray(vector, dtype=np.float32), options.k, options.diversity) if with_vectors else groups
    shown = {result.hit.key: result for result in _with_fields(store, chosen[: options.k], fields)}
    return Results(
        shown=[shown[hit.key] for hit in in_order([result.hit for result in shown.values()], options.order)],
        scores=[score for _, score in ranked],
        threshold=threshold,
        more=len(groups) > options.k or not exhausted,
    )


def fold(hits: Sequence[Hit], similarity: float | None) -> list[Result]:
    """Each hit, best first, under the most similar better result it is at least `similarity` to, or a
    result of its own (each hit its own with None). Hits need their stored vector in `fields`."""
    if similarity is None:
        return [Result(hit) for hit in hits]
    heads: list[Hit] = []
    folded: list[list[Hit]] = []
    head_vectors = np.empty((len(hits), _dim(hits)), dtype=np.float32)
    for hit in hits:
        vector = hit.fields[VECTOR_FIELD]
        if heads:
            similarities = head_vectors[: len(heads)] @ vector
            best = int(np.argmax(similarities))
            if similarities[best] >= similarity:
                folded[best].append(hit)
                continue
        head_vectors[len(heads)] = vector
        heads.append(hit)
        folded.append([])
    return [Result(head, tuple(similar)) for head, similar in zip(heads, folded, strict=True)]


def mmr(results: Sequence[Result], query: np.ndarray, k: int, diversity: float) -> list[Result]:
    """Up to k results by maximal marginal relevance: each next one maximises
    (1 - diversity) * similarity to the query - diversity * its highest similarity to those already chosen.
    With diversity 0 that is relevance order."""
    if diversity == 0 or len(results) <= 1:
        return list(results[:k])
    vectors = np.stack([result.hit.fields[VECTOR_FIELD] for result in results]).astype(np.float32)
    relevance = vectors @ (query / max(float(np.linalg.norm(query)), 1e-12))
    chosen = [int(np.argmax(relevance))]
    closest_chosen = vectors @ vectors[chosen[0]]  # each result's highest similarity to a chosen one
    left = np.ones(len(results), dtype=bool)
    left[chosen[0]] = False
    while len(chosen) < min(k, len(results)):
        value = np.where(left, (1 - diversity) * relevance - diversity * closest_chosen, -np.inf)
        pick = int(np.argmax(value))
        chosen.append(pick)
        left[pick] = False
        closest_chosen = np.maximum(closest_chosen, vectors @ vectors[pick])
    return [results[i] for i in chosen]


def _dim(hits: Sequence[Hit]) -> int:
    return len(hits[0].fields[VECTOR_FIELD]) if hits else 0


def _with_fields(store: PhotoStore, results: Sequence[Result], fields: Sequence[str]) -> list[Result]:
    """The results with `fields` read for each photo and its first folded ones, and the path and name of the
    rest (a burst of fifty shots folds fifty thumbnails that nobody asked to see), in one round trip each."""
    full = [hit.key for result in results for hit in (result.hit, *result.similar[:SIMILAR_IN_FULL])]
    brief = [hit.key for result in results for hit in result.similar[SIMILAR_IN_FULL:]]
    rows = dict(zip(full, store.get(full, list(dict.fromkeys([*fields, "taken"]))), strict=True))
    rows |= dict(zip(brief, store.get(brief, ["path", "name"]), strict=True))

    def filled(hit: Hit) -> Hit:
        return Hit(hit.key, hit.score, hit.fields | (rows[hit.key] or {}))

    return [Result(filled(result.hit), tuple(filled(hit) for hit in result.similar)) for result in results]
