"""Every knob of clipsearch, read from one place: environment variables (or Streamlit secrets)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from valkey.connection import parse_url

from clipsearch.errors import ConfigError

DEFAULT_MODEL = "ViT-B-32"
# Best text-to-image retrieval among the ViT-B-32 checkpoints open_clip publishes (see docs/engine.md).
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
URL_SCHEMES = ("valkey", "valkeys", "redis", "rediss", "unix")
TLS_SCHEMES = ("valkeys", "rediss")
ENGINES = ("auto", "onnx", "torch")  # see clipsearch.engine
PERCENT_ENCODING_HELP = (
    "percent-encode the user name and password: '@' as %40, '/' as %2F, '?' as %3F, '#' as %23, ':' as %3A "
    "and '%' as %25 (python3 -c \"import urllib.parse, getpass; "
    "print(urllib.parse.quote(getpass.getpass(), safe=''))\")"
)


# The environment variable of each setting (a Streamlit secret of the same name fills in for it in the page).
ENV_NAMES = {
    "valkey_url": "VALKEY_URL",
    "data_dir": "CLIPSEARCH_DATA_DIR",
    "index_name": "CLIPSEARCH_INDEX",
    "model_name": "CLIPSEARCH_MODEL",
    "pretrained": "CLIPSEARCH_PRETRAINED",
    "photos_dir": "CLIPSEARCH_PHOTOS",
    "algorithm": "CLIPSEARCH_ALGORITHM",
    "hnsw_m": "CLIPSEARCH_HNSW_M",
    "hnsw_ef_construction": "CLIPSEARCH_HNSW_EF_CONSTRUCTION",
    "hnsw_ef_runtime": "CLIPSEARCH_HNSW_EF_RUNTIME",
    "tls_ca_file": "CLIPSEARCH_TLS_CA_FILE",
    "allow_shared_data_dir": "CLIPSEARCH_ALLOW_SHARED_DATA_DIR",
    "search_module": "CLIPSEARCH_SEARCH_MODULE",
    "upload_max_bytes": "CLIPSEARCH_UPLOAD_MAX_BYTES",
    "upload_max_pixels": "CLIPSEARCH_UPLOAD_MAX_PIXELS",
    "upload_max_memory_mb": "CLIPSEARCH_UPLOAD_MAX_MEMORY_MB",
    "duplicate_similarity": "CLIPSEARCH_DUPLICATE_SIMILARITY",
    "engine": "CLIPSEARCH_ENGINE",
    "onnx_threads": "CLIPSEARCH_ONNX_THREADS",
    "onnx_cache": "CLIPSEARCH_ONNX_CACHE",
    "read_text": "CLIPSEARCH_READ_TEXT",
}


@dataclass(frozen=True)
class ModelSpec:
    """A CLIP model as the engines load it: its open_clip name and weights, the engine that runs it, and
    where its ONNX export lives (Settings.model)."""

    model_name: str = DEFAULT_MODEL
    pretrained: str = DEFAULT_PRETRAINED
    engine: str = "auto"  # auto, onnx or torch: see clipsearch.engine
    onnx_cache: Path = field(default_factory=lambda: default_cache_dir() / "onnx")
    onnx_threads: int = 0


@dataclass(frozen=True)
class Settings:
    valkey_url: str | None = None
    data_dir: Path = Path(".clipsearch")
    index_name: str = "clipsearch"
    model_name: str = DEFAULT_MODEL
    pretrained: str = DEFAULT_PRETRAINED
    photos_dir: Path = Path("photos")
    algorithm: str = "AUTO"  # AUTO: FLAT for a collection up to schema.AUTO_FLAT_UP_TO photos, HNSW above
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    hnsw_ef_runtime: int = 100
    tls_ca_file: Path | None = None  # CA certificates that a TLS server's certificate may chain to
    allow_shared_data_dir: bool = False  # let other local users read the embedded server's data
    # valkey-search's module (libsearch.so) for the embedded server to load instead of RediSearch: the
    # engine of Aiven for Valkey, tried on the laptop.
    search_module: Path | None = None
    upload_max_bytes: int = 20 * 1024 * 1024
    upload_max_pixels: int = 50_000_000
    # What decoding one uploaded photo may take, estimated from its header before any pixel is decoded.
    upload_max_memory_mb: int = 128
    # Photos at least this similar count as near-duplicates: folded under the better result, grouped by
    # `duplicates`. 0.95 for real CLIP weights (a resized or re-encoded copy scores 0.98 and above).
    duplicate_similarity: float = 0.95
    engine: str = "auto"  # auto, onnx or torch: see clipsearch.engine
    # Threads each ONNX Runtime query runs on; 0: one per core. Many visitors' queries run side by side.
    onnx_threads: int = 0
    onnx_cache: Path = field(default_factory=lambda: default_cache_dir() / "onnx")
    # Indexing reads the words written in each photo (OCR: several times slower than encoding alone).
    read_text: bool = False

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
        if algorithm not in ("AUTO", "HNSW", "FLAT"):
            raise ConfigError(f"CLIPSEARCH_ALGORITHM={algorithm!r}: choose auto, HNSW or FLAT")
        engine = env.get("CLIPSEARCH_ENGINE", defaults.engine).lower()
        if engine not in ENGINES:
            raise ConfigError(f"CLIPSEARCH_ENGINE={engine!r}: choose " + ", ".join(ENGINES))
        ca_file = env.get("CLIPSEARCH_TLS_CA_FILE")
        if ca_file is not None and not Path(ca_file).is_file():
            raise ConfigError(f"CLIPSEARCH_TLS_CA_FILE={ca_file!r} is not a file (expected CA certificates in PEM)")
        search_module = env.get("CLIPSEARCH_SEARCH_MODULE")
        if search_module is not None and not Path(search_module).is_file():
            raise ConfigError(
                f"CLIPSEARCH_SEARCH_MODULE={search_module!r} is not a file (expected valkey-search's libsearch.so)"
            )
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
            tls_ca_file=Path(ca_file) if ca_file else None,
            allow_shared_data_dir=_flag(env, "CLIPSEARCH_ALLOW_SHARED_DATA_DIR"),
            search_module=Path(search_module).resolve() if search_module else None,
            upload_max_bytes=_positive_int(env, "CLIPSEARCH_UPLOAD_MAX_BYTES", defaults.upload_max_bytes),
            upload_max_pixels=_positive_int(env, "CLIPSEARCH_UPLOAD_MAX_PIXELS", defaults.upload_max_pixels),
            upload_max_memory_mb=_positive_int(env, "CLIPSEARCH_UPLOAD_MAX_MEMORY_MB", defaults.upload_max_memory_mb),
            duplicate_similarity=_fraction(env, "CLIPSEARCH_DUPLICATE_SIMILARITY", defaults.duplicate_similarity),
            engine=engine,
            onnx_cache=Path(env.get("CLIPSEARCH_ONNX_CACHE", defaults.onnx_cache)),
            onnx_threads=_whole(env, "CLIPSEARCH_ONNX_THREADS", defaults.onnx_threads),
            read_text=_flag(env, "CLIPSEARCH_READ_TEXT"),
        )

    @property
    def model(self) -> ModelSpec:
        """What chooses and loads the model: the key under which a process keeps one loaded encoder, whatever
        index or server it serves."""
        return ModelSpec(self.model_name, self.pretrained, self.engine, self.onnx_cache, self.onnx_threads)

    @property
    def server_label(self) -> str:
        """Where the data lives, safe to show: the embedded server or the redacted URL."""
        if self.valkey_url is None:
            engine = " with valkey-search" if self.search_module else ""
            return f"embedded Valkey{engine} in {self.data_dir}"
        return redact_url(self.valkey_url)


def default_cache_dir() -> Path:
    """Where clipsearch keeps what it can make again (the ONNX exports): $XDG_CACHE_HOME/clipsearch."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "clipsearch"


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


