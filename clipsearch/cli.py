"""`python -m clipsearch`: the embedded server, indexing and search from the terminal."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from clipsearch.errors import ClipsearchError
from clipsearch.photos import DEFAULT_MAX_PIXELS, BadPhoto, decode_photo, display_path, read_file
from clipsearch.server import EmbeddedServer
from clipsearch.settings import Settings
from clipsearch.store import (
    PHOTOS_ROOT_META,
    IndexSchema,
    PhotoStore,
    connect,
    drop_index,
    index_exists,
    stored_meta,
)

if TYPE_CHECKING:
    from clipsearch.encoder import ClipEncoder, TextEncoder

EXIT_FAILURES = 1  # --strict and some photos failed
EXIT_ERROR = 2  # nothing done: bad settings, server unreachable, index missing...


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clipsearch", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    server = commands.add_parser("server", help="the embedded Valkey of CLIPSEARCH_DATA_DIR")
    server.add_argument("action", choices=("status", "start", "stop"))

    add_index_arguments(commands.add_parser("index", help="index a folder of photos (same as scripts/load_photos.py)"))

    search = commands.add_parser("search", help="find photos by text or by a photo")
    search.add_argument("text", nargs="?", help="what to look for, e.g. 'a dog on a chair'")
    search.add_argument("--image", type=Path, help="search with this photo instead of text")
    search.add_argument("--k", type=int, default=10, help="how many results (default 10)")
    search.add_argument("--json", action="store_true", help="print a JSON list of {key, path, score, ...}")

    commands.add_parser("info", help="what the index holds and which server serves it")
    drop = commands.add_parser("drop", help="delete the index, its documents and its metadata")
    drop.add_argument("--yes", action="store_true", help="do not ask")
    return parser


def add_index_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", nargs="?", type=Path, help="photo folder (default: CLIPSEARCH_PHOTOS or photos/)")
    parser.add_argument("--from-csv", type=Path, metavar="FILE", help="index the URLs or paths in a CSV/TSV column")
    parser.add_argument("--csv-column", help="column of --from-csv (default: photo_image_url, image_url, url or path)")
    parser.add_argument("--prune", action="store_true", help="remove documents whose files are gone")
    parser.add_argument("--rebuild", action="store_true", help="drop the index first and encode everything again")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 if any photo failed")
    parser.add_argument("--no-thumbnails", action="store_true", help="store no thumbnails (very large collections)")
    parser.add_argument("--thumbnail-size", type=int, default=256, help="long side of thumbnails in pixels (256)")
    parser.add_argument("--batch-size", type=int, default=32, help="photos per model batch (32)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger images")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.command == "server":
            return server_command(settings, args.action)
        if args.command == "index":
            return index_command(settings, args)
        if args.command == "search":
            return search_command(settings, args)
        if args.command == "info":
            return info_command(settings)
        if args.command == "drop":
            return drop_command(settings, args.yes)
    except (ClipsearchError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted: what was written is complete; run again to finish", file=sys.stderr)
        return 130
    return 0


def open_store(
    settings: Settings, *, create: bool = False, rebuild: bool = False, text_only: bool = False
) -> tuple[PhotoStore, ClipEncoder | TextEncoder]:
    """Connect first, so an unreachable server is reported before the model takes seconds to load.

    With text_only, only CLIP's text tower is loaded: a text search encodes no photo.
    """
    from clipsearch.encoder import ClipEncoder, TextEncoder  # torch: imported only by the commands that need it

    client = connect(settings)
    encoder = (TextEncoder if text_only else ClipEncoder).load(settings.model_name, settings.pretrained)
    schema = IndexSchema.from_settings(settings, encoder.identity)
    if rebuild:
        PhotoStore(client, schema).drop()
    return PhotoStore.open(client, schema, create=create or rebuild), encoder


def index_command(settings: Settings, args: argparse.Namespace) -> int:
    if args.folder is not None and args.from_csv is not None:
        raise ValueError("give a folder or --from-csv, not both")
    folder = args.folder or settings.photos_dir
    if args.from_csv is None and not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder")
    from clipsearch.loader import LoadOptions, PhotoLoader

    store, encoder = open_store(settings, create=True, rebuild=args.rebuild)
    options = LoadOptions(
        batch_size=args.batch_size,
        thumbnail_size=None if args.no_thumbnails else args.thumbnail_size,
        max_pixels=args.max_pixels,
        prune=args.prune,
    )
    loader = PhotoLoader(store, encoder, options)
    print(f"indexing {args.from_csv or folder} into {store.schema.name!r} on {settings.server_label}")
    report = loader.index_csv(args.from_csv, args.csv_column) if args.from_csv else loader.index_folder(folder)
    print(report.summary())
    print(f"the index now holds {store.count()} photos")
    return EXIT_FAILURES if args.strict and report.failed else 0


def search_command(settings: Settings, args: argparse.Namespace) -> int:
    if (args.text is None) == (args.image is None):
        raise ValueError("give either TEXT or --image FILE")
    if args.k <= 0:
        raise ValueError("--k must be above 0")
    store, encoder = open_store(settings, text_only=args.image is None)
    if args.image is not None:
        try:
            vector = encoder.encode_images([decode_photo(read_file(args.image))])[0]
        except BadPhoto as error:
            raise ValueError(f"{args.image}: {error}") from None
    else:
        vector = encoder.encode_text([args.text])[0]
    hits = store.search(vector, k=args.k)
    if args.json:
        rows = [{"key": hit.key, "path": hit.path, "score": round(hit.score, 6), **_extra(hit.fields)} for hit in hits]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not hits:
        print("no photos indexed yet")
    for rank, hit in enumerate(hits, 1):
        print(f"{rank:>3}  {hit.score:.4f}  {display_path(hit.path)}")
    return 0


def _extra(fields: dict) -> dict:
    keep = ("name", "width", "height", "size", "source")
    return {name: display_path(value) if name == "name" else value for name, value in fields.items() if name in keep}


def info_command(settings: Settings) -> int:
    client = connect(settings)
    print(f"server: {settings.server_label}")
    meta = stored_meta(client, settings.index_name)
    if not meta:
        print(f"index {settings.index_name!r}: none yet")
        return 0
    count = client.ft(settings.index_name).info()["num_docs"] if index_exists(client, settings.index_name) else 0
    print(
        f"index {settings.index_name!r}: {count} photos, model {meta.get('model_name')} / "
        f"{meta.get('pretrained')} ({meta.get('dim')}-d), {meta.get('algorithm')}, "
        f"key schema v{meta.get('schema_version')}, photos from {meta.get(PHOTOS_ROOT_META, '-')}"
    )
    return 0


def drop_command(settings: Settings, yes: bool) -> int:
    if not yes and input(f"delete index {settings.index_name!r} and all its documents? [y/N] ").lower() != "y":
        return 0
    drop_index(connect(settings), settings.index_name)
    print(f"dropped {settings.index_name!r}")
    return 0


def server_command(settings: Settings, action: str) -> int:
    server = EmbeddedServer(settings.data_dir)
    if action == "start":
        server.ensure_started()
        action = "status"
    if action == "stop":
        print("stopped" if server.stop() else f"not running ({server.data_dir})")
        return 0
    status = server.status()
    if not status.running:
        print(f"not running (data: {status.data_dir})")
        return 0
    if status.loading or status.version is None:
        print(f"running: pid {status.pid}, {'loading its data' if status.loading else 'not answering'}")
        return 0
    print(
        f"running: pid {status.pid}, Valkey {status.version}, {status.keys} keys, {status.used_memory}\n"
        f"  data:   {status.data_dir}\n  socket: {status.socket_path}"
    )
    if settings.valkey_url is not None:
        print(f"note: VALKEY_URL is set, so clipsearch uses {settings.server_label}, not this server")
    return 0
