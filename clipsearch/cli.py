"""`python -m clipsearch`: the embedded server, indexing and search from the terminal."""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import sys
from dataclasses import asdict
from pathlib import Path, PurePosixPath

import valkey
from tqdm import tqdm

from clipsearch.errors import ClipsearchError, IndexMissing
from clipsearch.index.connection import LOST
from clipsearch.index.filters import ORDERS, SearchFilter
from clipsearch.index.server import EmbeddedServer
from clipsearch.index.store import Hit
from clipsearch.ingest.facts import taken_iso
from clipsearch.ingest.files import BadPhoto, display_path, read_file
from clipsearch.ingest.loader import LoadOptions, Part
from clipsearch.ingest.places import DEFAULT_WITHIN_KM, Near, parse_position
from clipsearch.library import Library, NotInIndex, QueryPhoto, SearchRequest, UnusablePhoto, WordsConflict
from clipsearch.search.duplicates import check_similarity
from clipsearch.search.results import DEFAULT_RESULTS, Cut, Result, SearchOptions, why_nothing
from clipsearch.settings import Settings

EXIT_FAILURES = 1  # --strict and some photos failed
EXIT_ERROR = 2  # nothing done: bad settings, server unreachable, index missing...


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clipsearch", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    server = commands.add_parser("server", help="the embedded Valkey of CLIPSEARCH_DATA_DIR")
    server.add_argument("action", choices=("status", "start", "stop"))

    add_index_arguments(commands.add_parser("index", help="index a folder of photos (same as scripts/load_photos.py)"))

    search = commands.add_parser("search", help="find photos by text or by a photo")
    search.add_argument(
        "text", nargs="?", help="what to look for, e.g. 'a dog on a chair', or terms: '2:dog + beach - 0.5:people'"
    )
    search.add_argument("--image", type=Path, action="append", default=[], help="a photo as a term (repeatable)")
    search.add_argument("--like", metavar="KEY", action="append", default=[], help="an indexed photo as a term")
    search.add_argument(
        "--k",
        type=positive_int,
        default=DEFAULT_RESULTS,
        help=f"how many results (default {DEFAULT_RESULTS}, as on the page)",
    )
    search.add_argument("--json", action="store_true", help="print a JSON list of {key, path, score, ...}")
    search.add_argument(
        "--literal",
        action="store_true",
        help="search the words as written: no place, date or camera understood from them (docs/searching.md)",
    )
    search.add_argument(
        "--no-text",
        action="store_true",
        help="search by CLIP alone: the words are not also matched against file and folder names (docs/searching.md)",
    )
    search.add_argument("--after", metavar="YYYY-MM-DD", help="only photos taken on or after this day")
    search.add_argument("--before", metavar="YYYY-MM-DD", help="only photos taken on or before this day")
    search.add_argument("--folder", metavar="PATH", help="only photos in this folder of the collection (or below it)")
    search.add_argument("--camera", metavar="TEXT", help="only photos from this camera, e.g. 'Apple iPhone 12'")
    search.add_argument(
        "--place", metavar="NAME", help="only photos taken in this city, region or country (any case and accents)"
    )
    search.add_argument(
        "--near", metavar="LAT,LON", type=position_argument, help="only photos taken near this position, in degrees"
    )
    search.add_argument(
        "--within",
        metavar="KM",
        type=float,
        default=DEFAULT_WITHIN_KM,
        help=f"with --near: how near, in kilometres (default {DEFAULT_WITHIN_KM:g})",
    )
    search.add_argument("--order", choices=ORDERS, default="relevance", help="of the k results (default relevance)")
    search.add_argument(
        "--fold",
        "--dedup",  # its name before one name per idea (docs/development.md)
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fold near-duplicates under the better result, so the k results are k different photos (default on)",
    )
    search.add_argument(
        "--duplicate-similarity",
        "--dedup-similarity",
        type=fraction,
        metavar="X",
        help="what counts as a near-duplicate (default CLIPSEARCH_DUPLICATE_SIMILARITY, 0.95)",
    )
    search.add_argument(
        "--variety",
        "--diversity",
        type=fraction,
        default=0.0,
        metavar="X",
        help="0 (default): by relevance; towards 1: more varied",
    )
    search.add_argument(
        "--min-similarity", "--min-score", type=float, metavar="X", help="hide results under this similarity"
    )
    search.add_argument(
        "--below-best", type=fraction, metavar="D", help="hide results more than D under the best result's similarity"
    )

    duplicates = commands.add_parser("duplicates", help="groups of near-identical photos in the index")
    duplicates.add_argument(
        "--duplicate-similarity",
        "--threshold",
        type=fraction,
        metavar="X",
        help="the similarity that makes photos duplicates (default CLIPSEARCH_DUPLICATE_SIMILARITY, 0.95)",
    )
    duplicates.add_argument(
        "--json", action="store_true", help="print a JSON list of groups of {key, path, score, ...}"
    )

    commands.add_parser(
        "export",
        help="prepare the model for ONNX Runtime (both towers) in CLIPSEARCH_ONNX_CACHE, to ship with an app",
    )
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
    parser.add_argument(
        "--part",
        type=part_argument,
        metavar="I/N",
        help="only part I of N of the photos (by a hash of each path): N loaders, on N machines, fill one index",
    )
    parser.add_argument("--strict", action="store_true", help="exit with status 1 if any photo failed")
    parser.add_argument("--no-thumbnails", action="store_true", help="store no thumbnails (very large collections)")
    parser.add_argument(
        "--allow-other-folder",
        action="store_true",
        help="with --prune: replace an index loaded from another folder (its photos are deleted)",
    )
    parser.add_argument(
        "--allow-any-path", action="store_true", help="CSV rows may be absolute paths or climb out of its folder"
    )
    parser.add_argument(
        "--allow-private-hosts",
        action="store_true",
        help="CSV URLs may name this machine or private and link-local addresses",
    )
    parser.add_argument(
        "--read-text",
        action="store_true",
        default=None,
        help="read the words written in each photo (OCR), also of photos indexed before; several times slower "
        "(default: CLIPSEARCH_READ_TEXT)",
    )
    defaults = LoadOptions()
    numbers = {
        "thumbnail_size": "long side of thumbnails in pixels",
        "batch_size": "photos per model batch",
        "max_pixels": "refuse larger images, in pixels",
        "max_bytes": "refuse larger files, in bytes",
    }
    for name, help_text in numbers.items():
        default = getattr(defaults, name)
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=positive_int, default=default, help=f"{help_text} ({default:,})"
        )


