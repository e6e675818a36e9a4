"""Fixtures that start real components: an embedded Valkey server for the whole session."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pytest

from clipsearch.server import EmbeddedServer
from clipsearch.settings import Settings
from clipsearch.store import connect

ROOT = Path(__file__).resolve().parent.parent
# Tests never download weights: a missing checkpoint must fail at once, not after network time-outs.
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def embedded_server(tmp_path_factory: pytest.TempPathFactory):
    server = EmbeddedServer(tmp_path_factory.mktemp("valkey-data"))
    server.ensure_started()
    yield server
    server.stop()


@pytest.fixture
def settings(embedded_server: EmbeddedServer) -> Settings:
    """Settings for the shared test server with an index name of this test's own."""
    return Settings(data_dir=embedded_server.data_dir, index_name=f"test-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def client(settings: Settings):
    client = connect(settings)
    yield client
    client.close()


def unit_vectors(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real open_clip ViT-B-32 with random weights, saved the way users' checkpoints are."""
    import open_clip
    import torch

    torch.manual_seed(1234)
    model = open_clip.create_model("ViT-B-32")
    path = tmp_path_factory.mktemp("weights") / "vit-b-32-random.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def encoder(random_checkpoint: Path):
    from clipsearch.encoder import ClipEncoder

    return ClipEncoder.load("ViT-B-32", str(random_checkpoint))


@pytest.fixture
def cli_env(settings: Settings, random_checkpoint: Path) -> dict[str, str]:
    """Environment for a clipsearch subprocess that uses this test's index and the random model."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLIPSEARCH_", "VALKEY_URL"))}
    return {
        **env,
        "CLIPSEARCH_DATA_DIR": str(settings.data_dir),
        "CLIPSEARCH_INDEX": settings.index_name,
        "CLIPSEARCH_PRETRAINED": str(random_checkpoint),
        "PYTHONPATH": str(ROOT),
    }
