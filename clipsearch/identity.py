"""What made a set of vectors: vectors of different identities must never be compared."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    pretrained: str
    dim: int

    def describe(self) -> str:
        return f"{self.name} / {self.pretrained} ({self.dim}-d)"
