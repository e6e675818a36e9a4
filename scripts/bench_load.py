"""Concurrent load on the search layer and the embedded server: many clients mixing text and photo queries.

Usage: python scripts/bench_load.py [FOLDER] [--clients 16] [--seconds 30] [--onnx-threads N] [--pretrained TAG_OR_FILE]

Indexes FOLDER (default: the sample photos) into a private embedded server, then runs the page's two
query paths from N threads sharing one client and one text encoder, as the page's processes do:
a text query (encode_text, then PhotoStore.search) and a "more like this" query (vector_of, then
search), alternating. Text queries are all distinct, so none is served from a cache. The same mix is
first run by a single client for the baseline, in the same process. Prints queries per second, p50 and
p99 per kind, the error count, and the ratio of throughput to the single client's.
"""

from __future__ import annotations

import argparse
import itertools
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from benchkit import PRETRAINED_HELP, scratch_and_weights

from clipsearch.index.server import EmbeddedServer
from clipsearch.index.store import PhotoStore
from clipsearch.ingest.loader import LoadOptions
from clipsearch.library import Library
from clipsearch.model.engine import TextEncoding
from clipsearch.settings import Settings

WORDS = ["cat", "dog", "street", "snow", "beach", "car", "tower", "food", "flower", "boat", "bridge", "child"]


def run_mix(
    store: PhotoStore, encoder: TextEncoding, keys: list[str], clients: int, seconds: float
) -> tuple[dict[str, list[float]], int, float]:
    """Latencies by kind, errors, and the wall time, for `clients` threads querying for `seconds`."""
    latencies: dict[str, list[float]] = defaultdict(list)
    errors = 0
    lock = threading.Lock()
    counter = itertools.count()
    stop_at = time.monotonic() + seconds

    def client(number: int) -> None:
        nonlocal errors
        rng = np.random.default_rng(number)
        while time.monotonic() < stop_at:
            n = next(counter)
            kind = "text" if n % 2 == 0 else "photo"
            started = time.perf_counter()
            try:
                if kind == "text":
                    words = " ".join(rng.choice(WORDS, size=3))
                    vector = encoder.encode_text([f"{words} {n}"])[0]
                else:
                    vector = store.vector_of(keys[int(rng.integers(len(keys)))])
                    assert vector is not None
                hits = store.nearest(vector, k=12)
                assert len(hits) == 12
            except Exception:
                with lock:
                    errors += 1
                continue
            with lock:
                latencies[kind].append(time.perf_counter() - started)

    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, nargs="?", default=Path("photos"))
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--onnx-threads", type=int, default=Settings().onnx_threads, help="CLIPSEARCH_ONNX_THREADS")
    parser.add_argument("--pretrained", help=PRETRAINED_HELP)
    args = parser.parse_args()

    with scratch_and_weights(args.pretrained) as (scratch, pretrained):
        server = EmbeddedServer(scratch / "data")
        settings = Settings(
            data_dir=server.data_dir, index_name="bench-load", pretrained=pretrained, onnx_threads=args.onnx_threads
        )
        try:
            Library(settings).index_folder(args.folder, LoadOptions(), show_bar=False)
            library = Library(settings)
            store, encoder = library.store(), library.text_encoder
            keys = [key for key, _ in store.scan(("path",))]
            print(f"{len(keys)} photos indexed; {type(encoder).__name__} ({settings.engine} engine, "
                  f"{settings.onnx_threads or 'one per core'} ONNX Runtime threads a query)")  # fmt: skip
            runs = {
                "1 client": run_mix(store, encoder, keys, 1, args.seconds),
                f"{args.clients} clients": run_mix(store, encoder, keys, args.clients, args.seconds),
            }
        finally:
            server.stop()

    base_qps = None
    for label, (latencies, errors, wall) in runs.items():
        total = sum(len(values) for values in latencies.values())
        qps = total / wall
        base_qps = base_qps or qps
        print(f"{label}: {total} queries in {wall:.1f} s = {qps:.1f} q/s ({qps / base_qps:.2f}x), errors {errors}")
        for kind in ("text", "photo"):
            values = np.array(latencies[kind]) * 1e3
            p50, p99 = np.percentile(values, [50, 99])
            print(f"  {kind:>5}: {len(values):5d}  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms")


if __name__ == "__main__":
    main()