def part_argument(text: str) -> Part:
    try:
        return Part.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def position_argument(text: str) -> tuple[float, float]:
    try:
        return parse_position(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not above 0")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


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
        if args.command == "duplicates":
            return duplicates_command(settings, args)
        if args.command == "export":
            return export_command(settings)
        if args.command == "info":
            return info_command(settings)
        if args.command == "drop":
            return drop_command(settings, args.yes)
    except (ClipsearchError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except LOST as error:
        print(
            f"error: lost the connection to the Valkey server ({error}). Every photo written before is complete: "
            "once the server is back (the embedded one starts again by itself), run the same command again to finish.",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except valkey.ResponseError as error:
        advice = (
            "it is out of memory: raise its maxmemory (or choose a larger plan), or index with --no-thumbnails"
            if "maxmemory" in str(error) or str(error).startswith("OOM")
            else "see the server's log"
        )
        print(f"error: the Valkey server refused a command ({error}); {advice}.", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted: what was written is complete; run again to finish", file=sys.stderr)
        return 130
    return 0


def index_command(settings: Settings, args: argparse.Namespace) -> int:
    if args.folder is not None and args.from_csv is not None:
        raise ValueError("give a folder or --from-csv, not both")
    folder = settings.photos_dir if args.folder is None else args.folder
    options = LoadOptions(
        batch_size=args.batch_size,
        thumbnail_size=None if args.no_thumbnails else args.thumbnail_size,
        max_pixels=args.max_pixels,
        max_bytes=args.max_bytes,
        prune=args.prune,
        allow_other_folder=args.allow_other_folder,
        allow_any_path=args.allow_any_path,
        allow_private_hosts=args.allow_private_hosts,
        part=args.part,
        read_text=settings.read_text if args.read_text is None else args.read_text,
    )
    library = Library(settings)
    part = f" (part {args.part})" if args.part else ""
    print(f"indexing {args.from_csv or folder}{part} into {settings.index_name!r} on {settings.server_label}")
    if args.from_csv is not None:
        indexed = library.index_csv(args.from_csv, args.csv_column, options, rebuild=args.rebuild)
    else:
        indexed = library.index_folder(folder, options, rebuild=args.rebuild)
    report = indexed.report
    if report.indexed == 0 and not report.failed:
        print(f"Nothing to encode: all {report.unchanged} photos are unchanged.")
    print(report.summary())
    print(f"the index now holds {indexed.count} photos")
    if indexed.switched:
        print(f"switched the index from {indexed.switched[0]} to {indexed.switched[1]} for its size "
              "(nothing was encoded again)")  # fmt: skip
    return EXIT_FAILURES if args.strict and report.failed else 0


def search_command(settings: Settings, args: argparse.Namespace) -> int:
    if args.text is None and not args.image and not args.like:
        raise ValueError("give TEXT, --image FILE or --like KEY (or several: they are added up)")
    if args.k <= 0:
        raise ValueError("--k must be above 0")
    where = SearchFilter.of_days(
        after=args.after,
        before=args.before,
        folder=args.folder,
        camera=args.camera,
        place=args.place,
        near=None if args.near is None else Near(args.near[0], args.near[1], args.within),
    )
    options = SearchOptions(
        k=args.k,
        fold=args.fold,
        duplicate_similarity=given_or(args.duplicate_similarity, settings.duplicate_similarity),
        variety=args.variety,
        cut=Cut(min_similarity=args.min_similarity, below_best=args.below_best),
        order=args.order,
    )
    photos = tuple(_query_photo(image) for image in args.image)
    request = SearchRequest(
        words=args.text or "",
        photos=photos,
        like=tuple(args.like),
        where=where,
        options=options,
        understand=not args.literal,
        match_text=not args.no_text,
    )
    try:
        found = Library(settings).search(request)
    except UnusablePhoto as error:
        raise ValueError(str(error)) from None
    except NotInIndex as error:
        raise ValueError(f"--like {error.key!r}: no photo of index {settings.index_name!r} has this key") from None
    except WordsConflict as error:
        if error.with_filters:
            raise ValueError(f"what the words say and the options cannot both hold: {error}") from None
        raise ValueError(f"the words say two things that cannot both hold: {error}; --literal reads none") from None
    results, understood, where = found.results, found.understood, found.where
    if understood is not None and understood.parts:
        said = " · ".join(f"{part.words!r} ({part.kind}: {part.value()})" for part in understood.parts)
        print(f"understood {said}; --literal searches the words as written", file=sys.stderr)
    if args.json:
        parts = [part.as_json() for part in understood.parts] if understood is not None else []
        print(
            json.dumps(
                [_json_result(result) | {"understood": parts} for result in results.shown], indent=2, ensure_ascii=False
            )
        )
        return 0
    if not results.shown:
        print(why_nothing(results, where))
    for rank, result in enumerate(results.shown, 1):
        folded = f"  (+{len(result.near_duplicates)} near-duplicates)" if result.near_duplicates else ""
        score = "     -" if math.isnan(result.hit.score) else f"{result.hit.score:.4f}"
        said = f"  [{'; '.join(result.matched)}]" if result.matched else ""
        print(f"{rank:>3}  {score}  {display_path(result.hit.path)}{folded}{said}")
    if results.hidden:
        print(f"({results.hidden} of the {len(results.scores)} nearest under similarity {results.threshold:.4f})")
    return 0


def export_command(settings: Settings) -> int:
    """Both towers exported (or found) in the cache: a page that finds them there never imports torch."""
    from clipsearch.model.onnx_engine import exported

    towers = ("text", "image", "text-int8") if settings.text_precision == "int8" else ("text", "image")
    for tower in towers:
        print(f"{tower} tower: {exported(settings.model, tower).folder}")
    print(f"ship {settings.onnx_cache} with the app and set CLIPSEARCH_ONNX_CACHE to where it lands")
    return 0


def duplicates_command(settings: Settings, args: argparse.Namespace) -> int:
    library = Library(settings)
    threshold = given_or(args.duplicate_similarity, settings.duplicate_similarity)
    check_similarity(threshold)
    with tqdm(total=library.existing().count(), unit="photo", file=sys.stderr, dynamic_ncols=True, disable=None) as bar:

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

        report = library.duplicates(threshold, on_progress=progress)
    if args.json:
        groups = [[_json_row(hit) for hit in group.members] for group in report.groups]
        print(json.dumps(groups, indent=2, ensure_ascii=False))
    else:
        for number, group in enumerate(report.groups, 1):
            print(f"group {number}: {len(group.members)} photos")
            for place, hit in enumerate(group.members):
                photo = hit.photo
                taken = "" if photo.taken is None else "  " + taken_iso(photo.taken, photo.offset or "")
                size = f"{photo.width}x{photo.height}  {(photo.size or 0) / 1024:,.0f} KiB"
                print(f"  {'keep' if place == 0 else '    '}  {hit.score:.4f}  {display_path(hit.path)}  {size}{taken}")
    print(
        f"{len(report.groups)} groups of near-duplicates (similarity {threshold} or more; {report.duplicates} photos "
        f"beyond the first of each) among {report.photos} photos, in {report.seconds:.1f} s "
        f"({report.rate:,.0f} photos/s)",
        file=sys.stderr if args.json else sys.stdout,
    )
    return 0


def given_or(value: float | None, default: float) -> float:
    """An option's value where one was given (0 included), else the setting's."""
    return default if value is None else value


def _query_photo(path: Path) -> QueryPhoto:
    try:
        return QueryPhoto(str(path), read_file(path))
    except BadPhoto as error:
        raise ValueError(f"{path}: {error}") from None


def _json_result(result: Result) -> dict[str, object]:
    """A result as JSON, with the near-duplicates folded under it."""
    folded = [{name: _json_row(hit)[name] for name in ("key", "path", "score")} for hit in result.near_duplicates]
    return _json_row(result.hit) | {"near_duplicates": folded, "matched": list(result.matched)}


def _json_row(hit: Hit) -> dict[str, object]:
    """A hit as JSON: paths and names in their display form (valid UTF-8), and the exact bytes of a path
    that is not UTF-8 in `path_bytes` (base64), so it stays recoverable."""
    photo = hit.photo
    row: dict[str, object] = {
        "key": hit.key,
        "path": display_path(hit.path),
        "score": None if math.isnan(hit.score) else round(hit.score, 6),  # None: listed by filters alone
        "name": display_path(photo.name or ""),
        "width": photo.width,
        "height": photo.height,
        "size": photo.size,
        "source": photo.source,
        "taken_from": photo.taken_from,
        "taken": None if photo.taken is None else taken_iso(photo.taken, photo.offset or ""),
        "camera": photo.camera or None,
        "folder": _folder_of(hit),
        "latitude": photo.latitude,
        "longitude": photo.longitude,
        "place": None if (place := photo.place) is None else asdict(place),
    }
    if row["path"] != hit.path:
        row["path_bytes"] = base64.b64encode(os.fsencode(hit.path)).decode()
    return row


def _folder_of(hit: Hit) -> str | None:
    """The folder of a photo file within the collection ("" at its top); None for a downloaded photo."""
    if hit.photo.source != "file":
        return None
    parent = str(PurePosixPath(hit.path).parent)
    return "" if parent == "." else display_path(parent)


def info_command(settings: Settings) -> int:
    library = Library(settings)
    library.client  # noqa: B018  (reached, or the error says why)
    print(f"server: {settings.server_label}")
    try:
        store = library.existing()
    except IndexMissing:
        print(f"index {settings.index_name!r}: none yet")
        return 0
    print(f"index {settings.index_name!r}: {store.describe()}")
    return 0


def drop_command(settings: Settings, yes: bool) -> int:
    try:
        store = Library(settings).existing()
    except IndexMissing:
        print(f"no index {settings.index_name!r} to drop")
        return 0
    if not yes:
        if not sys.stdin.isatty():
            raise ValueError(f"drop deletes index {settings.index_name!r} and all its documents: with no terminal to "
                             "ask, run it with --yes")  # fmt: skip
        if input(f"delete index {settings.index_name!r} and all its documents? [y/N] ").lower() != "y":
            return 0
    store.drop()
    print(f"dropped {settings.index_name!r}")
    return 0


def server_command(settings: Settings, action: str) -> int:
    server = EmbeddedServer.of(settings)
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
