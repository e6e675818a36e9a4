"""Fixtures that start real components: an embedded Valkey server for the whole session."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from clipsearch.server import EmbeddedServer
from clipsearch.settings import Settings
from clipsearch.store import connect

ROOT = Path(__file__).resolve().parent.parent


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
