"""What a search shows: near-duplicates folded under the better result, variety by maximal marginal relevance,
and a similarity cut that is absolute or relative to the best result of the query.

The index answers the k nearest; everything here works on a larger set of candidates, best first, whose
vectors are read back from the index (they are the photos' own, so no photo is encoded again).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from clipsearch.index.filters import ORDERS, SearchFilter, in_order
from clipsearch.index.schema import PHOTO_FIELDS, VECTOR_FIELD
from clipsearch.index.store import CheckedStore, Hit, PhotoStore
from clipsearch.search.duplicates import check_similarity
from clipsearch.search.words import TEXT_FIELDS, carried, fuse, matched

DEFAULT_RESULTS = 12  # what a search shows unless asked for more or fewer: on the page and from the CLI
MAX_CANDIDATES = 2000  # the most candidates one search reads back (2 KiB of vector each)
EXTRA_CANDIDATES = 20  # beyond k: enough to see the drop of the scores after the k-th
VARIETY_POOL = 4  # variety chooses among this many candidates per result wanted
ROUNDING = 1e-6  # a unit vector's float32 product with itself may come out this far under 1
NEAR_DUPLICATE_FIELDS = ("path", "name")  # what is read of a folded photo (a viewer reads more of those it shows)


@dataclass(frozen=True)
class Cut:
    """Which similarities are shown: at least `min_similarity`, and at most `below_best` under the query's
    best."""

    min_similarity: float | None = None
    below_best: float | None = None

    def threshold(self, best: float) -> float | None:
        """The lowest similarity shown when the best candidate has `best`; None when nothing is cut."""
        relative = None if self.below_best is None else best - self.below_best
        bounds = [bound for bound in (self.min_similarity, relative) if bound is not None]
        return max(bounds) if bounds else None


@dataclass(frozen=True)
class SearchOptions:
    """What a search shows, in the words the page, the URL and the CLI use (docs/development.md)."""

    k: int = DEFAULT_RESULTS
    fold: bool = True  # near-duplicates of a better result go under it, not in the k
    duplicate_similarity: float = 0.95  # what makes a photo a near-duplicate of another
    variety: float = 0.0  # 0: by relevance alone; towards 1, each next result unlike those before it
    cut: Cut = field(default_factory=Cut)
    order: str = "relevance"  # of the results chosen: relevance, newest or oldest

    def __post_init__(self) -> None:
        if self.k <= 0:
            raise ValueError(f"k must be above 0, not {self.k}")
        if not 0.0 <= self.variety <= 1.0:
            raise ValueError(f"variety must be between 0 and 1, not {self.variety}")
        if self.order not in ORDERS:
            raise ValueError(f"order {self.order!r}: choose one of {', '.join(ORDERS)}")
        check_similarity(self.duplicate_similarity)

    @property
    def folding(self) -> float | None:
        """The similarity results are folded at, or None."""
        return self.duplicate_similarity if self.fold else None


@dataclass(frozen=True)
class Result:
    hit: Hit
    near_duplicates: tuple[Hit, ...] = ()  # folded under it, best first
    matched: tuple[str, ...] = ()  # what of it a query's words matched as text: "name: kyoto"


@dataclass(frozen=True)
class Results:
    shown: list[Result]
    scores: list[float]  # every candidate's similarity, best first: what a chart of the drop shows
    threshold: float | None  # the cut's similarity for this query (None: no cut)
    more: bool  # asking for more results could show more
    times: list[float] = field(default_factory=list)  # capture times of the candidates that pass: the timeline

    @property
    def hidden(self) -> int:
        """Candidates under the cut."""
        return 0 if self.threshold is None else sum(score < self.threshold for score in self.scores)


def why_nothing(results: Results, where: SearchFilter | None) -> str:
    """Why a search shows no result, in words: the cut, the filters, or an empty index."""
    if results.threshold is not None and results.scores and results.scores[0] < results.threshold:
        return f"No result reaches similarity {results.threshold:.3f}; the best has {results.scores[0]:.3f}."
    if where is not None and (words := where.describe()):
        return f"No photo {words}."
    return "No photos indexed yet."


def find(
    store: CheckedStore,
    vector: np.ndarray,
    options: SearchOptions,
    where: SearchFilter | None = None,
    fields: Sequence[str] = PHOTO_FIELDS,
    words: Sequence[str] = (),
) -> Results:
    """The results of one query vector as `options` say, with `fields` read for every result (and the path
    and name of the photos folded under them). Asks the index for more candidates, up to MAX_CANDIDATES, until
    folding leaves k results. With `words` (clipsearch.search.words.query_words), the photos whose names carry them
    are ranked with CLIP's results by one fused ranking (with_words)."""
    with_vectors = options.fold or options.variety > 0
    near = where is not None and where.near is not None
    # What each candidate's KNN reply carries: its vector (folding, variety), its position (the circle), its
    # time (the timeline), and the name of a photo folded under a result.
    read = [*([VECTOR_FIELD] if with_vectors else []), *(["latitude", "longitude"] if near else []), "taken"]
    read += NEAR_DUPLICATE_FIELDS
    per_result = VARIETY_POOL if options.variety else 2 if options.fold else 1
    pool = min(MAX_CANDIDATES, max(options.k + EXTRA_CANDIDATES, options.k * per_result))
    while True:
        candidates = store.nearest(vector, pool, fields=read, where=where)
        threshold = options.cut.threshold(candidates[0].score) if candidates else None
        passing = [hit for hit in candidates if threshold is None or hit.score >= threshold]
        cut_reached = len(passing) < len(candidates)  # no later candidate can pass either
        admitted = [hit for hit in passing if where is None or where.admits(hit.photo)]
        groups = fold(admitted, options.folding)
        exhausted = len(candidates) < pool or cut_reached or pool >= MAX_CANDIDATES
        if len(groups) > options.k or exhausted:
            break
        # As many more as folding needs, going by how much it folded so far (at least twice as many).
        pool = min(MAX_CANDIDATES, max(2 * pool, math.ceil(1.5 * pool * (options.k + 1) / max(len(groups), 1))))
    chosen = mmr(groups, np.asarray(vector, dtype=np.float32), options.k, options.variety) if with_vectors else groups
    if words:
        chosen = with_words(store, vector, words, where, chosen[: options.k], threshold, read, options.k)
    shown = {result.hit.key: result for result in _with_fields(store, chosen[: options.k], fields)}
    return Results(
        shown=[shown[hit.key] for hit in in_order([result.hit for result in shown.values()], options.order)],
        scores=[hit.score for hit in candidates],
        threshold=threshold,
        more=len(groups) > options.k or not exhausted,
        times=[hit.photo.taken for hit in admitted if hit.photo.taken is not None],
    )


