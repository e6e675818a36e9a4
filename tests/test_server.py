"""The embedded server and the errors a user meets when the server is wrong."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

from clipsearch.errors import ConfigError, NoVectorSearch, ServerUnreachable, WrongCredentials
from clipsearch.server import EmbeddedServer, valkey_binary
from clipsearch.settings import Settings, redact_url
from clipsearch.store import connect


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_plain_valkey(folder: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    """A real Valkey without the search module, on a loopback port."""
    port = free_port()
    process = subprocess.Popen(
        [str(valkey_binary()), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", "", *extra],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise RuntimeError("plain valkey did not start")


def test_socket_is_private_and_there_is_no_tcp_port(embedded_server: EmbeddedServer) -> None:
    assert stat.S_IMODE(embedded_server.socket_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(embedded_server.socket_path.stat().st_mode) & 0o077 == 0
    with embedded_server.client(decode_responses=True) as client:
        assert client.config_get("port") == {"port": "0"}
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("dir")["dir"] == str(embedded_server.data_dir)


def test_two_processes_share_one_server(tmp_path: Path) -> None:
    script = (
        "import sys; from clipsearch.server import EmbeddedServer; "
        "s = EmbeddedServer(sys.argv[1]); s.ensure_started(); print(s.status().pid)"
    )
    data_dir = tmp_path / "shared-data"
    try:
        runs = [
            subprocess.Popen([sys.executable, "-c", script, str(data_dir)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
            for _ in range(3)
        ]
        pids = {run.communicate(timeout=60)[0].strip() for run in runs}
        assert all(run.returncode == 0 for run in runs)
        assert len(pids) == 1 and pids != {""}
        assert EmbeddedServer(data_dir).status().pid == int(pids.pop())
    finally:
        EmbeddedServer(data_dir).stop()


def test_long_data_dir_gets_socket_in_private_tmp_folder(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / ("x" * 120))
    try:
        server.ensure_started()
        assert server.socket_path.parent.name == f"clipsearch-{os.getuid()}"
        assert server.is_running()
        assert EmbeddedServer(server.data_dir).socket_path == server.socket_path
    finally:
        server.stop()


def test_cli_server_status_and_stop(tmp_path: Path) -> None:
    env = {**os.environ, "CLIPSEARCH_DATA_DIR": str(tmp_path / "cli-data")}
    cli = [sys.executable, "-m", "clipsearch", "server"]
    assert "not running" in subprocess.run([*cli, "status"], env=env, capture_output=True, text=True, cwd=ROOT).stdout
    started = subprocess.run([*cli, "start"], env=env, capture_output=True, text=True, cwd=ROOT)
    assert started.returncode == 0, started.stderr
    status = subprocess.run([*cli, "status"], env=env, capture_output=True, text=True, cwd=ROOT).stdout
    assert "running" in status and "pid" in status
    stopped = subprocess.run([*cli, "stop"], env=env, capture_output=True, text=True, cwd=ROOT)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not EmbeddedServer(tmp_path / "cli-data").is_running()


def test_unreachable_server_names_url_without_password() -> None:
    url = f"redis://default:s3cret-pw@127.0.0.1:{free_port()}/0"
    with pytest.raises(ServerUnreachable) as refused:
        connect(Settings(valkey_url=url))
    message = str(refused.value)
    assert f"127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}" in message
    assert "s3cret-pw" not in message and "default:***@" in message


def test_server_without_vector_search_says_what_to_use(tmp_path: Path) -> None:
    process, port = start_plain_valkey(tmp_path)
    try:
        with pytest.raises(
            NoVectorSearch, match="no FT.CREATE with VECTOR: use Valkey with valkey-search, Redis 8, or Redis Stack"
        ):
            connect(Settings(valkey_url=f"valkey://127.0.0.1:{port}"))
    finally:
        process.kill()
        process.wait()


def test_wrong_credentials_are_named_and_password_hidden(tmp_path: Path) -> None:
    process, port = start_plain_valkey(tmp_path, "--requirepass", "right-one")
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


def test_settings_from_env_and_redaction() -> None:
    settings = Settings.from_env(
        {
            "VALKEY_URL": "rediss://avnadmin:pw@host.aivencloud.com:12345",
            "CLIPSEARCH_INDEX": "my-photos",
            "CLIPSEARCH_HNSW_EF_RUNTIME": "50",
            "CLIPSEARCH_DATA_DIR": "",
        }
    )
    assert settings.index_name == "my-photos" and settings.hnsw_ef_runtime == 50
    assert settings.data_dir == Path(".clipsearch")
    assert settings.server_label == "rediss://avnadmin:***@host.aivencloud.com:12345"
    assert redact_url("unix:///tmp/v.sock?password=pw&db=0") == "unix:///tmp/v.sock?password=***&db=0"
    assert Settings.from_env({}).valkey_url is None
    for bad in (
        {"VALKEY_URL": "http://x"},
        {"CLIPSEARCH_INDEX": "a b"},
        {"CLIPSEARCH_HNSW_M": "many"},
        {"CLIPSEARCH_ALGORITHM": "IVF"},
    ):
        with pytest.raises(ConfigError):
            Settings.from_env(bad)


def test_stale_pid_file_from_another_process_does_not_block_start(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "data")
    server.run_dir.mkdir(parents=True)
    server.pid_file.write_text(str(os.getpid()))  # alive, but not a valkey-server of this directory
    try:
        server.ensure_started()
        assert server.status().pid not in (None, os.getpid())
    finally:
        server.stop()