def _whole(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    if not raw.strip().isdecimal():
        raise ConfigError(f"{name}={raw!r}: expected a whole number, 0 or more")
    return int(raw)


def _fraction(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number between 0 and 1") from None
    if not 0 < value <= 1:
        raise ConfigError(f"{name}={raw!r}: expected a number above 0 and at most 1")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "0").strip().lower()
    if raw not in ("0", "1", "true", "false", "yes", "no"):
        raise ConfigError(f"{name}={raw!r}: expected 1 or 0")
    return raw in ("1", "true", "yes")


def check_url(url: str) -> None:
    """Refuse, without ever showing the password, a URL that valkey-py would misread or fail on."""
    shown = redact_url(url)
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in URL_SCHEMES:
        raise ConfigError(f"VALKEY_URL {shown!r} must start with one of " + ", ".join(f"{s}://" for s in URL_SCHEMES))
    userinfo = rest.rpartition("@")[0]
    if any(char in userinfo for char in "/?#@"):
        raise ConfigError(f"VALKEY_URL {shown!r} cannot be read as it is: {PERCENT_ENCODING_HELP}")
    try:
        parse_url(url)
    except Exception as error:  # valkey-py raises several kinds, with the URL's text in some
        problem = str(error)
        password = userinfo.partition(":")[2]
        if password:
            problem = problem.replace(password, "***")
        raise ConfigError(f"VALKEY_URL {shown!r} cannot be read ({problem}); {PERCENT_ENCODING_HELP}") from None


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, however malformed the URL.

    The user information ends at the last '@' (an unencoded password may hold '@', '/', '?' or '#'),
    and a ?password= query parameter is hidden too.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        return "<not a URL>"
    userinfo, at, host_and_rest = rest.rpartition("@")
    if at:
        user, has_password, _ = userinfo.partition(":")
        rest = f"{user}{':***' if has_password else ''}@{host_and_rest}"
    location, question, query = rest.partition("?")
    if question:
        query = "&".join("password=***" if item.lower().startswith("password=") else item for item in query.split("&"))
    return f"{scheme}://{location}{question}{query}"
