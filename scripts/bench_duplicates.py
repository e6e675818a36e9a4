"""`duplicates` at library scale: how fast it checks a collection, and whether it finds every group.

Usage: python scripts/bench_duplicates.py [--count 100000] [--algorithm auto|FLAT|HNSW]
                                          [--backends redisearch,valkey-search,cluster] [--quick]

A synthetic collection of CLIP-like 512-d unit vectors: clusters of 50 loosely similar photos (cosine about
0.55 within a cluster, as bench_search.py's "clustered" set), plus planted groups of near-duplicates (2 to 6
copies of one photo, each at about 0.99 to it, 0.98 to one another) on about 5 % of the photos, and as many
near misses (variants at about 0.91: the same scene, not the same photo). On each backend (the embedded
server with RediSearch, with valkey-search, a local 3-primary cluster), with the algorithm
CLIPSEARCH_ALGORITHM=auto would choose for the count unless --algorithm says otherwise, clipsearch.search.duplicates
finds the groups: on HNSW with the index's own KNN, on FLAT by comparing the vectors of one scan in blocks.
The baseline, in the same process, reads every vector out of the server and compares all pairs with numpy
in blocks of rows (exact). Both are timed; the baseline's groups are the truth that clipsearch's are checked
against.
--quick (2,000 photos) is what CI runs: the numbers are not checked there.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from benchkit import BACKENDS, Servers, chosen_backends

from clipsearch.index.connection import connect
from clipsearch.index.schema import AUTO_FLAT_UP_TO, VECTOR_FIELD, IndexSchema, PhotoRecord
from clipsearch.index.store import PhotoStore
from clipsearch.model.identity import ModelIdentity
from clipsearch.search.duplicates import find_duplicates

DIM = 512
THRESHOLD = 0.95
COPY_NOISE = 0.005  # cosine to the original about 1 / sqrt(1 + 512 * 0.005^2) = 0.994
MISS_NOISE = 0.02  # about 0.91: a near miss, never a duplicate at 0.95


def unit(rows: np.ndarray) -> np.ndarray:
    normalised: np.ndarray = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    return normalised


def collection(rng: np.random.Generator, count: int) -> tuple[np.ndarray, int]:
    """`count` vectors with planted groups of near-duplicates and near misses; and how many groups."""
    centers = unit(rng.standard_normal((max(1, count // 50), DIM)))
    vectors = unit(centers[rng.integers(0, len(centers), count)] + 0.04 * rng.standard_normal((count, DIM)))
    budget, at, groups = count // 20, 0, 0
    while budget > 0 and at < count - 12:
        size = min(int(rng.integers(2, 7)), budget + 1)
        original = vectors[at]
        vectors[at + 1 : at + size] = unit(original + COPY_NOISE * rng.standard_normal((size - 1, DIM)))
        vectors[at + size] = unit(original[None, :] + MISS_NOISE * rng.standard_normal((1, DIM)))[0]
        at, budget, groups = at + size + 1, budget - size, groups + 1
    order = rng.permutation(count)  # not stored in the order they were made
    return vectors[order], groups


def brute_force_groups(store: PhotoStore, threshold: float) -> tuple[set[frozenset[str]], float]:
    """Every vector read from the server, all pairs compared in blocks: the exact groups, and the seconds."""
    started = time.perf_counter()
    rows = list(store.scan((VECTOR_FIELD,)))
    keys = [key for key, _ in rows]
    matrix = np.stack([np.asarray(photo.vector) for _, photo in rows])
    parent = list(range(len(keys)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, len(keys), 1024):
        block = matrix[start : start + 1024] @ matrix.T
        for a, b in zip(*np.nonzero(block >= threshold), strict=True):
            if start + a != b:
                parent[root(int(b))] = root(start + int(a))
    members: dict[int, set[str]] = {}
    for i, key in enumerate(keys):
        members.setdefault(root(i), set()).add(key)
    return {frozenset(group) for group in members.values() if len(group) > 1}, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--algorithm", choices=("auto", "FLAT", "HNSW"), default="auto")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="of " + ", ".join(BACKENDS))
    parser.add_argument("--quick", action="store_true", help="2,000 photos: that it runs")
    args = parser.parse_args()
    if args.quick:
        args.count = 2_000
    algorithm = args.algorithm if args.algorithm != "auto" else "HNSW" if args.count > AUTO_FLAT_UP_TO else "FLAT"
    backends = chosen_backends(parser, args.backends)
    vectors, planted = collection(np.random.default_rng(0), args.count)
    method = "index KNN" if algorithm == "HNSW" else "blocks of vectors"
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix="clipsearch-bench-") as scratch:
            servers = Servers(backend, Path(scratch))
            try:
                settings = servers.settings(algorithm)
                schema = IndexSchema.from_settings(settings, ModelIdentity("synthetic", "vectors", DIM))
                store = PhotoStore.open(connect(settings), schema, create=True)
                started = time.perf_counter()
                store.upsert(PhotoRecord(f"{i}.jpg", vector) for i, vector in enumerate(vectors))
                store.wait_indexed()
                print(f"{backend}: {args.count:,} photos, {algorithm}, {planted:,} planted groups: loaded in "
                      f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
                report = find_duplicates(store, THRESHOLD, fields=("path",))
                found = {frozenset(hit.key for hit in group.members) for group in report.groups}
                truth, brute_seconds = brute_force_groups(store, THRESHOLD)
            finally:
                servers.stop()
        print(f"  clipsearch duplicates ({method}): {report.seconds:.1f} s, {report.rate:,.0f} photos/s, "
              f"{len(report.groups):,} groups")  # fmt: skip
        print(f"  baseline (all vectors read, numpy all pairs): {brute_seconds:.1f} s, "
              f"{args.count / brute_seconds:,.0f} photos/s, {len(truth):,} groups")  # fmt: skip
        print(f"  ratio clipsearch/baseline time: {report.seconds / brute_seconds:.2f}x")
        exact = len(found & truth)
        print(f"  groups found exactly: {exact:,} of {len(truth):,} ({exact / max(len(truth), 1):.4f}); "
              f"groups not in the truth: {len(found - truth):,}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
