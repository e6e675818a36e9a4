"""`python -m clipsearch`: the embedded server, indexing and search from the terminal."""

from __future__ import annotations

import argparse
import sys

from clipsearch.errors import ClipsearchError
from clipsearch.server import EmbeddedServer
from clipsearch.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clipsearch", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("server", help="the embedded Valkey of CLIPSEARCH_DATA_DIR")
    server.add_argument("action", choices=("status", "start", "stop"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.command == "server":
            return server_command(settings, args.action)
    except ClipsearchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
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
    print(
        f"running: pid {status.pid}, Valkey {status.version}, {status.keys} keys, {status.used_memory}\n"
        f"  data:   {status.data_dir}\n  socket: {status.socket_path}"
    )
    if settings.valkey_url is not None:
        print(f"note: VALKEY_URL is set, so clipsearch uses {settings.server_label}, not this server")
    return 0
