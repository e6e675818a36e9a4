"""What the benchmark scripts share: a scratch folder, the weights to time, a page to drive, and the servers of
each search backend."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import open_clip
import torch
from cluster import LocalCluster, free_port

from clipsearch.index.server import EmbeddedServer
from clipsearch.settings import Settings

PRETRAINED_HELP = "tag or checkpoint file (default: random weights)"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


@contextmanager
def scratch_and_weights(pretrained: str | None) -> Iterator[tuple[Path, str]]:
    """A temporary folder, and `pretrained`, or without it a ViT-B-32 with random weights saved there the
    way users' checkpoints are: speed and memory do not depend on the weights."""
    with tempfile.TemporaryDirectory(prefix="clipsearch-bench-") as scratch:
        if pretrained is None:
            pretrained = str(Path(scratch) / "random-vit-b-32.pt")
            torch.manual_seed(0)  # the same file every run: its ONNX export is then made once, and reused
            torch.save(open_clip.create_model("ViT-B-32").state_dict(), pretrained)
        yield Path(scratch), pretrained


def memory_kb(pid: int, field: str) -> int:
    """A field of /proc/PID/status, in kB: VmRSS, RssAnon, RssFile, VmHWM."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_seconds(pid: int) -> float:
    """The user and system CPU time a process has used (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime, stime in clock ticks (USER_HZ)


def page_environment(settings: Settings, pretrained: str, scratch: Path, photos: Path) -> dict[str, str]:
    """The environment of a `streamlit run` of the page over the embedded server and index of `settings`, with
    the weights `pretrained`, an export cache in `scratch`, and `photos` as its photo folder."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CLIPSEARCH_", "VALKEY_URL"))},
        "CLIPSEARCH_ONNX_CACHE": str(scratch / "onnx-cache"),
        "CLIPSEARCH_DATA_DIR": str(settings.data_dir),
        "CLIPSEARCH_INDEX": settings.index_name,
        "CLIPSEARCH_PRETRAINED": pretrained,
        "CLIPSEARCH_PHOTOS": str(photos.resolve()),
        "HF_HUB_OFFLINE": "1",
    }


@contextmanager
def streamlit_page(
    script: str, env: dict[str, str], cwd: Path, log: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`streamlit run SCRIPT` in `cwd` on a free port, once it listens: its URL and process."""
    port = free_port()
    with open(log, "w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port), "--server.address",
             "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none"],
            cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError(f"{script} exited; see {log}") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        process.wait(timeout=30)


VALKEY_SEARCH = Path(__file__).resolve().parent.parent.parent / "shared" / "valkey-search" / "libsearch.so"
BACKENDS = ("redisearch", "valkey-search", "cluster")


class Servers:
    """The servers one index of one backend lives in: an embedded server, or a local cluster."""

    def __init__(self, backend: str, scratch: Path) -> None:
        self.engine = backend
        self.embedded: EmbeddedServer | None = None
        self.cluster: LocalCluster | None = None
        if backend == "cluster":
            self.cluster = LocalCluster(scratch / "cluster", VALKEY_SEARCH).start()
        else:
            module = VALKEY_SEARCH if backend == "valkey-search" else None
            self.embedded = EmbeddedServer(scratch / "data", search_module=module)
            self.embedded.ensure_started()

    def settings(self, algorithm: str) -> Settings:
        """Settings of an index named "bench" on these servers."""
        if self.cluster is not None:
            return Settings(valkey_url=self.cluster.url, index_name="bench", algorithm=algorithm)
        return Settings(
            data_dir=self._embedded().data_dir, search_module=self._embedded().search_module, index_name="bench",
            algorithm=algorithm,
        )  # fmt: skip

    def used_memory(self) -> list[int]:
        """INFO used_memory of each server (each primary of a cluster)."""
        clients = [node.client() for node in self.cluster.nodes] if self.cluster else [self._embedded().client()]
        memory = []
        for client in clients:
            with client:
                memory.append(int(client.info("memory")["used_memory"]))
        return memory

    def restart(self) -> None:
        """Stop the server (one primary of a cluster) and start it again, on its saved data."""
        if self.cluster is not None:
            node = self.cluster.nodes[0]
            with node.client() as client:
                client.bgrewriteaof()
                while client.info("persistence")["aof_rewrite_in_progress"]:
                    time.sleep(0.1)
            self.cluster.stop_node(node)
            self.cluster.restart_node(node)
        else:
            self._embedded().stop()
            self._embedded().ensure_started()

    def _embedded(self) -> EmbeddedServer:
        assert self.embedded is not None
        return self.embedded

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        else:
            self._embedded().stop()


def chosen_backends(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """The backends --backends names (comma-separated), less those that are not here, which it says."""
    backends = [backend.strip() for backend in text.split(",") if backend.strip()]
    if unknown := set(backends) - set(BACKENDS):
        parser.error(f"--backends: {', '.join(sorted(unknown))}? choose among {', '.join(BACKENDS)}")
    if not VALKEY_SEARCH.is_file() and {"valkey-search", "cluster"} & set(backends):
        print(f"valkey-search and the cluster left out: {VALKEY_SEARCH} is missing")
        backends = [backend for backend in backends if backend == "redisearch"]
    return backends
