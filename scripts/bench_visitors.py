"""How many visitors one page process serves: N visitors at once, each asking for a new run as soon as its
last one ended, against the minimal Streamlit page in the same run.

Usage: python scripts/bench_visitors.py [--visitors 20] [--seconds 30] [--views search,library,duplicates]
                                        [--checkout DIR] [--pretrained TAG_OR_FILE] [--text-precision int8]

Indexes the sample photos into a private embedded server, then starts `streamlit run` of
scripts/reference_page.py (a text box bound to ?q= and 12 captioned thumbnails with two buttons each: the
floor) and of the page of --checkout (default: this one; main's checkout gives the figures to compare with,
from the same command). Each visitor is a session of its own over Streamlit's websocket (scripts/visitors.py,
no browser: what is timed is the page process, not a renderer): on the search view it types a query never
asked before into the box and presses Enter, as fast as the page answers; on the library and duplicates
views it runs the view again. Meanwhile an outside visitor opens a search link in a session of its own
every second. For each view: runs a second over the window, their median and 95th percentile (request to
the end of the run), the page process's CPU per run (/proc), and the outside visitor's median. The page
starts warm: a first search loads its model and reads its index before the clock starts.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchkit import PRETRAINED_HELP, cpu_seconds, page_environment, scratch_and_weights, streamlit_page
from visitors import Visitor

from clipsearch.index.server import EmbeddedServer
from clipsearch.ingest.loader import LoadOptions
from clipsearch.library import Library
from clipsearch.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
QUERY_BOX = "Describe the photo you are looking for, then press Enter"
WORDS = ("a cat", "snowy streets", "a red car", "old tools", "a bridge", "food", "a tower", "a harbour", "a dog")
VIEWS = ("search", "library", "duplicates")


@dataclass(frozen=True)
class Load:
    view: str
    runs: int
    seconds: float
    latencies: list[float]
    cpu_seconds: float
    outside: list[float]

    @property
    def per_second(self) -> float:
        return self.runs / self.seconds


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def visit(url: str, view: str, number: int, start: threading.Barrier, deadline: list[float], out: list[float]) -> None:
    """One visitor: opens the view, waits for the others, then asks again as soon as each run ends."""
    visitor = Visitor(url)
    page = "" if view in ("search", "minimal") else view
    first = visitor.run(f"q=first+{number}" if page == "" else "", page=page)
    if first.exceptions:
        raise RuntimeError(f"{view}: {first.exceptions}")
    start.wait()
    asked = 0
    while time.perf_counter() < deadline[0]:
        asked += 1
        if page == "":
            run = visitor.type(QUERY_BOX, f"{WORDS[asked % len(WORDS)]} {number} {asked}")
        else:
            run = visitor.run("", page=page)
        if run.exceptions:
            raise RuntimeError(f"{view}: {run.exceptions}")
        if time.perf_counter() < deadline[0]:
            out.append(run.seconds)
    visitor.close()


def outside_visitor(url: str, stop: threading.Event, out: list[float]) -> None:
    """Someone else: opens a search link, in a session of its own, every second."""
    asked = 0
    while not stop.wait(1.0):
        asked += 1
        visitor = Visitor(url)
        out.append(visitor.run(f"q=a+lighthouse+{asked}").seconds)
        visitor.close()


def load(url: str, pid: int, view: str, visitors: int, seconds: float) -> Load:
    latencies: list[list[float]] = [[] for _ in range(visitors)]
    outside: list[float] = []
    deadline = [float("inf")]
    start = threading.Barrier(visitors + 1)
    threads = [
        threading.Thread(target=visit, args=(url, view, n, start, deadline, latencies[n])) for n in range(visitors)
    ]
    for thread in threads:
        thread.start()
    start.wait(timeout=600)
    began, cpu = time.perf_counter(), cpu_seconds(pid)
    deadline[0] = began + seconds
    stop = threading.Event()
    watcher = threading.Thread(target=outside_visitor, args=(url, stop, outside))
    watcher.start()
    for thread in threads:
        thread.join()
    elapsed, used = time.perf_counter() - began, cpu_seconds(pid) - cpu
    stop.set()
    watcher.join()
    every = [latency for mine in latencies for latency in mine]
    return Load(view, len(every), elapsed, every, used, outside)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visitors", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0, help="of load, per view")
    parser.add_argument("--views", default=",".join(VIEWS), help=f"of the page, comma-separated: {', '.join(VIEWS)}")
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the clipsearch checkout whose page to run")
    parser.add_argument("--pretrained", help=PRETRAINED_HELP)
    parser.add_argument("--text-precision", default="float32", help="the page's CLIPSEARCH_TEXT_PRECISION")
    parser.add_argument("--photos", type=Path, default=ROOT / "photos", help="the folder indexed (default photos/)")
    args = parser.parse_args()
    views = [view.strip() for view in args.views.split(",") if view.strip()]
    if unknown := set(views) - set(VIEWS):
        parser.error(f"--views: {', '.join(sorted(unknown))}? choose among {', '.join(VIEWS)}")
    checkout = args.checkout.resolve()

    with scratch_and_weights(args.pretrained) as (scratch, pretrained):
        server = EmbeddedServer(scratch / "data")
        settings = Settings(data_dir=server.data_dir, index_name="bench-visitors", pretrained=pretrained)
        env = page_environment(settings, pretrained, scratch, args.photos)
        loads: list[Load] = []
        try:
            Library(settings).index_folder(args.photos, LoadOptions(), show_bar=False)
            with streamlit_page(str(ROOT / "scripts" / "reference_page.py"), env, ROOT, scratch / "minimal.log") as (
                url,
                process,
            ):
                loads.append(load(url, process.pid, "minimal", args.visitors, args.seconds))
            page_env = {**env, "PYTHONPATH": str(checkout), "CLIPSEARCH_TEXT_PRECISION": args.text_precision}
            with streamlit_page("streamlit_app.py", page_env, checkout, scratch / "page.log") as (url, process):
                warm = Visitor(url)
                if warm.run("q=a+photo").exceptions:
                    raise RuntimeError(f"the page failed; see {scratch / 'page.log'}")
                warm.close()
                for view in views:
                    loads.append(load(url, process.pid, view, args.visitors, args.seconds))
        finally:
            server.stop()

    photos = sum(1 for path in args.photos.rglob("*") if path.suffix.lower() in (".jpg", ".jpeg", ".png"))
    tower = f"{args.text_precision} text tower"
    print(f"{checkout} ({tower}): {args.visitors} visitors at once, {args.seconds:g} s a view, {photos} photos")
    print(f"{'':26}" + "".join(f"{result.view:>13}" for result in loads))
    minimal = loads[0].per_second
    rows: tuple[tuple[str, Callable[[Load], str]], ...] = (
        ("runs a second", lambda r: f"{r.per_second:13.1f}"),
        ("  ratio to minimal", lambda r: f"{r.per_second / minimal:12.2f}x"),
        ("p50 (ms)", lambda r: f"{statistics.median(r.latencies) * 1e3:13.0f}"),
        ("p95 (ms)", lambda r: f"{percentile(r.latencies, 0.95) * 1e3:13.0f}"),
        ("page CPU a run (ms)", lambda r: f"{r.cpu_seconds / max(r.runs, 1) * 1e3:13.1f}"),
        ("outside search p50 (ms)", lambda r: f"{statistics.median(r.outside) * 1e3 if r.outside else 0:13.0f}"),
    )
    for label, cell in rows:
        print(f"{label:26}" + "".join(cell(result) for result in loads))


if __name__ == "__main__":
    main()
