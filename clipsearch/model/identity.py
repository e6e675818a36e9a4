"""What made a set of vectors: vectors of different identities must never be compared."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    pretrained: str
    dim: int

    def describe(self) -> str:
        return f"{self.name} / {self.pretrained} ({self.dim}-d)"


def pretrained_label(pretrained: str) -> str:
    """How a checkpoint is named in the index: a tag as is, a local file by name and fingerprint.

    Not the full path, so that an index built on a laptop is still recognised by the same file
    stored elsewhere (Streamlit Cloud, another user); with a fingerprint of the content, since
    every open_clip checkpoint downloads as open_clip_pytorch_model.bin.
    """
    if not os.path.isfile(pretrained):
        return pretrained
    return f"{Path(pretrained).name}#{file_fingerprint(pretrained)}"


def file_fingerprint(path: str, chunk: int = 1 << 20) -> str:
    """SHA-256 of the size and the first and last MiB: distinct checkpoints differ there, and it is quick."""
    size = os.path.getsize(path)
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(chunk))
        if size > 2 * chunk:
            handle.seek(-chunk, os.SEEK_END)
            digest.update(handle.read(chunk))
    return digest.hexdigest()[:12]
