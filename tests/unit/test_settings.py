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
            "CLIPSEARCH_TEXT_PRECISION": "INT8",
        }
    )
    assert settings.index_name == "my-photos" and settings.hnsw_ef_runtime == 50
    assert settings.model.text_precision == "int8" and Settings().model.text_precision == "float32"
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
        {"CLIPSEARCH_TEXT_PRECISION": "fp16"},
    ],
)
def test_bad_settings_are_config_errors(bad: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env(bad)


@pytest.mark.parametrize(
    ("url", "password"),
    [
        ("redis://default:Xq7#Zk9@host:6379", "Xq7#Zk9"),
        ("rediss://default:Xq7/Zk9@host:6379/0", "Xq7/Zk9"),
        ("valkeys://user:Xq7?Zk9@host:6379", "Xq7?Zk9"),
        ("redis://user:Xq7@Zk9@host:6379", "Xq7@Zk9"),
        ("redis://default:Xq7Zk9@host:port", "Xq7Zk9"),
        ("redis://default:Xq7Zk9@host:99999999", "Xq7Zk9"),
    ],
)
def test_a_malformed_url_is_a_config_error_that_shows_no_part_of_the_password(url: str, password: str) -> None:
    pieces = {password[i : i + 3] for i in range(len(password) - 2)}  # any 3 characters of it in a row
    assert "***" in redact_url(url) and not any(piece in redact_url(url) for piece in pieces)
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"VALKEY_URL": url})
    message = str(refused.value)
    assert not any(piece in message for piece in pieces), message
    assert "percent-encode" in message


def test_a_percent_encoded_password_is_accepted() -> None:
    settings = Settings.from_env({"VALKEY_URL": "rediss://default:p%40s%2Fs%23@host.example:6379"})
    assert settings.server_label == "rediss://default:***@host.example:6379"


def test_a_missing_ca_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CLIPSEARCH_TLS_CA_FILE"):
        Settings.from_env({"CLIPSEARCH_TLS_CA_FILE": str(tmp_path / "none.pem")})
