"""Fixtures that start real components (an embedded Valkey server, a real open_clip model) and share test data.

Two tiers: tests/unit (plain values, no server, no model: the whole folder in under a minute) and
tests/integration (servers, models, the page, a browser). A test that uses the server or the model is marked
`slow` by itself, and one in tests/unit that does fails the collection; `pytest tests/unit`, or
`pytest -m "not slow"` (which adds the few plain tests of the integration modules), runs the fast tier.
"""

from __future__ import annotations

import functools
import io
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cluster import LocalCluster, free_port
from PIL import Image

from clipsearch.index.connection import connect
from clipsearch.index.server import EmbeddedServer
from clipsearch.settings import ModelSpec, Settings

ROOT = Path(__file__).resolve().parent.parent
# Tests never download weights: a missing checkpoint must fail at once, not after network time-outs.
os.environ["HF_HUB_OFFLINE"] = "1"
# A server, the model, a subprocess, the OCR.
SLOW_FIXTURES = {"search_server", "own_server", "random_checkpoint", "run_cli", "text_reader"}
SLOW_MODULES = {"test_connection", "test_server", "test_benchmarks"}  # each test starts servers of its own


UNIT = Path(__file__).resolve().parent / "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The one place that marks tests slow: by the fixtures they use, or the module they are in; and that
    keeps tests/unit free of them."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or item.path.stem in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
            if item.path.is_relative_to(UNIT):
                raise pytest.UsageError(f"{item.nodeid} needs a server or the model: it belongs in tests/integration")


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """An embedded server of this test's own (not yet started), stopped afterwards."""
    server = EmbeddedServer(tmp_path / "data")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sample_photos() -> Path:
    """The project's 204 sample photos."""
    return ROOT / "photos"


@pytest.fixture
def copy_photos(sample_photos: Path) -> Callable[[Path, list[str]], Path]:
    """Copies sample photos by name into a folder (made if needed), keeping their times."""

    def copy(folder: Path, names: list[str]) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy2(sample_photos / name, folder / name)
        return folder

    return copy


@pytest.fixture(name="free_port")
def a_free_port() -> int:
    return free_port()


class MemoryCgroup:
    """A child of this process's cgroup v1 memory group with a limit: processes started through `prefix` run
    inside it, and the kernel reports their peak and whether it killed any for lack of memory."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        path.mkdir()
        (path / "memory.limit_in_bytes").write_text(str(limit))

    @staticmethod
    def root() -> Path | None:
        """This process's memory group, if it can hold children: cgroup v1, writable (root)."""
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                folder = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
                return folder if os.access(folder, os.W_OK) and (folder / "memory.limit_in_bytes").exists() else None
        return None

    @property
    def prefix(self) -> list[str]:
        """A command prefix that moves the command into this group before it starts."""
        return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(self.path)]

    @property
    def peak(self) -> int:
        return int((self.path / "memory.max_usage_in_bytes").read_text())

    @property
    def oom_kills(self) -> int:
        fields = dict(line.split() for line in (self.path / "memory.oom_control").read_text().splitlines())
        return int(fields.get("oom_kill", 0))

    def remove(self) -> None:
        self.path.rmdir()


@pytest.fixture
def memory_cgroup() -> Iterator[Callable[[int], MemoryCgroup]]:
    """Makes memory groups of a given limit (skipped where cgroup v1 is not writable, except on CI)."""
    root = MemoryCgroup.root()
    if root is None:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root on cgroup v1: the memory limit tests must run there")
        pytest.skip("needs a writable cgroup v1 memory controller (root on these machines)")
    made: list[MemoryCgroup] = []

    def make(limit: int) -> MemoryCgroup:
        made.append(MemoryCgroup(root / f"clipsearch-test-{uuid.uuid4().hex[:8]}", limit))
        return made[-1]

    yield make
    for group in made:
        group.remove()


@pytest.fixture(scope="session")
def as_other_user() -> list[str]:
    """A command prefix that runs a process as user nobody: tests run as root, who reads every file."""
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


