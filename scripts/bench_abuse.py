"""Hostile links and uploads against a real `streamlit run`: what each costs the page, and another visitor.

Usage: python scripts/bench_abuse.py [--checkout DIR] [--seconds-per-request 60] [--pretrained TAG_OR_FILE]

Indexes the sample photos into a private embedded server (the model's towers exported beforehand: this times
requests, not a first start), starts the page of --checkout (default: this one; another checkout, such as
main's, gives the figures to compare with, from the same command), and drives Debian's Chromium. First a
visitor searches alone: the quiet latency, from pressing Enter to 12 loaded results. Then, for each hostile
request: it is sent alone, and the page process's CPU seconds are counted until it has been idle for a
second (at most --seconds-per-request), with its anonymous memory (RssAnon: what the process holds of its
own) sampled every 50 ms (the peak's rise over the memory before, and what it kept after) and the mapped
files it paged in (RssFile: page cache the kernel can share and reclaim); then it is sent again while the
visitor searches, for the visitor's median latency against the quiet one. The page starts warm: both
towers loaded by one ordinary photo search, whose weights are not any later request's cost. Targets: at
most 1 s of CPU and 200 MB per request, the visitor within 2x.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import string
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchkit import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PRETRAINED_HELP,
    cpu_seconds,
    memory_kb,
    scratch_and_weights,
    streamlit_page,
)
from PIL import Image
from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from clipsearch.index.server import EmbeddedServer
from clipsearch.ingest.loader import LoadOptions
from clipsearch.library import Library
from clipsearch.model.engine import load_text_encoder
from clipsearch.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
VISITOR_WORDS = ["a cat", "snowy streets", "a red car", "old tools", "a bridge", "food", "a tower", "a harbour"]
DONE = """([query]) => {
  const heading = [...document.querySelectorAll('[data-testid="stMarkdownContainer"]')]
    .some(element => element.innerText.includes('Photos matching ' + query));
  const images = [...document.querySelectorAll('.st-key-gallery *')]
    .flatMap(element => element.shadowRoot ? [...element.shadowRoot.querySelectorAll('img')] : []);
  return heading && !document.querySelector('[data-stale="true"]') && images.length >= 1
    && images.every(image => image.complete && image.naturalWidth > 0);
}"""


@dataclass(frozen=True)
class Hostile:
    name: str
    link: dict[str, str]
    upload: Callable[[Path], Path] | None = None  # makes the file to upload, in the scratch folder


def png(mode: str, fill: object) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / f"canvas-{mode.replace(';', '')}.png"
        Image.new(mode, (7071, 7071), fill).save(path)  # type: ignore[arg-type]
        return path

    return make


def progressive_jpeg(folder: Path) -> Path:
    path = folder / "canvas-progressive.jpg"
    Image.new("RGB", (7071, 7071), (10, 200, 30)).save(path, "JPEG", progressive=True, quality=50)
    return path


HOSTILE = [
    Hostile("q: a, 60,000 spaces, b", {"q": "a" + " " * 60_000 + "b"}),
    Hostile("q: a, 30,000 ' +', b", {"q": "a" + " +" * 30_000 + " b"}),
    Hostile("q: 16,000 digits", {"q": "1" * 16_000 + "x"}),
    Hostile("q: 4,000 terms", {"q": " + ".join(f"dog{i}" for i in range(4000))}),
    Hostile("q: a 20,000-letter word", {"q": "".join(random.Random(0).choices(string.ascii_lowercase, k=20_000))}),
    Hostile("q: 1e39:dog + cat", {"q": "1e39:dog + cat"}),
    Hostile("q=dog&folder=%20", {"q": "dog", "folder": " "}),
    Hostile("view=duplicates&dup=0.8", {"view": "duplicates", "dup": "0.8"}),
    Hostile("90 KB of parameters", {"q": "cat", **{f"p{i}": "x" * 9000 for i in range(10)}}),
    Hostile("upload: 7071^2 RGBA PNG", {}, png("RGBA", (10, 200, 30, 128))),
    Hostile("upload: 7071^2 16-bit grey PNG", {}, png("I;16", 300)),
    Hostile("upload: 7071^2 progressive JPEG", {}, progressive_jpeg),
]  # fmt: skip


def search(page: Page, url: str, query: str) -> float:
    """Seconds from opening a search link to its results, loaded."""
    started = time.perf_counter()
    page.goto(f"{url}/?{urllib.parse.urlencode({'q': query})}")
    page.wait_for_function(DONE, arg=[query], timeout=120_000, polling="raf")
    return time.perf_counter() - started


IDLE_WAIT_S = 60  # after the page answered, at most this long for its process to go quiet
# The page has answered a request: results, a message, or the duplicates view's summary, and no run under way.
SETTLED = """() => !document.querySelector('[data-testid="stStatusWidget"]') && !!(
  document.querySelector('[data-testid="stAlert"]') || document.querySelector('.st-key-gallery img')
  || [...document.querySelectorAll('[data-testid="stMarkdownContainer"]')].some(e => e.innerText.includes('groups')))"""


def send(page: Page, url: str, hostile: Hostile, upload: Path | None, limit: float) -> str:
    """Send the request and wait until the page has answered it (at most `limit` seconds): how it ended."""
    response = page.goto(f"{url}/?{urllib.parse.urlencode(hostile.link)}", timeout=120_000)
    if response is not None and response.status >= 400:
        return f"HTTP {response.status} from the web server"
    try:
        if upload is not None:
            page.get_by_text("Photo", exact=True).click(timeout=limit * 1000)
            page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(upload))
            page.wait_for_timeout(500)  # the upload's run starts
        page.wait_for_function(SETTLED, timeout=limit * 1000, polling=100)
    except PlaywrightTimeout:
        return f"no answer in {limit:.0f} s"
    return "answered"


def measured(pid: int, request: Callable[[], str]) -> tuple[str, float, int]:
    """request()'s outcome, the CPU seconds the page used until it answered and then was idle for a second,
    and the page's largest anonymous memory (kB) meanwhile, sampled every 50 ms."""
    peak = memory_kb(pid, "RssAnon")
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, memory_kb(pid, "RssAnon"))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    started = cpu_seconds(pid)
    sampler.start()
    outcome = request()
    last, deadline = cpu_seconds(pid), time.monotonic() + IDLE_WAIT_S
    while time.monotonic() < deadline:  # idle: under 0.05 s of CPU in a second
        time.sleep(1.0)
        now = cpu_seconds(pid)
        if now - last < 0.05:
            break
        last = now
    done.set()
    sampler.join()
    return outcome, cpu_seconds(pid) - started, peak


