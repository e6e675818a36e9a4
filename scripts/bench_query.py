"""One query's cost: the text encoder against plain open_clip, and KNN + HMGET at 25,000 photos.

Usage: python scripts/bench_query.py [--count 25000] [--repeats 50] [--pretrained TAG_OR_FILE] [--photos DIR]

Text: open_clip's own model.encode_text(tokenizer(...)) on the full model, clipsearch's torch
TorchTextEncoder and its ONNX Runtime encoder in float32 and in int8 (CLIPSEARCH_TEXT_PRECISION; int8 is
what the page runs by default), taking turns over the same varied queries in the same process: wall and
CPU time a query, and how far each is from open_clip's vectors (the largest difference, the smallest cosine).
Then what int8 changes in the rankings: the photos of --photos (default: the sample photos) encoded by the
image tower, and 300 queries made of their words searched with each text tower: how many of the 12 nearest
are the same, how often the first is, the largest change of a score. Search: PhotoStore.search with the page's fields
(thumbnails included: 12 synthetic 11 KiB thumbnails) on an embedded server holding --count
vectors in two collections (see collections()), for FLAT and the default HNSW, against results.find as the
page runs it (near-duplicates folded: KNN of 32 candidates or more, their vectors, then the fields of the 12
shown) and with variety 0.5 (48 candidates or more), in turn on the same queries. Without --pretrained the
model has random weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import open_clip
import torch
from benchkit import PRETRAINED_HELP, scratch_and_weights

from clipsearch.index.connection import connect
from clipsearch.index.schema import PHOTO_FIELDS, IndexSchema, PhotoRecord
from clipsearch.index.server import EmbeddedServer
from clipsearch.index.store import CheckedStore, PhotoStore
from clipsearch.ingest.decoding import decode_photo
from clipsearch.ingest.files import read_file
from clipsearch.model.engine import TextEncoding, load_image_encoder, load_text_encoder
from clipsearch.model.identity import ModelIdentity
from clipsearch.search.results import SearchOptions, find
from clipsearch.settings import Settings

FOLDING = SearchOptions(k=12, duplicate_similarity=0.95)
VARIED = SearchOptions(k=12, duplicate_similarity=0.95, variety=0.5)
QUERIES = [
    "a cat",
    "snowy streets at night",
    "a red car parked next to a brick wall",
    "two children playing football on a beach at sunset, with a dog running after the ball",
    "santa claus",
    "a bowl of ramen",
]


def percentiles(seconds: list[float]) -> tuple[float, float]:
    p50, p95 = np.percentile(np.array(seconds) * 1e3, [50, 95])
    return float(p50), float(p95)


def time_text(pretrained: str, repeats: int) -> None:
    onnx = Settings(pretrained=pretrained, engine="onnx")
    engines: dict[str, TextEncoding] = {
        "torch TorchTextEncoder (EOT cut)": load_text_encoder(Settings(pretrained=pretrained, engine="torch").model),
        "ONNX Runtime float32": load_text_encoder(dataclasses.replace(onnx, text_precision="float32").model),
        "ONNX Runtime int8": load_text_encoder(dataclasses.replace(onnx, text_precision="int8").model),
    }
    model, _, _ = open_clip.create_model_and_transforms("ViT-B-32", pretrained=pretrained)
    model.eval()
    tokenizer = open_clip.get_tokenizer("ViT-B-32")

    @torch.inference_mode()
    def plain(text: str) -> np.ndarray:
        features = model.encode_text(tokenizer([text]))
        return torch.nn.functional.normalize(features, dim=-1)[0].numpy()

    def runner(encoder: TextEncoding) -> Callable[[str], np.ndarray]:
        return lambda text: encoder.encode_text([text])[0]

    # Each engine runs all the queries in turn, round after round, with an untimed call first: alternating
    # call by call would time ONNX Runtime against torch's OpenMP threads, which spin on after their work.
    runners: dict[str, Callable[[str], np.ndarray]] = {"open_clip encode_text": plain}
    runners |= {name: runner(encoder) for name, encoder in engines.items()}
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    cpu = dict.fromkeys(runners, 0.0)
    worst = dict.fromkeys(engines, 0.0)
    least_cosine = dict.fromkeys(engines, 1.0)
    expected = {query: plain(query) for query in QUERIES}
    for _ in range(max(1, repeats // len(QUERIES))):
        for name, run in runners.items():
            run(QUERIES[-1])
            for query in QUERIES:
                started, cpu_started = time.perf_counter(), time.process_time()
                vector = run(query)
                seconds[name].append(time.perf_counter() - started)
                cpu[name] += time.process_time() - cpu_started
                if name in worst:
                    worst[name] = max(worst[name], float(np.abs(vector - expected[query]).max()))
                    least_cosine[name] = min(least_cosine[name], float(vector @ expected[query]))
    p50s = {name: percentiles(times)[0] for name, times in seconds.items()}
    print(f"text query, {repeats} runs over {len(QUERIES)} queries, {torch.get_num_threads()} torch threads")
    for name, times in seconds.items():
        p50, p95 = percentiles(times)
        ratios = f"{p50 / p50s['open_clip encode_text']:.2f}x open_clip"
        if name.startswith("ONNX"):
            ratios += f", {p50 / p50s['ONNX Runtime float32']:.2f}x ONNX float32"
        difference = f"  max diff {worst[name]:.1e}, cosine >= {least_cosine[name]:.5f}" if name in worst else ""
        print(f"  {name:<33} p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  CPU {1e3 * cpu[name] / len(times):5.1f} ms"
              f"  ({ratios}){difference}")  # fmt: skip


def rank_agreement(pretrained: str, photos: Path) -> None:
    """What the int8 text tower changes in the rankings of real photos, against the float32 tower."""
    model = Settings(pretrained=pretrained, engine="onnx").model
    image = load_image_encoder(model, batches=True)
    files = sorted(path for path in photos.iterdir() if path.suffix.lower() in (".jpg", ".jpeg", ".png"))
    vectors = np.concatenate(
        [image.encode_images([decode_photo(read_file(path)) for path in files[start : start + 16]])
         for start in range(0, len(files), 16)]
    )  # fmt: skip
    words = sorted({word for path in files for word in re.findall(r"[a-z]{3,}", path.stem.lower())})
    rng = np.random.default_rng(0)
    queries = [" ".join(rng.choice(words, rng.integers(1, 5))) for _ in range(300)]
    towers = {precision: load_text_encoder(dataclasses.replace(model, text_precision=precision))
              for precision in ("float32", "int8")}  # fmt: skip
    scores = {precision: tower.encode_text(queries) @ vectors.T for precision, tower in towers.items()}
    exact, int8 = (np.argsort(-scores[precision], axis=1)[:, :12] for precision in ("float32", "int8"))
    kept = np.mean([len(set(a) & set(b)) / 12 for a, b in zip(exact, int8, strict=True)])
    ordered = np.sort(scores["float32"], axis=1)[:, ::-1]
    print(f"int8 against float32, {len(queries)} queries of the words of {len(files)} photos' names:")
    print(
        f"  of the 12 nearest, {kept:.1%} the same; the same first {np.mean(exact[:, 0] == int8[:, 0]):.1%}, "
        f"the same 12 in the same order {np.mean((exact == int8).all(axis=1)):.1%}; largest change of a score "
        f"{np.abs(scores['int8'] - scores['float32']).max():.4f} (median gap between the first two "
        f"{np.median(ordered[:, 0] - ordered[:, 1]):.4f}, scores {ordered.min():.3f} to {ordered.max():.3f})"
    )


def search_ways(store: CheckedStore) -> dict[str, Callable[[np.ndarray], int]]:
    """What a search of the page's 12 results costs, plain and as results.find runs it; each returns a count."""
    fields = (*PHOTO_FIELDS, "thumbnail")
    return {
        "PhotoStore.search": lambda query: len(store.nearest(query, k=12, fields=fields)),
        "find, folding (the page)": lambda query: len(find(store, query, FOLDING, fields=fields).shown),
        "find, folding + variety 0.5": lambda query: len(find(store, query, VARIED, fields=fields).shown),
    }


