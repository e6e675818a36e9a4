"""Loader throughput: the model forward alone on each engine, and the loader against it, in one process.

Usage: python scripts/bench_loader.py FOLDER [--limit N] [--batch-size 32] [--engine auto|onnx|torch]
                                      [--twelve-mp N [--heic N] [--keep DIR]] [--pretrained TAG_OR_FILE]

With --twelve-mp N, the photos timed are N camera-sized JPEGs made from FOLDER's photos (4032x3024,
upscaled, with sensor-like noise so that each file is 3 to 5 MB, EXIF orientation 1), and --heic N
adds a loader run over N such photos saved as HEIC; --keep DIR writes them there to be reused (by
`python -m clipsearch index DIR` for its peak memory, for one). The model input from scaled decoding is
then compared with full decoding's: mean absolute difference of the preprocessed pixels, and the
cosine between the resulting vectors.

First the image tower's forward alone (photos preprocessed beforehand, the same batches) through torch
and through ONNX Runtime: img/s and their ratio, and the largest difference between their vectors.
Then, with --engine's encoder, two runs index the same photos into fresh indexes on a private embedded
server, with the same batch size and thumbnails: a sequential baseline (read, decode and preprocess each
photo on the main thread, then encode and write the batch: no overlap) and clipsearch's pipelined loader.
Prints photos/s of each, the loader's ratio to the baseline and to its engine's forward alone. Speed does
not depend on the weights, so without --pretrained the script times a ViT-B-32 with random weights (saved
and loaded like a user's checkpoint).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from benchkit import PRETRAINED_HELP, scratch_and_weights
from PIL import Image

from clipsearch.index.schema import PhotoRecord
from clipsearch.index.server import EmbeddedServer
from clipsearch.index.store import PhotoStore
from clipsearch.ingest.decoding import DECODE_MARGIN, decode_photo, make_thumbnail
from clipsearch.ingest.files import PhotoFile, content_hash, read_file, walk_photos
from clipsearch.ingest.loader import LoadOptions, PhotoLoader
from clipsearch.library import Library
from clipsearch.model.engine import ImageEncoding, load_image_encoder
from clipsearch.settings import Settings


def forward_rate(encoder: ImageEncoding, pixels: list[np.ndarray], batch_size: int) -> tuple[float, np.ndarray]:
    """img/s of encode_pixels alone over the same batches the loader makes, and the vectors."""
    encoder.encode_pixels(pixels[:batch_size])  # warm-up: first calls allocate
    started = time.perf_counter()
    vectors = [encoder.encode_pixels(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)]
    return len(pixels) / (time.perf_counter() - started), np.concatenate(vectors)


def make_camera_photos(sources: list[PhotoFile], folder: Path, count: int, kind: str) -> Path:
    """`count` 12-megapixel photos made from `sources` (reused if the folder already holds them): upscaled to
    4032x3024 (or 3024x4032), with sensor-like noise, saved as a camera would (JPEG quality 92 or HEIC)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    suffix = ".jpg" if kind == "JPEG" else ".heic"
    for number in range(count):
        target = folder / f"IMG_{number:04d}{suffix}"
        if target.exists():
            continue
        image = decode_photo(read_file(sources[number % len(sources)].path))
        size = (4032, 3024) if image.width >= image.height else (3024, 4032)
        pixels = np.asarray(image.resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
        noise = rng.normal(0, 8 if kind == "JPEG" else 2, pixels.shape).astype(np.int16)
        noisy = Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))
        noisy.save(target, kind, quality=92 if kind == "JPEG" else 80, exif=Image.Exif().tobytes())
    return folder


def compare_scaled_decoding(encoder: ImageEncoding, photos: list[PhotoFile]) -> tuple[float, np.ndarray]:
    """How much the loader's scaled decoding changes the model input and the vectors, against every pixel."""
    side = DECODE_MARGIN * encoder.input_side
    full = [encoder.preprocess_image(decode_photo(read_file(photo.path))) for photo in photos]
    scaled = [encoder.preprocess_image(decode_photo(read_file(photo.path), at_least=side)) for photo in photos]
    difference = float(np.mean([np.abs(a - b).mean() for a, b in zip(full, scaled, strict=True)]))
    cosines = (encoder.encode_pixels(full) * encoder.encode_pixels(scaled)).sum(axis=1)
    return difference, cosines