def visitor_latencies(url: str, stop: threading.Event, out: list[float]) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        number = 0
        while not stop.is_set():
            number += 1
            try:
                out.append(search(page, url, f"{VISITOR_WORDS[number % len(VISITOR_WORDS)]} {number}"))
            except Exception:  # a search that never came back within its time-out
                out.append(float("inf"))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the clipsearch checkout whose page to run")
    parser.add_argument("--seconds-per-request", type=float, default=60.0)
    parser.add_argument("--pretrained", help=PRETRAINED_HELP)
    args = parser.parse_args()
    checkout = args.checkout.resolve()

    with scratch_and_weights(args.pretrained) as (scratch, pretrained):
        server = EmbeddedServer(scratch / "data")
        settings = Settings(
            data_dir=server.data_dir, index_name="bench-abuse", pretrained=pretrained, onnx_cache=scratch / "onnx"
        )
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("CLIPSEARCH_", "VALKEY_URL"))},
            "CLIPSEARCH_ONNX_CACHE": str(settings.onnx_cache),
            "CLIPSEARCH_DATA_DIR": str(server.data_dir),
            "CLIPSEARCH_INDEX": settings.index_name,
            "CLIPSEARCH_PRETRAINED": pretrained,
            "CLIPSEARCH_PHOTOS": str(ROOT / "photos"),
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(checkout),
        }
        rows = []
        try:
            Library(settings).index_folder(ROOT / "photos", LoadOptions(), show_bar=False)
            load_text_encoder(settings.model)  # both towers exported: the page starts warm
            with streamlit_page("streamlit_app.py", env, checkout, scratch / "page.log") as (url, process):
                with sync_playwright() as playwright:
                    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                    visitor = browser.new_page(viewport={"width": 1400, "height": 1000})
                    search(visitor, url, "warm up")
                    photo = ROOT / "photos" / "kingfisher.jpg"
                    warm = send(visitor, url, Hostile("a photo", {}), photo, 300)  # both towers loaded
                    assert warm == "answered", warm
                    quiet = statistics.median(search(visitor, url, f"{word} quiet") for word in VISITOR_WORDS)
                    print(f"quiet search: {quiet * 1e3:.0f} ms (median of {len(VISITOR_WORDS)})", flush=True)
                    hostile_page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    limit = args.seconds_per_request
                    for hostile in HOSTILE:
                        upload = hostile.upload(scratch) if hostile.upload else None

                        def request(hostile: Hostile = hostile, upload: Path | None = upload) -> str:
                            return send(hostile_page, url, hostile, upload, limit)

                        anon_before, file_before = (memory_kb(process.pid, kind) for kind in ("RssAnon", "RssFile"))
                        outcome, cpu, peak = measured(process.pid, request)
                        kept = memory_kb(process.pid, "RssAnon") - anon_before
                        mapped = memory_kb(process.pid, "RssFile") - file_before
                        latencies: list[float] = []
                        stop = threading.Event()
                        beside = threading.Thread(target=visitor_latencies, args=(url, stop, latencies))
                        beside.start()
                        time.sleep(1.0)  # the visitor's browser starts
                        measured(process.pid, request)
                        stop.set()
                        beside.join()
                        hostile_page.goto("about:blank")
                        during = statistics.median(latencies) if latencies else float("inf")
                        rise = (peak - anon_before) / 1024
                        row = (hostile.name, outcome, cpu, rise, kept / 1024, mapped / 1024, during / quiet)
                        rows.append(row)
                        print(
                            "{:34} {:28} {:7.2f} s {:6.0f} MB {:6.0f} MB {:6.0f} MB {:6.2f}x".format(*row), flush=True
                        )
                    browser.close()
                alive = process.poll() is None
        finally:
            server.stop()

    print(f"\n{checkout}: page {'still up' if alive else 'DOWN'} after the requests; quiet search {quiet * 1e3:.0f} ms")
    print("| request | page | CPU (s) | memory peak rise (MB) | kept (MB) | mapped files (MB) | visitor vs quiet |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, outcome, cpu, rise, kept_mb, mapped_mb, ratio in rows:
        print(f"| {name} | {outcome} | {cpu:.2f} | {rise:.0f} | {kept_mb:.0f} | {mapped_mb:.0f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
