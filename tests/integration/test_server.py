"""The embedded server: private, shared between processes, restartable."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from clipsearch.errors import ServerError
from clipsearch.index.server import EmbeddedServer, valkey_binary

ROOT = Path(__file__).resolve().parents[2]


def test_socket_is_private_and_there_is_no_tcp_port(embedded_server: EmbeddedServer) -> None:
    assert stat.S_IMODE(embedded_server.socket_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(embedded_server.socket_path.stat().st_mode) & 0o077 == 0
    with embedded_server.client(decode_responses=True) as client:
        assert client.config_get("port") == {"port": "0"}
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("dir")["dir"] == str(embedded_server.data_dir)


def test_two_processes_share_one_server(tmp_path: Path) -> None:
    script = (
        "import sys; from clipsearch.index.server import EmbeddedServer; "
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
    server.data_dir.mkdir(mode=0o700)
    server.run_dir.mkdir()
    server.pid_file.write_text(str(os.getpid()))  # alive, but not a valkey-server of this directory
    try:
        server.ensure_started()
        assert server.status().pid not in (None, os.getpid())
    finally:
        server.stop()


@contextmanager
def foreign_valkey(socket_path: Path, data_dir: Path, prefix: Sequence[str] = ()) -> Iterator[subprocess.Popen[bytes]]:
    """A Valkey that clipsearch did not start, listening on socket_path (as another user, with a prefix)."""
    server = subprocess.Popen(
        [*prefix, str(valkey_binary()), "--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "777",
         "--dir", str(data_dir), "--save", ""],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert socket_path.exists(), "the foreign server did not start"
        yield server
    finally:
        server.kill()
        server.wait()


def test_the_data_folder_and_its_files_are_the_users_alone(tmp_path: Path, as_other_user: list[str]) -> None:
    server = EmbeddedServer(tmp_path / "data")
    try:
        server.ensure_started()
        with server.client() as client:
            client.hset("clipsearch:photo:x", mapping={"name": "private.jpg"})
            client.execute_command("BGREWRITEAOF")
        server.stop()  # it saves on the way out
        assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700
        files = [path for path in server.data_dir.rglob("*") if path.is_file()]
        assert files and all(stat.S_IMODE(path.stat().st_mode) & 0o077 == 0 for path in files), [
            (path.name, oct(path.stat().st_mode)) for path in files
        ]
        tmp_path.chmod(0o755)  # so that only the data folder's own mode stands in the way
        other_user = subprocess.run([*as_other_user, "ls", str(server.data_dir)], capture_output=True, text=True)
        assert other_user.returncode != 0 and "Permission denied" in other_user.stderr
    finally:
        server.stop()


def test_a_data_folder_that_others_can_read_is_refused_unless_allowed(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(ServerError, match=f"can be read by other users.*chmod 700 {shared}.*ALLOW_SHARED_DATA_DIR"):
        EmbeddedServer(shared).ensure_started()
    allowed = EmbeddedServer(shared, allow_shared=True)
    try:
        allowed.ensure_started()
        assert allowed.is_running()
    finally:
        allowed.stop()


def test_a_server_planted_by_another_user_in_the_socket_folder_is_never_used(
    tmp_path: Path, monkeypatch, as_other_user: list[str]
) -> None:
    """Long data paths put the socket in the temp folder, where another local user may have been first."""
    public_tmp = Path(tempfile.mkdtemp(prefix="clipsearch-planted-", dir="/tmp"))
    try:
        public_tmp.chmod(0o777)
        monkeypatch.setattr(tempfile, "tempdir", str(public_tmp))
        victim = EmbeddedServer(tmp_path / ("long-" * 30))
        planted_folder = victim.socket_path.parent
        planted_folder.mkdir(mode=0o777)
        planted_folder.chmod(0o777)
        os.chown(planted_folder, 65534, 65534)
        (public_tmp / "their-data").mkdir()
        os.chown(public_tmp / "their-data", 65534, 65534)
        with foreign_valkey(victim.socket_path, public_tmp / "their-data", as_other_user) as planted:
            with pytest.raises(ServerError, match="belongs to another user"):
                victim.ensure_started()
            assert planted.poll() is None, "the planted server was not even touched"
    finally:
        shutil.rmtree(public_tmp, ignore_errors=True)


def test_a_server_of_another_data_folder_on_our_socket_is_refused(tmp_path: Path) -> None:
    ours = EmbeddedServer(tmp_path / "ours")
    ours.data_dir.mkdir(mode=0o700)
    ours.run_dir.mkdir()
    with foreign_valkey(ours.socket_path, tmp_path), pytest.raises(ServerError, match=f"serves {tmp_path}, not"):
        ours.ensure_started()


def test_the_other_search_engine_on_one_data_folder_is_refused_and_says_what_to_do(
    tmp_path: Path, valkey_search: Path
) -> None:
    """RediSearch's saved data cannot be read by valkey-search: a running server with the other module, or data
    it wrote, is an error naming the way out, and the data is left as it was."""
    module = valkey_search
    redisearch = EmbeddedServer(tmp_path / "data")
    redisearch.ensure_started()
    try:
        with redisearch.client() as client:
            client.execute_command("FT.CREATE", "photos", "SCHEMA", "n", "NUMERIC")
            client.hset("photo:1", "n", 1)
            client.bgrewriteaof()
            while client.info("persistence")["aof_rewrite_in_progress"]:
                time.sleep(0.05)
        refused = "runs with another search module than valkey-search.*own CLIPSEARCH_DATA_DIR"
        with pytest.raises(ServerError, match=refused):
            EmbeddedServer(redisearch.data_dir, search_module=module).ensure_started()
    finally:
        redisearch.stop()
    with pytest.raises(ServerError, match="written with another search module.*own CLIPSEARCH_DATA_DIR"):
        EmbeddedServer(redisearch.data_dir, search_module=module).ensure_started()
    redisearch.ensure_started()  # nothing was lost
    try:
        with redisearch.client() as client:
            assert client.hget("photo:1", "n") == b"1" and client.execute_command("FT._LIST") == [b"photos"]
    finally:
        redisearch.stop()


def test_a_server_reading_its_data_back_reports_how_far_it_got(tmp_path: Path) -> None:
    """A restart with an HNSW index of 8,000 photos takes seconds (RediSearch rebuilds the graph while
    loading): both the embedded server's start and a client of its URL report the progress meanwhile."""
    import numpy as np

    from clipsearch.index.connection import connect
    from clipsearch.index.schema import IndexSchema, PhotoRecord
    from clipsearch.index.store import PhotoStore
    from clipsearch.model.identity import ModelIdentity
    from clipsearch.settings import Settings

    server = EmbeddedServer(tmp_path / "data")
    settings = Settings(data_dir=server.data_dir, algorithm="HNSW")
    vectors = np.random.default_rng(5).standard_normal((8000, 512)).astype(np.float32)
    try:
        client = connect(settings)
        store = PhotoStore.open(client, IndexSchema.from_settings(settings, ModelIdentity("m", "p", 512)), create=True)
        store.upsert(PhotoRecord(f"{i}.jpg", vector / np.linalg.norm(vector)) for i, vector in enumerate(vectors))
        client.close()
        for url in (None, f"unix://{server.socket_path}"):
            server.stop()
            reports: list[tuple[float, float | None]] = []

            def report(percent: float, eta: float | None, reports: list = reports) -> None:
                reports.append((percent, eta))

            if url is None:
                server.ensure_started(on_loading=report)
            else:
                server._start_process()  # started, not waited for: the client below does the waiting
                deadline = time.monotonic() + 60
                while not server.socket_path.exists() and time.monotonic() < deadline:
                    time.sleep(0.01)
                connect(Settings(valkey_url=url), on_loading=report)
            assert reports, f"no progress reported ({url or 'embedded'})"
            assert all(0 <= percent <= 100 for percent, _ in reports)
            assert [percent for percent, _ in reports] == sorted(percent for percent, _ in reports)
            assert PhotoStore.existing(server.client(), "clipsearch").count() == 8000
    finally:
        server.stop()
