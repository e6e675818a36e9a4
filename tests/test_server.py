"""The embedded server: private, shared between processes, restartable."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from clipsearch.server import EmbeddedServer

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


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


def test_stale_pid_file_from_another_process_does_not_block_start(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "data")
    server.run_dir.mkdir(parents=True)
    server.pid_file.write_text(str(os.getpid()))  # alive, but not a valkey-server of this directory
    try:
        server.ensure_started()
        assert server.status().pid not in (None, os.getpid())
    finally:
        server.stop()