VALKEY_SEARCH = ROOT.parent / "shared" / "valkey-search" / "libsearch.so"
# What a test that talks to a server runs against: the embedded server with RediSearch, with valkey-search,
# and (in the modules that name it in their own BACKENDS) a local 3-primary cluster with valkey-search.
BACKENDS = ("redisearch", "valkey-search")


def valkey_search_module() -> Path:
    """valkey-search's module, which is not on PyPI: CI has it beside the project; elsewhere its tests skip."""
    if not VALKEY_SEARCH.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI tests both backends, and {VALKEY_SEARCH} is missing")
        pytest.skip(f"valkey-search is not here ({VALKEY_SEARCH} is missing)")
    return VALKEY_SEARCH


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that reaches a server runs once per backend of its module (BACKENDS, or the module's own)."""
    if "backend" in metafunc.fixturenames:
        backends = getattr(metafunc.module, "BACKENDS", BACKENDS)
        metafunc.parametrize("backend", backends, indirect=True, scope="session")


@pytest.fixture(scope="session")
def valkey_search() -> Path:
    """valkey-search's module, for a test of its own."""
    return valkey_search_module()


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    """The search backend a test runs on: redisearch, valkey-search or cluster."""
    chosen: str = request.param
    return chosen


@dataclass(frozen=True)
class ServerUnderTest:
    """The shared server of one backend: the embedded one, or a local cluster (valkey_url names a node)."""

    backend: str
    embedded: EmbeddedServer | None = None
    cluster: LocalCluster | None = None

    def settings(self, **values: Any) -> Settings:
        if self.cluster is not None:
            return Settings(valkey_url=self.cluster.url, **values)
        assert self.embedded is not None
        return Settings(data_dir=self.embedded.data_dir, search_module=self.embedded.search_module, **values)

    def environment(self) -> dict[str, str]:
        """The variables that point a clipsearch process at this server."""
        if self.cluster is not None:
            return {"VALKEY_URL": self.cluster.url}
        assert self.embedded is not None
        module = str(self.embedded.search_module or "")
        return {"CLIPSEARCH_DATA_DIR": str(self.embedded.data_dir), "CLIPSEARCH_SEARCH_MODULE": module}


@pytest.fixture(scope="session")
def search_server(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[ServerUnderTest]:
    if backend == "cluster":
        cluster = LocalCluster(tmp_path_factory.mktemp("cluster"), valkey_search_module()).start()
        yield ServerUnderTest(backend, cluster=cluster)
        cluster.stop()
        return
    module = valkey_search_module() if backend == "valkey-search" else None
    server = EmbeddedServer(tmp_path_factory.mktemp(f"valkey-data-{backend}"), search_module=module)
    server.ensure_started()
    yield ServerUnderTest(backend, embedded=server)
    server.stop()


@pytest.fixture
def embedded_server(search_server: ServerUnderTest) -> EmbeddedServer:
    """The shared embedded server, for what only it has (a data folder, a socket)."""
    if search_server.embedded is None:
        pytest.skip("the embedded server's own behaviour")
    return search_server.embedded


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ONNX export cache for the whole run, for in-process settings and subprocesses alike (so that the
    random model's towers are exported once, not in each test), and never the user's own cache."""
    path = tmp_path_factory.mktemp("onnx-cache")
    os.environ["CLIPSEARCH_ONNX_CACHE"] = str(path)
    return path


@pytest.fixture
def settings(search_server: ServerUnderTest, onnx_cache: Path) -> Settings:
    """Settings for the shared test server with an index name of this test's own."""
    return search_server.settings(index_name=f"test-{uuid.uuid4().hex[:10]}", onnx_cache=onnx_cache)


@pytest.fixture
def client(settings: Settings):
    client = connect(settings)
    yield client
    client.close()


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
    from clipsearch.model.torch_engine import TorchImageEncoder

    return TorchImageEncoder.load(ModelSpec.named("ViT-B-32", str(random_checkpoint)))


PLAIN = ["giraffe.jpg", "igloo.jpg", "pan.jpg", "chair.jpg", "baseball.jpg", "bulb.jpg"]  # beside text_photos


@pytest.fixture(scope="session")
def text_photos(tmp_path_factory, sample_photos: Path) -> tuple[Path, dict[str, str]]:
    """The photos with words written in them (scripts/text_photos.py), and a few without (named plain-*), in
    one folder; the words of each photo with words."""
    from text_photos import write_text_photos

    folder = tmp_path_factory.mktemp("text-photos")
    written = write_text_photos(sample_photos, folder)
    for name in PLAIN:
        shutil.copy2(sample_photos / name, folder / f"plain-{name}")
    return folder, written


@pytest.fixture(scope="session")
def text_reader():
    """PP-OCR, loaded once for the session."""
    from clipsearch.model.reading import TextReader

    return TextReader()


@pytest.fixture
def open_test_index(settings: Settings, encoder):
    """Opens (creating) this test's index with the session's encoder, the way the CLI and the page do."""
    from clipsearch.library import Library

    def open_(test_settings: Settings = settings):
        return Library(test_settings, text_encoder=lambda: encoder, image_encoder=lambda: encoder).store(create=True)

    return open_


@pytest.fixture
def photo_folder(tmp_path: Path, sample_photos: Path) -> Path:
    """34 sample photos from across the whole set, in a folder of this test's own."""
    folder = tmp_path / "my-photos"
    folder.mkdir()
    for path in sorted(sample_photos.glob("*.jpg"))[::6]:
        shutil.copy2(path, folder / path.name)
    return folder


@pytest.fixture
def indexed_store(open_test_index, encoder, photo_folder: Path):
    """This test's index holding photo_folder, loaded by the real loader."""
    from clipsearch.ingest.loader import LoadOptions, PhotoLoader

    store = open_test_index()
    PhotoLoader(store, lambda: encoder, LoadOptions(), show_bar=False).index_folder(photo_folder)
    return store


@pytest.fixture
def cli_env(search_server: ServerUnderTest, settings: Settings, random_checkpoint: Path) -> dict[str, str]:
    """Environment for a clipsearch subprocess that uses this test's index and the random model."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLIPSEARCH_", "VALKEY_URL"))}
    return {
        **env,
        **search_server.environment(),
        "CLIPSEARCH_INDEX": settings.index_name,
        "CLIPSEARCH_PRETRAINED": str(random_checkpoint),
        "CLIPSEARCH_ONNX_CACHE": str(settings.onnx_cache),
    }


@pytest.fixture
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Runs `python -m clipsearch ARGS` (or a script, with script=) in the project folder."""

    def run(
        env: dict[str, str], *args: str, script: str | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, script] if script else [sys.executable, "-m", "clipsearch"]
        return subprocess.run([*command, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)

    return run


@pytest.fixture(scope="session")
def camera_jpeg() -> Callable[..., bytes]:
    """Makes a camera-sized JPEG: a smooth scene with sensor-like noise, and an EXIF orientation (each size and
    orientation made once for the session)."""

    @functools.cache
    def scene(width: int, height: int) -> Image.Image:
        rng = np.random.default_rng(3)
        across, down = np.linspace(0, 255, width, dtype=np.float32), np.linspace(0.3, 1, height, dtype=np.float32)
        light = across[None, :, None] * down[:, None, None]
        noise = rng.standard_normal((height, width, 3), dtype=np.float32) * 8
        return Image.fromarray(np.clip(light + noise, 0, 255).astype(np.uint8))

    @functools.cache
    def make(width: int, height: int, orientation: int = 1) -> bytes:
        exif = Image.Exif()
        exif[0x0112] = orientation
        buffer = io.BytesIO()
        scene(width, height).save(buffer, "JPEG", quality=90, exif=exif)
        return buffer.getvalue()

    return make


@pytest.fixture(scope="session")
def downgrade_to_version_2() -> Callable[..., None]:
    from clipsearch.index.schema import FIELDS
    from clipsearch.index.store import PhotoStore

    def downgrade_to_version_2(client, store: PhotoStore) -> None:
        """Make an index look as the previous clipsearch left it: no places, version 2, and a search index
        without them or the positions."""
        from valkey.commands.search.indexDefinition import IndexDefinition, IndexType

        client.execute_command("FT.DROPINDEX", store.schema.search_index)
        for key, _ in store.scan(("path",)):
            client.hdel(key, *(name for name, spec in FIELDS.items() if spec.since >= 3))
        client.hset(store.schema.meta_key, "schema_version", "2")
        definition = IndexDefinition(prefix=[store.schema.prefix], index_type=IndexType.HASH)
        later = {"latitude", "longitude"} | {name for name, spec in FIELDS.items() if spec.since >= 3}
        version_2 = [field for field in store.schema.fields() if field.name not in later]
        client.ft(store.schema.search_index).create_index(version_2, definition=definition)

    return downgrade_to_version_2


@pytest.fixture(scope="session")
def downgrade_to_version_3() -> Callable[..., None]:
    from clipsearch.index.schema import FIELDS
    from clipsearch.index.store import PhotoStore

    def downgrade_to_version_3(client, store: PhotoStore) -> None:
        """Make an index look as the previous clipsearch left it: no words of names, version 3, and a search
        index without them."""
        from valkey.commands.search.indexDefinition import IndexDefinition, IndexType

        client.execute_command("FT.DROPINDEX", store.schema.search_index)
        later = [name for name, spec in FIELDS.items() if spec.since >= 4]
        for key, _ in store.scan(("path",)):
            client.hdel(key, *later)
        client.hset(store.schema.meta_key, "schema_version", "3")
        definition = IndexDefinition(prefix=[store.schema.prefix], index_type=IndexType.HASH)
        version_3 = [field for field in store.schema.fields() if field.name not in later]
        client.ft(store.schema.search_index).create_index(version_3, definition=definition)

    return downgrade_to_version_3


@pytest.fixture(scope="session")
def downgrade_to_version_1() -> Callable[..., None]:
    from clipsearch.index.schema import FIELDS
    from clipsearch.index.store import PhotoStore

    def downgrade_to_version_1(client, store: PhotoStore) -> None:
        """Make an index look as the previous clipsearch left it: no facts, version 1, a vector-only index."""
        from valkey.commands.search.indexDefinition import IndexDefinition, IndexType

        client.execute_command("FT.DROPINDEX", store.schema.name)  # the name alone: both backends take it
        for key, _ in store.scan(("path",)):
            client.hdel(key, *(name for name, spec in FIELDS.items() if spec.since >= 2))
        client.hset(store.schema.meta_key, "schema_version", "1")
        definition = IndexDefinition(prefix=[store.schema.prefix], index_type=IndexType.HASH)
        client.ft(store.schema.name).create_index(store.schema.fields()[:1], definition=definition)

    return downgrade_to_version_1


def dated_photo(source: Path, taken: str, camera: tuple[str, str], offset: str | None = None) -> bytes:
    """A sample photo re-saved with the EXIF a camera writes: capture time (and offset), make and model."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = camera
    exif.get_ifd(0x8769)[0x9003] = taken
    if offset:
        exif.get_ifd(0x8769)[0x9011] = offset
    buffer = io.BytesIO()
    Image.open(source).convert("RGB").save(buffer, "JPEG", quality=90, exif=exif)
    return buffer.getvalue()


def located_photo(source: Path, position: tuple[float, float] | None, taken: str = "2022:05:01 10:00:00") -> bytes:
    """A sample photo re-saved with the EXIF of a phone: capture time, and the GPS tags of `position` (none for
    None), in degrees, minutes and seconds as cameras write them."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Apple", "iPhone 12"
    exif.get_ifd(0x8769)[0x9003] = taken
    if position is not None:

        def dms(value: float) -> tuple[float, float, float]:
            degrees, rest = divmod(abs(value) * 3600, 3600)
            minutes, seconds = divmod(rest, 60)
            return float(degrees), float(minutes), round(seconds, 4)

        latitude, longitude = position
        exif.get_ifd(0x8825).update(
            {1: "N" if latitude >= 0 else "S", 2: dms(latitude), 3: "E" if longitude >= 0 else "W", 4: dms(longitude)}
        )
    buffer = io.BytesIO()
    Image.open(source).convert("RGB").save(buffer, "JPEG", quality=90, exif=exif)
    return buffer.getvalue()


# Where the photos of `located_library` were taken: cities on four continents, two photos in Kyoto, a photo
# at sea (no populated place within clipsearch.ingest.places.MAX_PLACE_KM) and one without GPS tags.
LOCATIONS: dict[str, tuple[float, float] | None] = {
    "kyoto-1": (35.0116, 135.7681),
    "kyoto-2": (34.9949, 135.7850),
    "lisbon": (38.7223, -9.1393),
    "sao-paulo": (-23.5505, -46.6333),
    "new-york": (40.7128, -74.0060),
    "reykjavik": (64.1466, -21.9426),
    "at-sea": (0.0, -30.0),
    "no-gps": None,
}


@pytest.fixture
def located_library(tmp_path: Path, sample_photos: Path) -> Path:
    """One photo per LOCATIONS entry (named after it), each from another sample photo, taken in 2022, month by
    month."""
    names = sorted(path.name for path in sample_photos.glob("*.jpg"))[: len(LOCATIONS)]
    folder = tmp_path / "located"
    folder.mkdir()
    for month, (name, (where, position)) in enumerate(zip(names, LOCATIONS.items(), strict=True), 1):
        taken = f"2022:{month:02d}:15 10:00:00"
        (folder / f"{where}.jpg").write_bytes(located_photo(sample_photos / name, position, taken))
    return folder


@pytest.fixture
def travel_library(tmp_path: Path, sample_photos: Path) -> Path:
    """40 sample photos from three years of travels: each taken in one of the LOCATIONS (a few hundred metres
    apart in a city), in a month of 2021 to 2023, in a folder per year."""
    names = sorted(path.name for path in sample_photos.glob("*.jpg"))[::5][:40]
    places = list(LOCATIONS.values())
    folder = tmp_path / "travels"
    for i, name in enumerate(names):
        position = places[i % len(places)]
        if position is not None:
            position = (position[0] + 0.002 * (i % 5), position[1] - 0.002 * (i % 3))
        year, month = 2021 + i % 3, 1 + (i * 5) % 12
        target = folder / str(year) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(
            located_photo(sample_photos / name, position, f"{year}:{month:02d}:{1 + i % 27:02d} 10:00:00")
        )
    return folder


@pytest.fixture
def dated_library(tmp_path: Path, sample_photos: Path) -> Path:
    """A library in dated folders: 2021/japan (iPhone, with offsets), 2021 (Canon), 2022 (no EXIF)."""
    names = sorted(path.name for path in sample_photos.glob("*.jpg"))[:24]
    folder = tmp_path / "library"
    for i, name in enumerate(names):
        where = ["2021/japan", "2021", "2022"][i % 3]
        target = folder / where / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if where == "2022":
            shutil.copy(sample_photos / name, target)
            continue
        camera = ("Apple", "iPhone 12") if where == "2021/japan" else ("Canon", "Canon EOS R6")
        month = 1 + i % 12
        target.write_bytes(dated_photo(sample_photos / name, f"2021:{month:02d}:10 12:00:00", camera, "+09:00"))
    return folder


# With the random test model (seed 1234), the 34 photos of `photo_folder` are at most 0.982 similar to one
# another (measured), while these copies of three of them are at least 0.994 similar to their original
# (measured: resized 0.9992, JPEG quality 40 0.9997, cropped by 3 px 0.9940, PNG 1.0000 for the arc; the
# kingfisher's and the Navajo's copies 0.9987 and above). Tests check both before relying on them.
PLANTED = {
    "arcdetriomphe.jpg": ("resized", "quality40"),
    "kingfisher.jpg": ("cropped", "png"),
    "monuments-navajo.jpg": ("resized", "quality40", "cropped", "png"),
}


def planted_copy(original: Image.Image, kind: str) -> tuple[Image.Image, str, dict[str, int]]:
    """A near-duplicate of a photo, its file format and save options."""
    width, height = original.size
    if kind == "resized":
        return original.resize((width // 2, height // 2), Image.Resampling.LANCZOS), "JPEG", {"quality": 90}
    if kind == "quality40":
        return original, "JPEG", {"quality": 40}
    if kind == "cropped":
        return original.crop((3, 3, width - 3, height - 3)), "JPEG", {"quality": 90}
    return original, "PNG", {}


@pytest.fixture(scope="session")
def planted_similarity() -> float:
    """The near-duplicate threshold for the planted copies (see PLANTED)."""
    return 0.99


@pytest.fixture
def planted_duplicates(photo_folder: Path) -> dict[str, list[str]]:
    """photo_folder with near-duplicates of three of its photos in a subfolder: each original's path and the
    paths of its copies (resized to half, re-saved at JPEG quality 40, cropped by 3 px, converted to PNG)."""
    groups: dict[str, list[str]] = {}
    (photo_folder / "copies").mkdir()
    for name, kinds in PLANTED.items():
        original = Image.open(photo_folder / name).convert("RGB")
        groups[name] = []
        for kind in kinds:
            image, file_format, options = planted_copy(original, kind)
            path = f"copies/{Path(name).stem}-{kind}.{'png' if file_format == 'PNG' else 'jpg'}"
            image.save(photo_folder / path, file_format, **options)
            groups[name].append(path)
    return groups


@pytest.fixture
def search_equals_brute_force(run_cli, encoder) -> Callable[..., None]:
    """Checks `search TEXT --json --no-text` (CLIP alone) against brute force over every vector of the index
    (`rows`: key to a Photo with its vector and path): the same 10 keys in order, the same scores."""

    def check(env: dict[str, str], rows: dict, texts: tuple[str, ...] = ("a photo of a cat", "snowy streets")) -> None:
        keys = list(rows)
        matrix = np.stack([rows[key].vector for key in keys])
        for text in texts:
            found = json.loads(run_cli(env, "search", text, "--k", "10", "--json", "--no-fold", "--no-text").stdout)
            scores = matrix @ encoder.encode_text([text])[0]
            best = np.argsort(-scores)[:10]
            assert [hit["key"] for hit in found] == [keys[i] for i in best]
            np.testing.assert_allclose([hit["score"] for hit in found], scores[best], atol=1e-5)
            assert all(hit["path"] == rows[hit["key"]].path for hit in found)

    return check


def gallery_tiles(app: Any) -> list[dict[str, Any]]:
    """What the search page's gallery shows (an AppTest's run): each tile's key, rank, picture, caption (plain
    text) and actions, as the page sends them to the browser."""
    return [
        tile for element in app.get("bidi_component") for tile in json.loads(json.loads(element.proto.json)["tiles"])
    ]


def gallery_columns(app: Any) -> int:
    [element] = app.get("bidi_component")
    return int(json.loads(element.proto.json)["columns"])


def choose_in_gallery(app: Any, photo_key: str, action: str) -> None:
    """Press one of a result's actions (like, open, near-duplicates) in an AppTest's gallery, as the browser does:
    the widget values of the page, and the gallery's event. AppTest has no way to press a component's button, so
    this sends what the component's own `setTriggerValue("action", ...)` sends."""
    from streamlit.components.v2.bidi_component.main import _make_trigger_id

    [element] = app.get("bidi_component")
    states = app._tree.get_widget_states()
    event = states.widgets.add()
    event.id = _make_trigger_id(element.proto.id, "events")
    event.json_trigger_value = json.dumps([{"event": "action", "value": {"key": photo_key, "action": action}}])
    app._run(states)
