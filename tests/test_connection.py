"""Connecting: the errors a user meets when the server is unreachable, wrong, or refuses the password."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from clipsearch.connection import connect
from clipsearch.errors import NoVectorSearch, ServerUnreachable, WrongCredentials
from clipsearch.server import valkey_binary
from clipsearch.settings import Settings

pytestmark = pytest.mark.slow


def start_plain_valkey(folder: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    """A real Valkey without the search module, on a loopback port."""
    process = subprocess.Popen(
        [str(valkey_binary()), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", "", *extra],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise RuntimeError("plain valkey did not start")


def test_unreachable_server_names_url_without_password(free_port: int) -> None:
    url = f"redis://default:s3cret-pw@127.0.0.1:{free_port}/0"
    with pytest.raises(ServerUnreachable) as refused:
        connect(Settings(valkey_url=url))
    message = str(refused.value)
    assert f"127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}" in message
    assert "s3cret-pw" not in message and "default:***@" in message


def test_server_without_vector_search_says_what_to_use(tmp_path: Path, free_port: int) -> None:
    port = free_port
    process = start_plain_valkey(tmp_path, port)
    try:
        with pytest.raises(
            NoVectorSearch, match="no FT.CREATE with VECTOR: use Valkey with valkey-search, Redis 8, or Redis Stack"
        ):
            connect(Settings(valkey_url=f"valkey://127.0.0.1:{port}"))
    finally:
        process.kill()
        process.wait()


def test_wrong_credentials_are_named_and_password_hidden(tmp_path: Path, free_port: int) -> None:
    port = free_port
    process = start_plain_valkey(tmp_path, port, "--requirepass", "right-one")
    try:
        with pytest.raises(WrongCredentials) as refused:
            connect(Settings(valkey_url=f"valkey://default:wrong-one@127.0.0.1:{port}"))
        assert "wrong-one" not in str(refused.value) and "***" in str(refused.value)
        with pytest.raises(WrongCredentials, match="refused the credentials.*VALKEY_URL"):
            connect(Settings(valkey_url=f"valkey://127.0.0.1:{port}"))
        # The right password gets through to the next check.
        with pytest.raises(NoVectorSearch):
            connect(Settings(valkey_url=f"valkey://default:right-one@127.0.0.1:{port}"))
    finally:
        process.kill()
        process.wait()
