"""What reading the text in photos costs the loader: `python -m clipsearch index` run as users run it, each in
a fresh process on a fresh index, without and with --read-text, and the pass that reads the text of an index
made without it (encoding nothing). Photos per second and the process's peak RSS for each, and the ratios to
the run without reading.

Usage: python scripts/bench_read_text.py FOLDER [--limit N] [--twelve-mp N] [--pretrained TAG_OR_FILE]

With --twelve-mp N, the photos are N camera-sized JPEGs made from FOLDER's (bench_loader's, 4032x3024 with
sensor-like noise). Speed does not depend on the weights: without --pretrained a ViT-B-32 with random
weights is timed. Its ONNX export is made before the runs, so that no run pays for it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from bench_loader import make_camera_photos
from benchkit import PRETRAINED_HELP, scratch_and_weights

from clipsearch.ingest.files import walk_photos

# Runs a command and prints its peak RSS (KiB) last. A small process starts it: a child forked straight from
# this one (which holds torch) would count this one's memory in its peak, since Linux keeps the high-water
# mark of the memory a process had when it calls exec.
MEASURED = """
import os, subprocess, sys
process = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(process.pid, 0)
print(f"peak-rss-kib {usage.ru_maxrss}", flush=True)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run(environment: dict[str, str], *args: str) -> tuple[float, int, str]:
    """Seconds, peak RSS in MiB and the output of `python -m clipsearch ARGS` in a process of its own."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", MEASURED, sys.executable, "-m", "clipsearch", *args],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"clipsearch {' '.join(args)} failed:\n{done.stdout}")
    peak = int(done.stdout.rsplit("peak-rss-kib ", 1)[1])
    return seconds, peak // 1024, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N photos")
    parser.add_argument("--twelve-mp", type=int, default=0, metavar="N", help="time N generated 12-MP JPEGs")
    parser.add_argument("--pretrained", help=PRETRAINED_HELP)
    args = parser.parse_args()
    with scratch_and_weights(args.pretrained) as (scratch, pretrained):
        chosen = [entry for entry in walk_photos(args.folder) if entry.problem is None]
        if args.twelve_mp:
            photos = make_camera_photos(chosen, scratch / "jpeg", args.twelve_mp, "JPEG")
        else:
            photos = scratch / "photos"
            photos.mkdir()
            for photo in chosen[: args.limit] if args.limit else chosen:
                (photos / photo.relpath.replace("/", "_")).symlink_to(photo.path.resolve())
        count = sum(1 for entry in walk_photos(photos) if entry.problem is None)
        environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("CLIPSEARCH_", "VALKEY_URL"))},
            "CLIPSEARCH_DATA_DIR": str(scratch / "data"),
            "CLIPSEARCH_PRETRAINED": pretrained,
            "CLIPSEARCH_ONNX_CACHE": str(scratch / "onnx"),
        }
        run(environment, "export")
        runs: dict[str, tuple[float, int, str]] = {}
        try:
            for name, index, extra in (
                ("encoding alone", "plain", ()),
                ("encoding and reading text", "read", ("--read-text",)),
                ("the pass over an index made without", "plain", ("--read-text",)),
            ):
                runs[name] = run({**environment, "CLIPSEARCH_INDEX": index}, "index", str(photos), *extra)
        finally:
            subprocess.run([sys.executable, "-m", "clipsearch", "server", "stop"], env=environment, capture_output=True)
    print(f"{count} photos{' (12-MP JPEGs)' if args.twelve_mp else ''}, {os.cpu_count()} cores:")
    base = count / runs["encoding alone"][0]
    for name, (seconds, peak, output) in runs.items():
        rate = count / seconds
        print(f"  {name:>42}: {seconds:7.1f} s  {rate:6.2f} photos/s ({rate / base:.2f}x)  peak RSS {peak:,} MiB")
        if "read the text" in output:
            print("    " + next(line.strip() for line in output.splitlines() if "read the text" in line))


if __name__ == "__main__":
    main()
