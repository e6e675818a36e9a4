"""Index a folder of photos (default: photos/) into the clipsearch index.

Usage: python scripts/load_photos.py [FOLDER] [--prune] [--rebuild] [--from-csv FILE] ...
Same as `python -m clipsearch index`; --help lists every option.
"""

import sys

from clipsearch.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["index", *sys.argv[1:]]))
