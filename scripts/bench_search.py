"""Search latency and recall of HNSW against exact FLAT search, and embedded-server start times.

Usage: python scripts/bench_search.py [--count 20000] [--queries 200] [--dim 512]

Builds clustered unit vectors (CLIP-like: photos of similar things lie close together), indexes them
as FLAT and as HNSW (the default M / EF_CONSTRUCTION / EF_RUNTIME) on a private embedded server, and
times PhotoStore.search (KNN plus the HMGET of the shown fields) for the same queries in the same
process. Recall@10 is measured against numpy brute force. Also times a cold start of the server on
an empty directory and a restart that reloads the indexed data.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np

from clipsearch.connection import connect
from clipsearch.identity import ModelIdentity
from clipsearch.server import EmbeddedServer
from clipsearch.settings import Settings
from clipsearch.store import IndexSchema, PhotoRecord, PhotoStore


def clustered_unit_vectors(rng: np.random.Generator, count: int, dim: int, clusters: int) -> np.ndarray:
    centers = rng.standard_normal((clusters, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    points = centers[rng.integers(0, clusters, count)] + 0.04 * rng.standard_normal((count, dim)).astype(np.float32)
    unit: np.ndarray = points / np.linalg.norm(points, axis=1, keepdims=True)
    return unit


def timed_start(server: EmbeddedServer) -> float:
    started = time.perf_counter()
    server.ensure_started()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vectors = clustered_unit_vectors(rng, args.count + args.queries, args.dim, clusters=max(10, args.count // 50))
    vectors, queries = vectors[: args.count], vectors[args.count :]
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    model = ModelIdentity("synthetic", "clustered", args.dim)

    with tempfile.TemporaryDirectory(prefix="clipsearch-bench-") as scratch:
        server = EmbeddedServer(Path(scratch) / "data")
        cold_start = timed_start(server)
        base = Settings(data_dir=server.data_dir)
        variants = {
            "FLAT": (dataclasses.replace(base, index_name="flat", algorithm="FLAT"), None),
            "HNSW ef=100 (default)": (dataclasses.replace(base, index_name="hnsw"), None),
            "HNSW ef=10 (RediSearch default)": (dataclasses.replace(base, index_name="hnsw"), 10),
        }
        client = connect(base)
        results = {}
        try:
            for label, (settings, ef) in variants.items():
                store = PhotoStore.open(client, IndexSchema.from_settings(settings, model), create=True)
                if store.count() == 0:
                    started = time.perf_counter()
                    store.upsert(PhotoRecord(f"{i}.jpg", vector) for i, vector in enumerate(vectors))
                    print(
                        f"indexed {args.count} vectors as {settings.algorithm} in {time.perf_counter() - started:.1f} s"
                    )
                latencies, found = [], 0
                for query, expected in zip(queries, truth, strict=True):
                    started = time.perf_counter()
                    hits = store.search(query, k=10, ef_runtime=ef)
                    latencies.append(time.perf_counter() - started)
                    found += len({int(hit.path.removesuffix(".jpg")) for hit in hits} & set(expected.tolist()))
                results[label] = (
                    np.percentile(latencies, 50) * 1e3,
                    np.percentile(latencies, 95) * 1e3,
                    found / truth.size,
                )
            client.close()
            server.stop()
            warm_restart = timed_start(server)
        finally:
            server.stop()

    print(f"\n{args.count} vectors of {args.dim} dims, {args.queries} queries, k=10")
    flat_p50 = results["FLAT"][0]
    for label, (p50, p95, recall) in results.items():
        ratio = p50 / flat_p50
        print(f"  {label:<32} p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  recall@10 {recall:.4f}  p50 vs FLAT {ratio:.2f}x")
    print(f"embedded server: cold start {cold_start:.3f} s, restart with {args.count} documents {warm_restart:.3f} s")


if __name__ == "__main__":
    main()
