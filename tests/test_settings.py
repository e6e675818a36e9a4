"""Settings from the environment, and URL redaction: no server, no model."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipsearch.errors import ConfigError
from clipsearch.settings import Settings, redact_url


def test_settings_from_env_and_redaction() -> None:
    settings = Settings.from_env(
        {
            "VALKEY_URL": "rediss://avnadmin:pw@host.aivencloud.com:12345",
            "CLIPSEARCH_INDEX": "my-photos",
            "CLIPSEARCH_HNSW_EF_RUNTIME": "50",
            "CLIPSEARCH_DATA_DIR": "",
        }
    )
    assert settings.index_name == "my-photos" and settings.hnsw_ef_runtime == 50
    assert settings.data_dir == Path(".clipsearch")
    assert settings.server_label == "rediss://avnadmin:***@host.aivencloud.com:12345"
    assert redact_url("unix:///tmp/v.sock?password=pw&db=0") == "unix:///tmp/v.sock?password=***&db=0"
    assert Settings.from_env({}).valkey_url is None


@pytest.mark.parametrize(
    "bad",
    [
        {"VALKEY_URL": "http://x"},
        {"CLIPSEARCH_INDEX": "a b"},
        {"CLIPSEARCH_HNSW_M": "many"},
        {"CLIPSEARCH_HNSW_M": "0"},
        {"CLIPSEARCH_ALGORITHM": "IVF"},
    ],
)
def test_bad_settings_are_config_errors(bad: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env(bad)
