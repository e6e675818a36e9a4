"""How the fused ranking of text matches and CLIP's results does on the tests' ground truth, for each rule
tried: reciprocal rank fusion at several constants, and CLIP alone.

Usage: python scripts/bench_fusion.py [--photos photos] [--samples 40] [--k 6] [--pretrained TAG_OR_FILE]

Indexes scripts/text_photos.py's photos (words drawn in, read with --read-text) beside --samples sample photos
(whose file names carry words too: "cat", "cathedral", ...) into a private embedded server, then searches
each text photo's words and each sample photo's name words. For each rule: the mean reciprocal rank of the
photo the words belong to (the text photo; for a name, the best-ranked photo that carries it), how many of
the k results are CLIP's own top k (what the words leave of CLIP's results), and how many searches put the
photo first. Without --pretrained the weights are random: CLIP's ranking is then arbitrary, which is the
hard case for the words (the photo they name is rarely among CLIP's own results).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
from pathlib import Path

from benchkit import PRETRAINED_HELP, scratch_and_weights
from text_photos import write_text_photos

import clipsearch.search.words
from clipsearch.index.server import EmbeddedServer
from clipsearch.ingest.loader import LoadOptions
from clipsearch.library import Library
from clipsearch.search.results import SearchOptions
from clipsearch.settings import Settings

CONSTANTS = (1, 10, 60, 200)  # reciprocal rank fusion's k: 1/(k + rank)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=Path("photos"))
    parser.add_argument("--samples", type=int, default=40, help="sample photos beside the text photos")
    parser.add_argument("--k", type=int, default=6, help="results a search shows")
    parser.add_argument("--pretrained", help=PRETRAINED_HELP)
    args = parser.parse_args()
    with scratch_and_weights(args.pretrained) as (scratch, pretrained):
        folder = scratch / "collection"
        written = write_text_photos(args.photos, folder)
        for source in sorted(args.photos.glob("*.jpg"))[::5][: args.samples]:
            shutil.copy2(source, folder / source.name)
        server = EmbeddedServer(scratch / "data")
        settings = Settings(
            data_dir=server.data_dir, index_name="bench-fusion", pretrained=pretrained, algorithm="FLAT",
            onnx_cache=scratch / "onnx",
        )  # fmt: skip
        try:
            library = Library(settings)
            library.index_folder(folder, LoadOptions(read_text=True), show_bar=False)
            library.store().wait_indexed()
            rows = library.store().scan(("path", "name_words"))
            names = {row.path or "": set((row.name_words or "").split()) for _, row in rows}
            queries = [(words.lower(), {name}) for name, words in written.items()]
            for path, words in names.items():
                if path not in written and (word := next((w for w in sorted(words) if len(w) > 3), None)):
                    queries.append((word, {other for other, held in names.items() if word in held}))
            options = SearchOptions(k=args.k, fold=False)
            encoder = library.text_encoder
            vectors = {text: encoder.encode_text([text])[0] for text, _ in queries}
            clip = {
                text: [r.hit.path for r in library.search_vector(vectors[text], options).shown] for text, _ in queries
            }
            searches = f"{len(queries)} searches ({len(written)} by the words in a photo, the rest by a name's word)"
            print(f"{searches}, k {args.k}")
            print(f"{'rule':>16}  {'MRR':>6}  {'first':>7}  {'CLIP results kept':>17}")
            for constant in (None, *CONSTANTS):
                ranks, kept = [], []
                for text, targets in queries:
                    if constant is None:
                        shown = clip[text]
                    else:
                        clipsearch.search.words.FUSION_K = constant
                        shown = [r.hit.path for r in library.search_vector(vectors[text], options, text=text).shown]
                    rank = next((place for place, path in enumerate(shown, 1) if path in targets), None)
                    ranks.append(1 / rank if rank else 0.0)
                    kept.append(len(set(shown) & set(clip[text])) / max(len(clip[text]), 1))
                rule = "CLIP alone" if constant is None else f"RRF k={constant}"
                first = sum(rank == 1.0 for rank in ranks)
                mrr, share = statistics.mean(ranks), statistics.mean(kept)
                print(f"{rule:>16}  {mrr:6.3f}  {first:>3}/{len(ranks)}  {share:17.1%}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
