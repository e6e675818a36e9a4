"""The index at library scale on each backend: insert rate, memory per photo, restart time, KNN latency and recall.

Usage: python scripts/bench_search.py [--count 100000] [--queries 200] [--backends redisearch,valkey-search,cluster]
                                      [--quick]

For each of two synthetic sets of CLIP-like unit vectors (512-d):
  clustered  many small clusters (50 photos each, tight): similar photos lie close together;
  hard       few large clusters (500 photos each) whose members are all about equally far from one
             another: the case where a graph index has the most trouble telling the true nearest apart,
for FLAT and for HNSW (M 16, EF_CONSTRUCTION 200), and for each backend, each index in servers of its own:
  redisearch     the embedded Valkey with RediSearch 2.10;
  valkey-search  the embedded Valkey with valkey-search (../shared/valkey-search/libsearch.so);
  cluster        a local cluster of 3 primaries with valkey-search and its coordinator (scripts/cluster.py):
it measures the insert rate of PhotoStore.upsert (documents with folders and capture times, no thumbnails),
the memory per photo (INFO used_memory after less before, summed over the shards; and the largest shard's
share), the restart time (the server, or one primary of the cluster, stopped and started until the index
answers a search again: RediSearch rebuilds an HNSW graph while loading), and PhotoStore.nearest's p50/p95
and recall@10 against numpy brute force, without a filter and with a folder filter that passes about
one photo in ten (recall against brute force over the filtered photos), at several EF_RUNTIME values
for HNSW. A last run adds a 256-px JPEG-sized thumbnail (11 KiB) to every photo, for its memory.
An backend that is not here (valkey-search's module missing) is left out and said so.
--quick (2,000 photos, 20 queries) is what CI runs: the numbers are not checked there.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import valkey
from benchkit import BACKENDS, Servers, chosen_backends

from clipsearch.errors import ClipsearchError
from clipsearch.index.connection import LOST, connect
from clipsearch.index.filters import SearchFilter
from clipsearch.index.schema import IndexSchema, PhotoRecord
from clipsearch.index.store import PhotoStore
from clipsearch.ingest.facts import DAY, PhotoFacts, day_start
from clipsearch.model.identity import ModelIdentity
from clipsearch.settings import Settings

DIM = 512
FOLDERS = 10  # photo i is in folder f{i % 10}: a folder filter passes one photo in ten
EF_RUNTIMES = (10, 50, 100, 200, 400)
THUMBNAIL_BYTES = 11 * 1024


def unit_vectors(rng: np.random.Generator, count: int, cluster_size: int, spread: float) -> np.ndarray:
    centers = rng.standard_normal((max(1, count // cluster_size), DIM)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    points = centers[rng.integers(0, len(centers), count)]
    points = points + spread * rng.standard_normal((count, DIM)).astype(np.float32)
    unit: np.ndarray = points / np.linalg.norm(points, axis=1, keepdims=True)
    return unit


def photo(i: int, vector: np.ndarray, thumbnail: bytes | None) -> PhotoRecord:
    facts = PhotoFacts(day_start("2015-01-01") + (i % 3650) * DAY, "exif", camera="Camera")
    return PhotoRecord(f"f{i % FOLDERS}/{i}.jpg", vector, facts=facts, thumbnail=thumbnail)


@dataclass
class Measured:
    insert_per_s: float
    bytes_per_photo: float
    largest_shard_share: float  # of the memory the photos took: the largest shard's (1.0 on one server)
    restart_s: float = 0.0
    queries: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # p50 ms, p95 ms, recall@10

    def line(self) -> str:
        kib = self.bytes_per_photo / 1024
        shard = f" ({self.largest_shard_share:.0%} on the largest shard)" if self.largest_shard_share < 1 else ""
        return f"{self.insert_per_s:,.0f} inserts/s, {kib:.1f} KiB per photo{shard}, restart {self.restart_s:.1f} s"


def measure(
    backend: str, vectors: np.ndarray, queries: np.ndarray, algorithm: str, scratch: Path, thumbnails: bool = False
) -> Measured:
    """One index in servers of its own: fill it, time its queries, restart it."""
    servers = Servers(backend, scratch / f"{backend}-{algorithm}-{time.monotonic_ns()}")
    settings = servers.settings(algorithm)
    model = ModelIdentity("synthetic", "vectors", DIM)
    try:
        client = connect(settings)
        store = PhotoStore.open(client, IndexSchema.from_settings(settings, model), create=True)
        before = servers.used_memory()
        thumbnail = np.random.default_rng(1).integers(0, 256, THUMBNAIL_BYTES, dtype=np.uint8).tobytes()
        started = time.perf_counter()
        store.upsert(photo(i, vector, thumbnail if thumbnails else None) for i, vector in enumerate(vectors))
        store.wait_indexed()
        seconds = time.perf_counter() - started
        grown = [after - earlier for after, earlier in zip(servers.used_memory(), before, strict=True)]
        result = Measured(len(vectors) / seconds, sum(grown) / len(vectors), max(grown) / max(sum(grown), 1))
        if not thumbnails:
            folder_zero = np.arange(len(vectors)) % FOLDERS == 0
            for ef in EF_RUNTIMES if algorithm == "HNSW" else (None,):
                label = "exact" if ef is None else f"EF_RUNTIME {ef}"
                result.queries[label] = timed_queries(store, vectors, queries, ef, None, None)
                result.queries[f"{label}, folder filter"] = timed_queries(
                    store, vectors, queries, ef, SearchFilter(folder="f0"), folder_zero
                )
        client.close()
        started = time.perf_counter()
        servers.restart()
        answers(settings, model, vectors[0])
        result.restart_s = time.perf_counter() - started
        return result
    finally:
        servers.stop()


def answers(settings: Settings, model: ModelIdentity, vector: np.ndarray) -> None:
    """Once the index answers a search again (valkey-search answers with an error while it loads its index)."""
    deadline = time.monotonic() + 3600
    while True:
        try:
            client = connect(settings)
            try:
                PhotoStore.open(client, IndexSchema.from_settings(settings, model)).nearest(vector, k=1, fields=())
                return
            finally:
                client.close()
        except (ClipsearchError, *LOST, valkey.ResponseError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def timed_queries(
    store: PhotoStore,
    vectors: np.ndarray,
    queries: np.ndarray,
    ef: int | None,
    where: SearchFilter | None,
    passes: np.ndarray | None,
) -> tuple[float, float, float]:
    """p50 and p95 in ms, and recall@10 against brute force over the photos the filter passes."""
    candidates = np.flatnonzero(passes) if passes is not None else np.arange(len(vectors))
    latencies, found = [], 0
    for query in queries:
        truth = candidates[np.argsort(-(vectors[candidates] @ query))[:10]]
        started = time.perf_counter()
        hits = store.nearest(query, k=10, fields=("path",), ef_runtime=ef, where=where)
        latencies.append(time.perf_counter() - started)
        found += len({int(hit.path.rpartition("/")[2].removesuffix(".jpg")) for hit in hits} & set(truth.tolist()))
    p50, p95 = np.percentile(np.array(latencies) * 1e3, [50, 95])
    return float(p50), float(p95), found / (10 * len(queries))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--backends", default=",".join(BACKENDS), help="of " + ", ".join(BACKENDS))
    parser.add_argument("--quick", action="store_true", help="2,000 photos and 20 queries: that it runs")
    args = parser.parse_args()
    if args.quick:
        args.count, args.queries = 2_000, 20
    backends = chosen_backends(parser, args.backends)
    rng = np.random.default_rng(0)
    sets = {
        "clustered": unit_vectors(rng, args.count + args.queries, cluster_size=50, spread=0.04),
        "hard": unit_vectors(rng, args.count + args.queries, cluster_size=500, spread=0.06),
    }
    with tempfile.TemporaryDirectory(prefix="clipsearch-bench-") as scratch:
        for backend in backends:
            for name, everything in sets.items():
                vectors, queries = everything[: args.count], everything[args.count :]
                for algorithm in ("FLAT", "HNSW"):
                    result = measure(backend, vectors, queries, algorithm, Path(scratch))
                    print(f"{backend}: {name} {args.count:,} photos, {algorithm}: {result.line()}", flush=True)
                    for label, (p50, p95, recall) in result.queries.items():
                        print(f"    {label:<32} p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  recall@10 {recall:.4f}")
            clustered = sets["clustered"][: args.count]
            thumbnails = measure(backend, clustered, np.empty((0, DIM)), "FLAT", Path(scratch), True)
            print(f"{backend}: clustered {args.count:,} photos, FLAT, with 11 KiB thumbnails: {thumbnails.line()}")


if __name__ == "__main__":
    main()
