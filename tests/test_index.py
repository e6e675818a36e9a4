"""open_index: the one way from settings to a checked store and its encoder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from clipsearch.engine import load_image_encoder, load_text_encoder
from clipsearch.errors import IndexMissing, ServerUnreachable
from clipsearch.index import open_index
from clipsearch.settings import Settings
from clipsearch.store import PhotoRecord


def test_an_encoder_is_loaded_by_its_function_and_an_instance_reused(
    settings: Settings, random_checkpoint: Path, encoder
) -> None:
    settings = dataclasses.replace(settings, pretrained=str(random_checkpoint))
    with pytest.raises(IndexMissing):
        open_index(settings, load_text_encoder)
    store, same = open_index(settings, encoder, create=True)
    assert same is encoder and store.schema.model == encoder.identity
    store, text = open_index(settings, load_text_encoder, client=store.client)
    assert text is not encoder and text.identity == encoder.identity


def test_the_server_is_checked_before_the_model_loads(tmp_path: Path, free_port: int) -> None:
    """An unreachable server is reported at once, before seconds of model loading (here: before the checkpoint,
    which does not exist, is even looked at)."""
    settings = Settings(valkey_url=f"redis://127.0.0.1:{free_port}", pretrained=str(tmp_path / "absent.pt"))
    with pytest.raises(ServerUnreachable):
        open_index(settings, load_image_encoder)


def test_rebuild_empties_the_index(settings: Settings, encoder) -> None:
    store, _ = open_index(settings, encoder, create=True)
    store.upsert([PhotoRecord("a.jpg", np.ones(512, dtype=np.float32) / np.sqrt(512))])
    assert store.count() == 1
    rebuilt, _ = open_index(settings, encoder, rebuild=True)
    assert rebuilt.count() == 0
