"""Writes clipsearch/data/ordinary-words.txt.gz: the English words that a query's understanding never takes
for a place or a camera unless the words around them say so ("a turkey in the snow", "nice weather").

The words are those written in lower case in SCOWL's American English list (Debian's wamerican package,
/usr/share/dict/american-english; `apt-get install wamerican`): "turkey", "nice" and "reading" are there, and
"Kyoto", "Portugal" and "Lisbon" only as names. Its copyright notice is clipsearch/data/ordinary-words.LICENSE.

Usage: python scripts/make_ordinary_words.py [--words /usr/share/dict/american-english]
"""

from __future__ import annotations

import argparse
import gzip
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "clipsearch" / "data" / "ordinary-words.txt.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--words", type=Path, default=Path("/usr/share/dict/american-english"))
    args = parser.parse_args()
    lines = args.words.read_text(encoding="utf-8").splitlines()
    words = sorted({line for line in lines if re.fullmatch(r"[a-z]+", line)})
    with gzip.GzipFile(OUT, "wb", mtime=0) as out:  # mtime 0: the same list gives the same bytes
        out.write(("\n".join(words) + "\n").encode())
    print(f"{len(words):,} words to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
