"""Every knob of clipsearch, read from one place: environment variables (or Streamlit secrets)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from clipsearch.errors import ConfigError

DEFAULT_MODEL = "ViT-B-32"
# Best text-to-image retrieval among the ViT-B-32 checkpoints open_clip publishes (see README).
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
URL_SCHEMES = ("valkey", "valkeys", "redis", "rediss", "unix")


@dataclass(frozen=True)
class Settings:
    valkey_url: str | None = None
    data_dir: Path = Path(".clipsearch")
    index_name: str = "clipsearch"
    model_name: str = DEFAULT_MODEL
    pretrained: str = DEFAULT_PRETRAINED
    photos_dir: Path = Path("photos")
    algorithm: str = "HNSW"
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    hnsw_ef_runtime: int = 100

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `environ` (default: os.environ); unset or empty values keep defaults."""
        env = {k: v for k, v in (os.environ if environ is None else environ).items() if str(v).strip()}
        defaults = cls()
        url = env.get("VALKEY_URL")
        if url is not None:
            check_url(url)
        index_name = env.get("CLIPSEARCH_INDEX", defaults.index_name)
        if not index_name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"CLIPSEARCH_INDEX={index_name!r}: use letters, digits, '-' and '_' only")
        algorithm = env.get("CLIPSEARCH_ALGORITHM", defaults.algorithm).upper()
        if algorithm not in ("HNSW", "FLAT"):
            raise ConfigError(f"CLIPSEARCH_ALGORITHM={algorithm!r}: choose HNSW or FLAT")
        return cls(
            valkey_url=url,
            data_dir=Path(env.get("CLIPSEARCH_DATA_DIR", defaults.data_dir)),
            index_name=index_name,
            model_name=env.get("CLIPSEARCH_MODEL", defaults.model_name),
            pretrained=env.get("CLIPSEARCH_PRETRAINED", defaults.pretrained),
            photos_dir=Path(env.get("CLIPSEARCH_PHOTOS", defaults.photos_dir)),
            algorithm=algorithm,
            hnsw_m=_positive_int(env, "CLIPSEARCH_HNSW_M", defaults.hnsw_m),
            hnsw_ef_construction=_positive_int(env, "CLIPSEARCH_HNSW_EF_CONSTRUCTION", defaults.hnsw_ef_construction),
            hnsw_ef_runtime=_positive_int(env, "CLIPSEARCH_HNSW_EF_RUNTIME", defaults.hnsw_ef_runtime),
        )

    @property
    def server_label(self) -> str:
        """Where the data lives, safe to show: the embedded server or the redacted URL."""
        if self.valkey_url is None:
            return f"embedded Valkey in {self.data_dir}"
        return redact_url(self.valkey_url)


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a whole number") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r}: expected a number above 0")
    return value


def check_url(url: str) -> None:
    scheme = urlsplit(url).scheme.lower()
    if scheme not in URL_SCHEMES:
        raise ConfigError(
            f"VALKEY_URL {redact_url(url)!r} must start with one of " + ", ".join(f"{s}://" for s in URL_SCHEMES)
        )


def redact_url(url: str) -> str:
    """The URL with any password (in the netloc or a ?password= query) replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}{':***' if has_password else ''}@{host}"
    query = "&".join(
        "password=***" if item.lower().startswith("password=") else item for item in parts.query.split("&") if item
    )
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