def sequential_baseline(store: PhotoStore, encoder: ImageEncoding, photos: list[PhotoFile], batch_size: int) -> None:
    for start in range(0, len(photos), batch_size):
        batch = photos[start : start + batch_size]
        pixels, records = [], []
        for photo in batch:
            data = read_file(photo.path)
            image = decode_photo(data)
            pixels.append(encoder.preprocess_image(image))
            records.append((photo, image.size, content_hash(data), make_thumbnail(image, 256), len(data)))
        vectors = encoder.encode_pixels(pixels)
        store.upsert(
            PhotoRecord(p.relpath, v, p.path.name, w, h, size, p.mtime, digest, thumbnail=thumb)
            for (p, (w, h), digest, thumb, size), v in zip(records, vectors, strict=True)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N photos")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--engine", choices=("auto", "onnx", "torch"), default="auto", help="for the loader runs")
    parser.add_argument("--twelve-mp", type=int, default=0, metavar="N", help="time N generated 12-MP JPEGs")
    parser.add_argument("--heic", type=int, default=0, metavar="N", help="and N generated 12-MP HEIC photos")
    parser.add_argument("--keep", type=Path, help="write the generated photos to this folder")
    parser.add_argument("--pretrained", help=PRETRAINED_HELP)
    args = parser.parse_args()

    with scratch_and_weights(args.pretrained) as (scratch, pretrained):
        engines = {
            engine: load_image_encoder(Settings(pretrained=pretrained, engine=engine).model)
            for engine in ("torch", "onnx")
        }
        chosen = [entry for entry in walk_photos(args.folder) if entry.problem is None]
        generated = args.keep or scratch
        if args.twelve_mp:
            subset = make_camera_photos(chosen, generated / "jpeg", args.twelve_mp, "JPEG")
        else:  # both runs read the same photos: links to the first --limit ones
            subset = scratch / "photos"
            subset.mkdir()
            for photo in chosen[: args.limit] if args.limit else chosen:
                (subset / photo.relpath.replace("/", "_")).symlink_to(photo.path.resolve())
        heic = make_camera_photos(chosen, generated / "heic", args.heic, "HEIF") if args.heic else None
        photos = [entry for entry in walk_photos(subset) if entry.problem is None]
        pixels = [engines["torch"].preprocess_image(decode_photo(read_file(photo.path))) for photo in photos]
        forward = {}
        for engine, engine_encoder in engines.items():
            forward[engine] = forward_rate(engine_encoder, pixels, args.batch_size)
        encoder = load_image_encoder(Settings(pretrained=pretrained, engine=args.engine).model)
        engine_name = "onnx" if type(encoder) is type(engines["onnx"]) else "torch"
        scaled = compare_scaled_decoding(encoder, photos[:16]) if args.twelve_mp else None
        del engines, pixels
        server = EmbeddedServer(scratch / "data")
        try:
            timings = {}
            for name in ("baseline", "clipsearch"):
                settings = Settings(data_dir=server.data_dir, index_name=f"bench-{name}")
                store = Library(settings, image_encoder=lambda: encoder).store(create=True)
                started = time.perf_counter()
                if name == "baseline":
                    sequential_baseline(store, encoder, photos, args.batch_size)
                else:
                    PhotoLoader(
                        store, lambda: encoder, LoadOptions(batch_size=args.batch_size), show_bar=False
                    ).index_folder(subset)
                timings[name] = time.perf_counter() - started
                assert store.count() == len(photos), (name, store.count(), len(photos))
            if heic is not None:
                heic_settings = Settings(data_dir=server.data_dir, index_name="bench-heic")
                store = Library(heic_settings, image_encoder=lambda: encoder).store(create=True)
                started = time.perf_counter()
                PhotoLoader(
                    store, lambda: encoder, LoadOptions(batch_size=args.batch_size), show_bar=False
                ).index_folder(heic)
                heic_rate = args.heic / (time.perf_counter() - started)
                assert store.count() == args.heic
        finally:
            server.stop()
    rates = {name: len(photos) / seconds for name, seconds in timings.items()}
    print(f"{len(photos)} photos, batch {args.batch_size}, {torch.get_num_threads()} torch threads")
    (torch_rate, torch_vectors), (onnx_rate, onnx_vectors) = forward["torch"], forward["onnx"]
    print("model forward alone (preprocessed photos):")
    print(f"  {'torch':>10}: {torch_rate:6.1f} img/s")
    print(f"  {'onnx':>10}: {onnx_rate:6.1f} img/s  ({onnx_rate / torch_rate:.2f}x torch)")
    print(f"  largest difference between their vectors: {np.abs(onnx_vectors - torch_vectors).max():.1e}")
    print(f"loading with the {engine_name} engine:")
    for name, rate in rates.items():
        print(f"  {name:>10}: {timings[name]:6.1f} s  {rate:6.1f} photos/s")
    print(f"  ratio clipsearch/baseline: {rates['clipsearch'] / rates['baseline']:.2f}x")
    print(f"  ratio clipsearch/{engine_name} forward alone: {rates['clipsearch'] / forward[engine_name][0]:.2f}x")
    if heic is not None:
        print(f"  clipsearch on {args.heic} HEIC photos: {heic_rate:6.1f} photos/s", end="")
        print(f" ({heic_rate / forward[engine_name][0]:.2f}x the forward alone)")
    if scaled is not None:
        difference, cosines = scaled
        print(f"scaled against full decoding, {len(cosines)} photos: preprocessed pixels differ by {difference:.4f}")
        print(f"  on average; vectors' cosine min {cosines.min():.6f}, mean {cosines.mean():.6f}")


if __name__ == "__main__":
    main()
