"""The library view at scale: how long its first render takes over a large index, against the scan it needs.

Usage: python scripts/bench_library.py [--count 100000] [--backends redisearch]

Writes `--count` synthetic photos (random vectors; capture times over ten years, twelve cameras, a folder per
year and trip, and three in four taken within 30 km of one of forty cities, geocoded as the loader does)
into a private server of each backend, then times, in one run:

- scan: reading the fields the view counts from every photo (PhotoStore.scan of OVERVIEW_FIELDS): the floor
  of any view that counts a collection from the index's own fields;
- overview: Library.overview(), the scan and every count of the view;
- first render: `streamlit run streamlit_app.py`, Chromium opens /library, until the bars of every month are
  drawn: a fresh page process, which loads the text model (its ONNX export made beforehand, as on any start
  but the very first) and makes the counts, then caches them per index version;
- cached render: a second browser tab on the same process, until the same bars are drawn.

Ratios are to the scan of the same run.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from benchkit import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PRETRAINED_HELP,
    Servers,
    chosen_backends,
    memory_kb,
    scratch_and_weights,
    streamlit_page,
)
from playwright.sync_api import Browser, sync_playwright

from clipsearch.index.schema import PhotoRecord
from clipsearch.ingest.facts import DAY, PhotoFacts, day_start
from clipsearch.library import Library
from clipsearch.model.engine import load_text_encoder
from clipsearch.search.overview import OVERVIEW_FIELDS

ROOT = Path(__file__).resolve().parent.parent
CITIES = [
    (35.0116, 135.7681), (35.6762, 139.6503), (38.7223, -9.1393), (41.3874, 2.1686), (48.8566, 2.3522),
    (51.5074, -0.1278), (52.52, 13.405), (41.9028, 12.4964), (59.3293, 18.0686), (64.1466, -21.9426),
    (40.7128, -74.006), (34.0522, -118.2437), (49.2827, -123.1207), (19.4326, -99.1332), (-23.5505, -46.6333),
    (-34.6037, -58.3816), (-33.4489, -70.6693), (-12.0464, -77.0428), (30.0444, 31.2357), (-33.9249, 18.4241),
    (-1.2921, 36.8219), (6.5244, 3.3792), (25.2048, 55.2708), (28.6139, 77.209), (19.076, 72.8777),
    (13.7563, 100.5018), (1.3521, 103.8198), (-6.2088, 106.8456), (22.3193, 114.1694), (31.2304, 121.4737),
    (37.5665, 126.978), (-33.8688, 151.2093), (-37.8136, 144.9631), (-36.8485, 174.7633), (21.3069, -157.8583),
    (61.2181, -149.9003), (55.7558, 37.6173), (41.0082, 28.9784), (37.9838, 23.7275), (60.1699, 24.9384),
]  # fmt: skip
CAMERAS = [f"{make} {model}" for make in ("Apple", "Canon", "Fujifilm", "Sony") for model in ("A", "B", "C")]
DONE = """([months]) => document.querySelectorAll('.months_marks path').length === months"""


def synthetic_photos(count: int, dim: int, rng: np.random.Generator) -> list[PhotoRecord]:
    start, span = day_start("2015-01-01"), 10 * 365 * DAY
    records = []
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for i, vector in enumerate(vectors):
        taken = start + float(rng.uniform(0, span))
        latitude = longitude = None
        if rng.uniform() < 0.75:
            city = CITIES[int(rng.integers(len(CITIES)))]
            latitude = city[0] + float(rng.uniform(-0.25, 0.25))
            longitude = city[1] + float(rng.uniform(-0.25, 0.25))
        facts = PhotoFacts(taken, "exif", "", CAMERAS[i % len(CAMERAS)], latitude, longitude)
        year = 2015 + int((taken - start) // (365 * DAY))
        path = f"{year}/trip-{i % 40:02d}/photo-{i:06d}.jpg"
        records.append(PhotoRecord(path=path, vector=vector, name=Path(path).name, facts=facts))
    return records


def first_render(page_url: str, months: int, browser: Browser) -> float:
    page = browser.new_context(viewport={"width": 1400, "height": 1600}).new_page()
    started = time.perf_counter()
    page.goto(f"{page_url}/library")
    page.wait_for_function(DONE, arg=[months], timeout=600_000, polling="raf")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000, help="synthetic photos (default 100,000)")
    parser.add_argument("--backends", default="redisearch", help="comma-separated: redisearch, valkey-search, cluster")
    parser.add_argument("--pretrained", help=PRETRAINED_HELP)
    args = parser.parse_args()
    backends = chosen_backends(parser, args.backends)
    rng = np.random.default_rng(0)
    results: dict[str, dict[str, float]] = {}
    with scratch_and_weights(args.pretrained) as (scratch, pretrained):
        for backend in backends:
            servers = Servers(backend, scratch / backend)
            try:
                settings = replace(servers.settings("FLAT"), pretrained=pretrained, onnx_cache=scratch / "onnx-cache")
                load_text_encoder(settings.model)  # its ONNX export made once, before the page's first start
                library = Library(settings)
                store = library.store(create=True)
                started = time.perf_counter()
                store.upsert(synthetic_photos(args.count, store.schema.model.dim, rng))
                store.wait_indexed()
                written = time.perf_counter() - started
                started = time.perf_counter()
                scanned = sum(1 for _ in store.scan(OVERVIEW_FIELDS))
                scan = time.perf_counter() - started
                started = time.perf_counter()
                summary = library.overview()
                counted = time.perf_counter() - started
                assert scanned == summary.photos == args.count, (scanned, summary.photos)
                env = {
                    **{k: v for k, v in os.environ.items() if not k.startswith(("CLIPSEARCH_", "VALKEY_URL"))},
                    "CLIPSEARCH_ONNX_CACHE": str(scratch / "onnx-cache"),
                    "CLIPSEARCH_INDEX": settings.index_name,
                    "CLIPSEARCH_PRETRAINED": pretrained,
                    "CLIPSEARCH_PHOTOS": str(scratch / "no-photos"),
                    **(
                        {"VALKEY_URL": settings.valkey_url}
                        if settings.valkey_url
                        else {"CLIPSEARCH_DATA_DIR": str(settings.data_dir)}
                    ),
                    **({"CLIPSEARCH_SEARCH_MODULE": str(settings.search_module)} if settings.search_module else {}),
                }
                with (
                    streamlit_page("streamlit_app.py", env, ROOT, scratch / f"{backend}.log") as (url, process),
                    sync_playwright() as playwright,
                ):
                    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                    cold = first_render(url, len(summary.months), browser)
                    warm = first_render(url, len(summary.months), browser)
                    rss = memory_kb(process.pid, "VmRSS") / 1024
                    browser.close()
                results[backend] = {
                    "write_s": written,
                    "scan_s": scan,
                    "overview_s": counted,
                    "first_render_s": cold,
                    "cached_render_s": warm,
                    "rss_mb": rss,
                    "months": len(summary.months),
                    "spots": len(summary.spots),
                }
            finally:
                servers.stop()
    print(f"library view over {args.count:,} synthetic photos")
    print(f"{'':30}" + "".join(f"{backend:>16}" for backend in results))
    for key, label in (
        ("write_s", "write + geocode (s)"),
        ("scan_s", "scan of its fields (s)"),
        ("overview_s", "Library.overview (s)"),
        ("first_render_s", "first render (s)"),
        ("cached_render_s", "cached render (s)"),
        ("rss_mb", "page RSS after (MB)"),
        ("months", "months drawn"),
        ("spots", "places on the map"),
    ):
        print(f"{label:30}" + "".join(f"{result[key]:16.2f}" for result in results.values()))
        if key in ("overview_s", "first_render_s", "cached_render_s"):
            ratios = "".join(f"{result[key] / result['scan_s']:15.2f}x" for result in results.values())
            print(f"{'  ratio to the scan':30}{ratios}")


if __name__ == "__main__":
    main()
