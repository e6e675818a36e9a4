"""Loader throughput: clipsearch's pipelined loader against a sequential baseline, in one process.

Usage: python scripts/bench_loader.py FOLDER [--limit N] [--batch-size 32] [--pretrained TAG_OR_FILE]

Both runs index the same photos into fresh indexes on a private embedded server, with the same
model, batch size and thumbnails. The baseline reads, decodes and preprocesses each photo on the
main thread, then encodes and writes the batch: no overlap. Speed does not depend on the weights,
so without --pretrained the script times a ViT-B-32 with random weights (saved and loaded like a
user's checkpoint). Prints photos/s of each and their ratio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from benchkit import PRETRAINED_HELP, scratch_and_weights

from clipsearch.encoder import ClipEncoder
from clipsearch.index import open_index
from clipsearch.loader import LoadOptions, PhotoLoader
from clipsearch.photos import PhotoFile, content_hash, decode_photo, make_thumbnail, read_file, walk_photos
from clipsearch.server import EmbeddedServer
from clipsearch.settings import Settings
from clipsearch.store import PhotoRecord, PhotoStore


def sequential_baseline(store: PhotoStore, encoder: ClipEncoder, photos: list[PhotoFile], batch_size: int) -> None:
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
    parser.add_argument("--pretrained", help=PRETRAINED_HELP)
    args = parser.parse_args()

    with scratch_and_weights(args.pretrained) as (scratch, pretrained):
        encoder = ClipEncoder.load("ViT-B-32", pretrained)
        # Both runs read the same photos: links to the first --limit ones.
        subset = scratch / "photos"
        subset.mkdir()
        chosen = [entry for entry in walk_photos(args.folder) if entry.problem is None]
        for photo in chosen[: args.limit] if args.limit else chosen:
            (subset / photo.relpath.replace("/", "_")).symlink_to(photo.path.resolve())
        photos = [entry for entry in walk_photos(subset) if entry.problem is None]
        server = EmbeddedServer(scratch / "data")
        try:
            timings = {}
            for name in ("baseline", "clipsearch"):
                settings = Settings(data_dir=server.data_dir, index_name=f"bench-{name}")
                store, _ = open_index(settings, encoder, create=True)
                started = time.perf_counter()
                if name == "baseline":
                    sequential_baseline(store, encoder, photos, args.batch_size)
                else:
                    PhotoLoader(store, encoder, LoadOptions(batch_size=args.batch_size), show_bar=False).index_folder(
                        subset
                    )
                timings[name] = time.perf_counter() - started
                assert store.count() == len(photos), (name, store.count(), len(photos))
        finally:
            server.stop()
    rates = {name: len(photos) / seconds for name, seconds in timings.items()}
    threads = torch.get_num_threads()
    print(f"{len(photos)} photos, batch {args.batch_size}, {threads} torch threads, device {encoder.device}")
    for name, rate in rates.items():
        print(f"  {name:>10}: {timings[name]:6.1f} s  {rate:6.1f} photos/s")
    print(f"  ratio clipsearch/baseline: {rates['clipsearch'] / rates['baseline']:.2f}x")


if __name__ == "__main__":
    main()