def collections(rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
    """Two synthetic collections in clusters of 50: "bursts", each photo with 49 others at cosine 0.999 (the
    worst case for folding: the index is asked for about 600 candidates to fill 12 results), and "no
    near-duplicates", the same clusters spread to cosine 0.55 (nothing folds)."""
    sets = {}
    for name, center_norm in (("bursts", None), ("no near-duplicates", 1.0)):
        centers = rng.standard_normal((count // 50, 512)).astype(np.float32)
        if center_norm is not None:
            centers /= np.linalg.norm(centers, axis=1, keepdims=True)
        vectors = centers[rng.integers(0, len(centers), count)] + 0.04 * rng.standard_normal((count, 512))
        sets[name] = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    return sets


def time_search(count: int, repeats: int, scratch: Path) -> None:
    rng = np.random.default_rng(0)
    thumbnail = rng.integers(0, 256, 11 * 1024, dtype=np.uint8).tobytes()
    server = EmbeddedServer(scratch / "data")
    base = Settings(data_dir=server.data_dir)
    model = ModelIdentity("synthetic", "clustered", 512)
    try:
        client = connect(base)
        print(f"KNN k=12 + HMGET of the page's fields, {count} photos with 11 KiB thumbnails, {repeats} queries")
        for number, (data, vectors) in enumerate(collections(rng, count).items()):
            for algorithm in ("FLAT", "HNSW"):
                index_name = f"{algorithm.lower()}-{number}"
                settings = dataclasses.replace(base, index_name=index_name, algorithm=algorithm)
                store = PhotoStore.open(client, IndexSchema.from_settings(settings, model), create=True)
                store.upsert(
                    PhotoRecord(f"{i}.jpg", v, thumbnail=thumbnail, source="file") for i, v in enumerate(vectors)
                )
                ways = search_ways(store)
                seconds: dict[str, list[float]] = {way: [] for way in ways}
                for query in vectors[rng.integers(0, count, repeats)]:
                    for way, run in ways.items():  # in turn, on the same query
                        started = time.perf_counter()
                        shown = run(query)
                        seconds[way].append(time.perf_counter() - started)
                        assert shown == 12
                base_p50 = percentiles(seconds["PhotoStore.search"])[0]
                for way, times in seconds.items():
                    p50, p95 = percentiles(times)
                    print(f"  {data:<18} {algorithm:<5} {way:<28} p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  "
                          f"({p50 / base_p50:.2f}x)")  # fmt: skip
                store.drop()
        client.close()
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=25_000)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--pretrained", help=PRETRAINED_HELP)
    parser.add_argument("--photos", type=Path, default=Path(__file__).resolve().parent.parent / "photos")
    args = parser.parse_args()
    with scratch_and_weights(args.pretrained) as (scratch, pretrained):
        time_text(pretrained, args.repeats)
        rank_agreement(pretrained, args.photos)
        time_search(args.count, args.repeats, scratch)


if __name__ == "__main__":
    main()