def with_words(
    store: CheckedStore,
    vector: np.ndarray,
    words: Sequence[str],
    where: SearchFilter | None,
    ranked: Sequence[Result],
    threshold: float | None,
    read: Sequence[str],
    k: int,
) -> list[Result]:
    """CLIP's results (`ranked`, best first) fused with the photos whose file or folder names carry the words
    (clipsearch.search.words.fuse): the k nearest of those with every word and of those with any, asked in one round
    trip, ranked by the words they carry, then by similarity. A match that CLIP's results folded under one of
    them as a near-duplicate is shown on its own (it is the photo named so); a match under the cut or outside
    the filter is not shown."""
    base = where or SearchFilter()
    wheres = [replace(base, words=tuple(words)), replace(base, words=tuple(words), any_word=True)]
    every, anyone = store.nearest_among(vector, wheres, k, [*read, *TEXT_FIELDS])
    matches: dict[str, Hit] = {}
    for hit in [*every, *anyone]:
        if (threshold is None or hit.score >= threshold) and base.admits(hit.photo):
            matches.setdefault(hit.key, hit)
    results: dict[str, Result] = {}  # CLIP's, by key, best first; a match folded under one is taken out
    for result in ranked:
        folded = tuple(hit for hit in result.near_duplicates if hit.key not in matches)
        results.setdefault(result.hit.key, replace(result, near_duplicates=folded))
    text = [(key, hit.score, carried(words, _text_of(hit))) for key, hit in matches.items()]
    fused = fuse([(key, result.hit.score) for key, result in results.items()], text, limit=k)
    shown = []
    for place in fused:
        match = matches.get(place.key)
        said = matched(words, dict(zip(TEXT_FIELDS, _text_of(match), strict=True))) if match is not None else ()
        result = results.get(place.key) or Result(matches[place.key])
        shown.append(replace(result, matched=said))
    return shown


def _text_of(hit: Hit) -> list[str | None]:
    """The text fields a hit's reply carried, in TEXT_FIELDS' order."""
    return [getattr(hit.photo, name) for name in TEXT_FIELDS]


