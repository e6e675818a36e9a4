"""What the benchmark scripts share: a scratch folder, the weights to time, and a page to drive."""

from __future__ import annotations

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

from clipsearch.cluster import free_port

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
