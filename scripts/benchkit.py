"""What the benchmark scripts share: a scratch folder, and the weights to time."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import open_clip
import torch

PRETRAINED_HELP = "tag or checkpoint file (default: random weights)"


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
