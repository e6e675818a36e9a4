"""Every knob of clipsearch, read from one place: environment variables (or Streamlit secrets)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from valkey.connection import parse_url

from clipsearch.errors import ConfigError

DEFAULT_MODEL = "ViT-B-32"
# Best text-to-image retrieval among the ViT-B-32 checkpoints open_clip publishes (see docs/engine.md).
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
URL_SCHEMES = ("valkey", "valkeys", "redis", "rediss", "unix")
TLS_SCHEMES = ("valkeys", "rediss")
ENGINES = ("auto", "onnx", "torch")  # see clipsearch.model.engine
TEXT_PRECISIONS = ("float32", "int8")  # see clipsearch.model.onnx_engine.OnnxTextEncoder
ALGORITHMS = ("AUTO", "HNSW", "FLAT")  # see clipsearch.index.schema
PERCENT_ENCODING_HELP = (
    "percent-encode the user name and password: '@' as %40, '/' as %2F, '?' as %3F, '#' as %23, ':' as %3A "
    "and '%' as %25 (python3 -c \"import urllib.parse, getpass; "
    "print(urllib.parse.quote(getpass.getpass(), safe=''))\")"
)


@dataclass(frozen=True)
class ModelSpec:
    """A CLIP model as the engines load it: its open_clip name and weights, the engine that runs it, and
    where its ONNX export lives. Made from Settings (Settings.model), whose defaults are the only ones."""

    model_name: str
    pretrained: str
    engine: str
    onnx_cache: Path
    onnx_threads: int
    text_precision: str

    @staticmethod
    def named(model_name: str, pretrained: str) -> ModelSpec:
        """A model by its name and weights, the rest as the settings' defaults."""
        return Settings(model_name=model_name, pretrained=pretrained).model


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
    # search backend of Aiven for Valkey, tried on the laptop.
    search_module: Path | None = None
    upload_max_bytes: int = 20 * 1024 * 1024
    upload_max_pixels: int = 50_000_000
    # What decoding one uploaded photo may take, estimated from its header before any pixel is decoded.
    upload_max_memory_mb: int = 128
    # Photos at least this similar count as near-duplicates: folded under the better result, grouped by
    # `duplicates`. 0.95 for real CLIP weights (a resized or re-encoded copy scores 0.98 and above).
    duplicate_similarity: float = 0.95
    engine: str = "auto"  # auto, onnx or torch: see clipsearch.model.engine
    # Threads each ONNX Runtime query runs on; 0: one per core. Many visitors' queries run side by side.
    onnx_threads: int = 0
    # The ONNX engine's text tower: float32 (open_clip's vectors), or int8 weights (faster, smaller, and close to
    # open_clip's vectors: docs/engine.md).
    text_precision: str = "float32"
    onnx_cache: Path = field(default_factory=lambda: default_cache_dir() / "onnx")
    # Indexing reads the words written in each photo (OCR: several times slower than encoding alone).
    read_text: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `environ` (default: os.environ), each as SETTINGS reads it; unset or empty values
        keep the defaults."""
        env = {k: v for k, v in (os.environ if environ is None else environ).items() if str(v).strip()}
        return cls(
            **{each.name: each.read(each.variable, env[each.variable]) for each in SETTINGS if each.variable in env}
        )

    @property
    def model(self) -> ModelSpec:
        """What chooses and loads the model: the key under which a process keeps one loaded encoder, whatever
        index or server it serves."""
        return ModelSpec(
            self.model_name, self.pretrained, self.engine, self.onnx_cache, self.onnx_threads, self.text_precision
        )

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


def _text(name: str, raw: str) -> str:
    return raw


def _path(name: str, raw: str) -> Path:
    return Path(raw)


def _url(name: str, raw: str) -> str:
    check_url(raw)
    return raw


def _index_name(name: str, raw: str) -> str:
    if not raw.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"{name}={raw!r}: use letters, digits, '-' and '_' only")
    return raw


def _algorithm(name: str, raw: str) -> str:
    if (algorithm := raw.upper()) not in ALGORITHMS:
        raise ConfigError(f"{name}={raw!r}: choose auto, HNSW or FLAT")
    return algorithm


def _engine(name: str, raw: str) -> str:
    if (engine := raw.lower()) not in ENGINES:
        raise ConfigError(f"{name}={raw!r}: choose " + ", ".join(ENGINES))
    return engine


def _text_precision(name: str, raw: str) -> str:
    if (precision := raw.lower()) not in TEXT_PRECISIONS:
        raise ConfigError(f"{name}={raw!r}: choose " + " or ".join(TEXT_PRECISIONS))
    return precision


def _ca_file(name: str, raw: str) -> Path:
    if not Path(raw).is_file():
        raise ConfigError(f"{name}={raw!r} is not a file (expected CA certificates in PEM)")
    return Path(raw)


def _search_module(name: str, raw: str) -> Path:
    if not Path(raw).is_file():
        raise ConfigError(f"{name}={raw!r} is not a file (expected valkey-search's libsearch.so)")
    return Path(raw).resolve()


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a whole number") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r}: expected a number above 0")
    return value


def _whole(name: str, raw: str) -> int:
    if not raw.strip().isdecimal():
        raise ConfigError(f"{name}={raw!r}: expected a whole number, 0 or more")
    return int(raw)


def _fraction(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number between 0 and 1") from None
    if not 0 < value <= 1:
        raise ConfigError(f"{name}={raw!r}: expected a number above 0 and at most 1")
    return value


def _flag(name: str, raw: str) -> bool:
    if (flag := raw.strip().lower()) not in ("0", "1", "true", "false", "yes", "no"):
        raise ConfigError(f"{name}={raw!r}: expected 1 or 0")
    return flag in ("1", "true", "yes")


def _in_the_cache(value: object) -> str:
    """A path under the cache folder as the README writes it: under ~/.cache, where XDG_CACHE_HOME is unset."""
    return f"`~/.cache/clipsearch/{Path(str(value)).relative_to(default_cache_dir()).as_posix()}`"


def _mebibytes(value: object) -> str:
    return f"{value // 2**20} MiB" if isinstance(value, int) else str(value)


@dataclass(frozen=True)
class Setting:
    """One setting: the Settings field it fills, its environment variable (a Streamlit secret of the same name
    fills in for it on the page), how its text is read (ConfigError says why not), and how the README's table
    writes its default (tests/unit/test_docs.py checks the table against these)."""

    name: str
    variable: str
    read: Callable[[str, str], Any]  # (variable, its text): the value, of the field's type
    shown: Callable[[object], str] | None = None

    def default_text(self) -> str:
        """The default as the README's table begins its cell: a value in backticks or a number, or unset/off."""
        value = next(field.default for field in fields(Settings) if field.name == self.name)
        if value is MISSING:
            value = getattr(Settings(), self.name)
        if self.shown is not None:
            return self.shown(value)
        if value is None:
            return "unset"
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, int | float):
            return f"{value:,}" if isinstance(value, int) else f"{value:g}"
        return f"`{str(value).replace(str(Path.home()), '~', 1).lower()}`"


