"""The library-scale benchmarks run, in their quick modes: docs/benchmarks.md has their numbers."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

# Each benchmark runs every backend it finds; CI has valkey-search (tests/conftest.py fails without it there).
VALKEY_SEARCH = Path(__file__).resolve().parents[3] / "shared" / "valkey-search" / "libsearch.so"
BACKENDS = ("redisearch", "valkey-search", "cluster") if VALKEY_SEARCH.is_file() else ("redisearch",)


@pytest.fixture
def bench_env(tmp_path: Path) -> dict[str, str]:
    """The benchmarks' own caches (their exports of the random model among them), not the user's."""
    return {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}


def test_the_scale_benchmark_runs(run_cli, bench_env: dict[str, str]) -> None:
    done = run_cli(bench_env, "--quick", script="scripts/bench_search.py", timeout=600)
    assert done.returncode == 0, done.stderr
    for line in ("clustered 2,000 photos, FLAT", "hard 2,000 photos, HNSW", "EF_RUNTIME 400, folder filter"):
        assert line in done.stdout
    for backend in BACKENDS:
        assert f"{backend}: hard 2,000 photos, HNSW" in done.stdout


def test_the_duplicates_benchmark_runs(run_cli, bench_env: dict[str, str]) -> None:
    done = run_cli(bench_env, "--quick", script="scripts/bench_duplicates.py", timeout=600)
    assert done.returncode == 0, done.stderr
    for line in (
        "redisearch: 2,000 photos, FLAT",
        "clipsearch duplicates (blocks of vectors)",
        "baseline (all vectors",
        "groups found exactly",
    ):
        assert line in done.stdout
    for backend in BACKENDS:
        assert f"{backend}: 2,000 photos, FLAT" in done.stdout


def test_the_full_size_loader_benchmark_runs(
    run_cli, bench_env: dict[str, str], random_checkpoint: Path, sample_photos: Path
) -> None:
    args = [str(sample_photos), "--twelve-mp", "4", "--heic", "1", "--batch-size", "2", "--pretrained"]
    done = run_cli(bench_env, *args, str(random_checkpoint), script="scripts/bench_loader.py", timeout=900)
    assert done.returncode == 0, done.stderr
    for line in ("model forward alone", "ratio clipsearch/onnx forward alone", "1 HEIC photos", "scaled against full"):
        assert line in done.stdout


def test_the_library_view_benchmark_runs(run_cli, bench_env: dict[str, str], random_checkpoint: Path) -> None:
    args = ["--count", "500", "--backends", ",".join(BACKENDS), "--pretrained", str(random_checkpoint)]
    done = run_cli(bench_env, *args, script="scripts/bench_library.py", timeout=900)
    assert done.returncode == 0, done.stderr
    for line in ("library view over 500 synthetic photos", "first render (s)", "ratio to the scan", "months drawn"):
        assert line in done.stdout
    assert done.stdout.split("\n")[1].split() == list(BACKENDS)


def test_the_visitors_benchmark_runs(
    run_cli, bench_env: dict[str, str], random_checkpoint: Path, copy_photos, sample_photos: Path, tmp_path: Path
) -> None:
    photos = copy_photos(tmp_path / "photos", sorted(path.name for path in sample_photos.glob("*.jpg"))[:16])
    args = ["--visitors", "2", "--seconds", "2", "--photos", str(photos), "--pretrained", str(random_checkpoint)]
    done = run_cli(bench_env, *args, script="scripts/bench_visitors.py", timeout=900)
    assert done.returncode == 0, done.stderr
    for line in ("2 visitors at once", "runs a second", "ratio to minimal", "page CPU a run (ms)", "outside search"):
        assert line in done.stdout
    assert done.stdout.split("\n")[1].split() == ["minimal", "search", "library", "duplicates"]


def test_the_understanding_benchmark_runs(run_cli, bench_env: dict[str, str]) -> None:
    done = run_cli(bench_env, "--places", "300", "--repeats", "3", script="scripts/bench_understanding.py")
    assert done.returncode == 0, done.stderr
    for line in ("vocabulary of 300 places and 5 cameras", "longest, places and dates          1000"):
        assert line in done.stdout


def test_the_reading_benchmarks_run(run_cli, bench_env: dict[str, str], random_checkpoint: Path, sample_photos):
    reading = run_cli(bench_env, "--plain", "2", script="scripts/bench_reading.py", timeout=600)
    assert reading.returncode == 0, reading.stderr
    assert "reading side 1280: 7 photos with text, 2 without" in reading.stdout and "0.80" in reading.stdout
    args = [str(sample_photos), "--limit", "3", "--pretrained", str(random_checkpoint)]
    loading = run_cli(bench_env, *args, script="scripts/bench_read_text.py", timeout=900)
    assert loading.returncode == 0, loading.stderr
    for line in ("3 photos", "encoding and reading text", "the pass over an index made without", "peak RSS"):
        assert line in loading.stdout


def test_the_fusion_benchmark_runs(run_cli, bench_env: dict[str, str], random_checkpoint: Path, sample_photos):
    args = ["--photos", str(sample_photos), "--samples", "3", "--pretrained", str(random_checkpoint)]
    done = run_cli(bench_env, *args, script="scripts/bench_fusion.py", timeout=900)
    assert done.returncode == 0, done.stderr
    rows = dict(re.findall(r"^\s*(CLIP alone|RRF k=\d+)\s+(\d\.\d{3})\s", done.stdout, re.MULTILINE))
    assert {"CLIP alone", "RRF k=60"} <= rows.keys(), done.stdout
    assert rows["RRF k=60"] == "1.000", done.stdout  # the photo the words name ranks first in every search
