"""The search page in a real browser: query round trip, memory and cold start, against a bare Streamlit floor.

Usage: python scripts/bench_page.py [--queries 30] [--pretrained TAG_OR_FILE] [--photos photos]

Indexes the sample photos into a private embedded server, then starts `streamlit run` six times, one
after the other: scripts/reference_page.py (the minimal page: a text box and 12 cached, captioned
thumbnails with two buttons each), streamlit_app.py with CLIPSEARCH_ENGINE=torch, and streamlit_app.py with
the ONNX Runtime engine four times: its first start, with an empty export cache (the text tower is exported
in a subprocess), a later start with the cache in place, one with Match names off (`text=false`: CLIP
alone, where the others also match the words against the photos' names and text), and one with
CLIPSEARCH_TEXT_PRECISION=int8 (its cold start includes making the int8 tower, once). Debian's Chromium
(Playwright) opens each with ?q= (cold start: from launching `streamlit run` to 12 loaded results); then, all
of them running, each query is typed into every page in turn (interleaved, so that the machine's drift over
minutes falls on every page alike) and Enter pressed;
a round trip ends when the heading names the query, no element is stale and all 12 images have loaded.
Memory is the page process's VmRSS after the first query (split into anonymous memory and mapped files:
shared libraries and memory-mapped weights) and its VmHWM (peak) at the end, from /proc. Without
--pretrained the model has random weights (speed and memory do not depend on them).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
import urllib.parse
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from benchkit import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PRETRAINED_HELP,
    memory_kb,
    page_environment,
    scratch_and_weights,
    streamlit_page,
)
from playwright.sync_api import Page, sync_playwright

from clipsearch.index.server import EmbeddedServer
from clipsearch.ingest.loader import LoadOptions
from clipsearch.library import Library
from clipsearch.model.engine import ImageEncoding, load_image_encoder
from clipsearch.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
QUERIES = [
    "a cat", "snowy streets", "a red car", "old tools", "a bridge at night", "food on a plate", "a tower",
    "a woolen hat", "santa claus", "a man jumping", "a dog on a chair", "a harbour", "an old church",
]  # fmt: skip
SCENES = ("", " at dusk", " in winter", " seen from above")
# (column, script, CLIPSEARCH_ENGINE, CLIPSEARCH_TEXT_PRECISION, URL parameters): the ONNX runs share one export
# cache, empty before the first; "CLIP alone" searches with Match names off, the others also match the words
# as text.
RUNS: tuple[tuple[str, str, str, str, dict[str, str]], ...] = (
    ("reference", "scripts/reference_page.py", "auto", "float32", {}),
    ("torch", "streamlit_app.py", "torch", "float32", {}),
    ("onnx 1st start", "streamlit_app.py", "onnx", "float32", {}),
    ("onnx", "streamlit_app.py", "onnx", "float32", {}),
    ("onnx CLIP alone", "streamlit_app.py", "onnx", "float32", {"text": "false"}),
    ("onnx int8", "streamlit_app.py", "onnx", "int8", {}),
)
DONE = """([query]) => {
  const heading = [...document.querySelectorAll('[data-testid="stMarkdownContainer"]')]
    .some(element => element.innerText.includes('Photos matching ' + query));
  // The minimal page's images, or those in the shadow root of clipsearch's gallery.
  const images = [...document.querySelectorAll('[data-testid="stImage"] img'),
    ...[...document.querySelectorAll('.st-key-gallery *')]
      .flatMap(element => element.shadowRoot ? [...element.shadowRoot.querySelectorAll('img')] : [])];
  return heading && !document.querySelector('[data-stale="true"]') && images.length === 12
    && images.every(image => image.complete && image.naturalWidth > 0);
}"""


@dataclass
class Measured:
    """One page of the run: its tab, its process, and what was timed of it."""

    page: Page
    process: subprocess.Popen[bytes]
    cold_s: float
    rss_first_kb: dict[str, int]
    trips: list[float] = field(default_factory=list)

    def row(self) -> dict[str, float]:
        return {
            "cold_s": self.cold_s,
            "median_ms": statistics.median(self.trips) * 1e3,
            "min_ms": min(self.trips) * 1e3,
            "rss_first_mb": self.rss_first_kb["VmRSS"] / 1024,
            "anon_first_mb": self.rss_first_kb["RssAnon"] / 1024,
            "file_first_mb": self.rss_first_kb["RssFile"] / 1024,
            "peak_mb": memory_kb(self.process.pid, "VmHWM") / 1024,
        }


def start(
    stack: ExitStack, script: str, env: dict[str, str], query: str, page: Page, log: Path, params: dict[str, str]
) -> Measured:
    """`streamlit run` of the script, opened with ?q=: the cold start, and the memory after the first query."""
    started = time.perf_counter()
    url, process = stack.enter_context(streamlit_page(script, env, ROOT, log))  # the first request once it listens
    page.goto(f"{url}/?{urllib.parse.urlencode({'q': query, **params})}")
    page.wait_for_function(DONE, arg=[query], timeout=300_000, polling="raf")
    cold = time.perf_counter() - started
    return Measured(
        page, process, cold, {field: memory_kb(process.pid, field) for field in ("VmRSS", "RssAnon", "RssFile")}
    )


def round_trip(measured: Measured, query: str) -> None:
    box = measured.page.get_by_label("Describe the photo you are looking for, then press Enter")
    box.fill(query)
    started = time.perf_counter()
    box.press("Enter")
    measured.page.wait_for_function(DONE, arg=[query], timeout=120_000, polling="raf")
    measured.trips.append(time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=30, help="round trips to time (after the cold start)")
    parser.add_argument("--pretrained", help=PRETRAINED_HELP)
    parser.add_argument("--photos", type=Path, default=ROOT / "photos")
    args = parser.parse_args()
    if not 1 <= args.queries < len(QUERIES) * len(SCENES):
        parser.error(f"--queries: 1 to {len(QUERIES) * len(SCENES) - 1} (the distinct queries it has)")
    # All distinct: a repeated query would be served from the page's cache of encoded terms.
    queries = [f"{query}{scene}" for scene in SCENES for query in QUERIES][: args.queries + 1]

    with scratch_and_weights(args.pretrained) as (scratch, pretrained):
        server = EmbeddedServer(scratch / "data")
        settings = Settings(data_dir=server.data_dir, index_name="bench-page", pretrained=pretrained)
        env = page_environment(settings, pretrained, scratch, args.photos)
        try:
            library = Library(settings, image_encoder=partial(load_image_encoder_with_torch, settings))
            library.index_folder(args.photos, LoadOptions(), show_bar=False)
            del library
            with sync_playwright() as playwright, ExitStack() as stack:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                pages = {}
                for name, script, engine, precision, params in RUNS:  # cold starts, one after the other
                    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                    run_env = {**env, "CLIPSEARCH_ENGINE": engine, "CLIPSEARCH_TEXT_PRECISION": precision}
                    pages[name] = start(stack, script, run_env, queries[0], page, scratch / f"{name}.log", params)
                for query in queries[1:]:  # then each query on every page in turn: the same moment's machine
                    for measured in pages.values():
                        round_trip(measured, query)
                results = {name: measured.row() for name, measured in pages.items()}
                browser.close()
        finally:
            server.stop()

    print(f"{args.queries} queries after a cold start with ?q=, 204 photos")
    print(f"{'':28}" + "".join(f"{name:>16}" for name in results))
    rows = (
        ("median_ms", "round trip median (ms)", "{:16.0f}"),
        ("min_ms", "round trip min (ms)", "{:16.0f}"),
        ("rss_first_mb", "RSS after first query (MB)", "{:16.0f}"),
        ("anon_first_mb", "  anonymous (MB)", "{:16.0f}"),
        ("file_first_mb", "  mapped files (MB)", "{:16.0f}"),
        ("peak_mb", "peak RSS (MB)", "{:16.0f}"),
        ("cold_s", "cold start to results (s)", "{:16.1f}"),
    )
    reference = results["reference"]
    for key, label, number in rows:
        print(f"{label:28}" + "".join(number.format(result[key]) for result in results.values()))
        if key in ("median_ms", "min_ms"):
            ratios = "".join(f"{result[key] / reference[key]:15.2f}x" for result in results.values())
            print(f"{'  ratio to reference':28}{ratios}")


def load_image_encoder_with_torch(settings: Settings) -> ImageEncoding:
    """The loader's encoder: torch, so that the ONNX runs of the page start with an empty export cache."""
    return load_image_encoder(replace(settings.model, engine="torch"))


if __name__ == "__main__":
    main()