SETTINGS = (
    Setting("valkey_url", "VALKEY_URL", _url),
    Setting("data_dir", "CLIPSEARCH_DATA_DIR", _path),
    Setting("index_name", "CLIPSEARCH_INDEX", _index_name),
    Setting("photos_dir", "CLIPSEARCH_PHOTOS", _path),
    Setting("model_name", "CLIPSEARCH_MODEL", _text, shown=lambda value: f"`{value}`"),
    Setting("pretrained", "CLIPSEARCH_PRETRAINED", _text),
    Setting("engine", "CLIPSEARCH_ENGINE", _engine),
    Setting("onnx_cache", "CLIPSEARCH_ONNX_CACHE", _path, shown=_in_the_cache),
    Setting("onnx_threads", "CLIPSEARCH_ONNX_THREADS", _whole),
    Setting("text_precision", "CLIPSEARCH_TEXT_PRECISION", _text_precision),
    Setting("read_text", "CLIPSEARCH_READ_TEXT", _flag),
    Setting("algorithm", "CLIPSEARCH_ALGORITHM", _algorithm),
    Setting("hnsw_m", "CLIPSEARCH_HNSW_M", _positive_int),
    Setting("hnsw_ef_construction", "CLIPSEARCH_HNSW_EF_CONSTRUCTION", _positive_int),
    Setting("hnsw_ef_runtime", "CLIPSEARCH_HNSW_EF_RUNTIME", _positive_int),
    Setting("tls_ca_file", "CLIPSEARCH_TLS_CA_FILE", _ca_file),
    Setting("search_module", "CLIPSEARCH_SEARCH_MODULE", _search_module),
    Setting("allow_shared_data_dir", "CLIPSEARCH_ALLOW_SHARED_DATA_DIR", _flag),
    Setting("upload_max_bytes", "CLIPSEARCH_UPLOAD_MAX_BYTES", _positive_int, shown=_mebibytes),
    Setting("upload_max_pixels", "CLIPSEARCH_UPLOAD_MAX_PIXELS", _positive_int),
    Setting("upload_max_memory_mb", "CLIPSEARCH_UPLOAD_MAX_MEMORY_MB", _positive_int),
    Setting("duplicate_similarity", "CLIPSEARCH_DUPLICATE_SIMILARITY", _fraction),
)


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
