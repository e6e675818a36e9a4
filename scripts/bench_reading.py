"""Reading text in photos: how many written words PP-OCR recovers, how many stray words it reads in photos
without text, and how long a photo takes, at each confidence threshold and reading size.

Usage: python scripts/bench_reading.py [--photos photos] [--plain N] [--sides 1280,1600] [--threads 0]

The photos with text are scripts/text_photos.py's (words drawn on sample photos in several fonts, sizes and
colours, one turned; a screenshot; a receipt). The plain photos are the first N sample photos (default all):
whatever is read there is noise, or text the photo really has. For each reading size, every photo is read
once with no threshold, and each threshold is applied to the lines' confidences afterwards: the
recognition rate (written words found among the words read), the words read per plain photo (noise, or
text the photo really has), and the seconds per photo. Lines of one character are dropped, as the reader
does.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image
from text_photos import write_text_photos

import clipsearch.model.reading
from clipsearch.model.reading import TextReader, kept
from clipsearch.search.words import words_of

THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def read_lines(reader: TextReader, path: Path) -> tuple[list[tuple[str, float]], float]:
    """Every recognised line with its confidence, and the seconds it took."""
    image = Image.open(path).convert("RGB")
    started = time.perf_counter()
    found = reader._loaded()(image)
    return list(zip(found.txts or (), found.scores or (), strict=True)), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=Path("photos"))
    parser.add_argument("--plain", type=int, default=None, help="how many sample photos without text (default all)")
    parser.add_argument(
        "--sides", default=f"{clipsearch.model.reading.READ_SIDE}", help="reading sizes, comma-separated"
    )
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (default: every core)")
    args = parser.parse_args()
    plain = sorted(args.photos.glob("*.jpg"))[: args.plain]
    with tempfile.TemporaryDirectory() as scratch:
        written = write_text_photos(args.photos, Path(scratch))
        for side in (int(side) for side in args.sides.split(",")):
            clipsearch.model.reading.READ_SIDE = side
            clipsearch.model.reading.MIN_CONFIDENCE = 0.0  # every line: the thresholds are applied below
            reader = TextReader(args.threads)
            read_lines(reader, plain[0])  # warm-up: the sessions are made on first use
            texts = {name: read_lines(reader, Path(scratch) / name) for name in written}
            noise = [read_lines(reader, path) for path in plain]
            seconds = [took for _, took in [*texts.values(), *noise]]
            print(
                f"reading side {side}: {len(written)} photos with text, {len(plain)} without; "
                f"{statistics.mean(seconds):.2f} s a photo (median {statistics.median(seconds):.2f})"
            )
            print("  threshold  words found  words read per plain photo  plain photos with any")
            for threshold in THRESHOLDS:
                wanted = found = 0
                for name, words in written.items():
                    read = {
                        word
                        for text, score in texts[name][0]
                        if kept(text, score, threshold)
                        for word in words_of(text)
                    }
                    expected = words_of(words)
                    wanted += len(expected)
                    found += sum(word in read for word in expected)
                strays = [
                    sum(len(words_of(text)) for text, score in lines if kept(text, score, threshold))
                    for lines, _ in noise
                ]
                print(
                    f"  {threshold:9.2f}  {found:>3}/{wanted} {found / wanted:5.1%}  {statistics.mean(strays):27.2f}  "
                    f"{sum(bool(count) for count in strays):>3}/{len(strays)}"
                )


if __name__ == "__main__":
    main()