def listing(
    store: CheckedStore, where: SearchFilter, options: SearchOptions, fields: Sequence[str] = PHOTO_FIELDS
) -> Results:
    """The photos a query of filters alone lets through ("Kyoto 2021"), newest first (oldest first for that
    order), without similarities: nothing is folded or cut, and each hit's score is NaN."""
    wanted = list(dict.fromkeys([*fields, *(["latitude", "longitude"] if where.near is not None else [])]))
    found = store.listed(where, MAX_CANDIDATES, wanted, newest=options.order != "oldest")
    admitted = [hit for hit in found if where.admits(hit.photo)]
    return Results(
        shown=[Result(hit) for hit in admitted[: options.k]],
        scores=[],
        threshold=None,
        more=len(admitted) > options.k,
        times=[hit.photo.taken for hit in admitted if hit.photo.taken is not None],
    )


def fold(hits: Sequence[Hit], similarity: float | None) -> list[Result]:
    """Each hit, best first, under the most similar better result it is at least `similarity` to, or a
    result of its own (each hit its own with None). Hits need their stored vector."""
    if similarity is None or not hits:
        return [Result(hit) for hit in hits]
    heads = fold_heads(np.stack([hit.photo.vector for hit in hits if hit.photo.vector is not None]), similarity)
    members: dict[int, list[Hit]] = {}
    for place, head in enumerate(heads):
        if head != place:
            members.setdefault(head, []).append(hits[place])
    return [Result(hit, tuple(members.get(place, ()))) for place, hit in enumerate(hits) if heads[place] == place]


def fold_heads(vectors: np.ndarray, similarity: float) -> list[int]:
    """For rows best first, the row each one folds under: the most similar earlier head at least `similarity`
    to it (within float32 rounding: two identical photos fold at similarity 1), or itself (a head)."""
    heads: list[int] = []
    head_of: list[int] = []
    for place, vector in enumerate(vectors):
        if heads:
            similarities = vectors[heads] @ vector
            best = int(np.argmax(similarities))
            if similarities[best] >= similarity - ROUNDING:
                head_of.append(heads[best])
                continue
        heads.append(place)
        head_of.append(place)
    return head_of


def mmr(results: Sequence[Result], query: np.ndarray, k: int, variety: float) -> list[Result]:
    """Up to k results by maximal marginal relevance (mmr_order)."""
    if variety == 0 or len(results) <= 1:
        return list(results[:k])
    vectors = np.stack([result.hit.photo.vector for result in results if result.hit.photo.vector is not None])
    return [results[i] for i in mmr_order(vectors.astype(np.float32), query, k, variety)]


def mmr_order(vectors: np.ndarray, query: np.ndarray, k: int, variety: float) -> list[int]:
    """Up to k rows by maximal marginal relevance: each next one maximises
    (1 - variety) * similarity to the query - variety * its highest similarity to those already chosen.
    With variety 0 that is relevance order."""
    if len(vectors) == 0:
        return []
    relevance = vectors @ (query / max(float(np.linalg.norm(query)), 1e-12))
    chosen = [int(np.argmax(relevance))]
    closest_chosen = vectors @ vectors[chosen[0]]  # each row's highest similarity to a chosen one
    left = np.ones(len(vectors), dtype=bool)
    left[chosen[0]] = False
    while len(chosen) < min(k, len(vectors)):
        value = np.where(left, (1 - variety) * relevance - variety * closest_chosen, -np.inf)
        pick = int(np.argmax(value))
        chosen.append(pick)
        left[pick] = False
        closest_chosen = np.maximum(closest_chosen, vectors @ vectors[pick])
    return chosen


def _with_fields(store: PhotoStore, results: Sequence[Result], fields: Sequence[str]) -> list[Result]:
    """The results with `fields` read for each photo, in one round trip; the photos folded under them keep the
    path and name their candidate's reply carried (a burst of fifty shots folds fifty thumbnails that nobody
    asked to see)."""
    keys = [result.hit.key for result in results]
    rows = dict(zip(keys, store.get(keys, list(dict.fromkeys([*fields, "taken"]))), strict=True))

    def filled(hit: Hit) -> Hit:
        row = rows[hit.key]
        return Hit(hit.key, hit.score, hit.photo.merged(row) if row else hit.photo)

    return [replace(result, hit=filled(result.hit)) for result in results]
