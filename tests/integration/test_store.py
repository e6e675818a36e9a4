"""The store against a real embedded Valkey with RediSearch."""

from __future__ import annotations

import dataclasses
import math
import threading
from pathlib import Path

import numpy as np
import pytest
import valkey
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from clipsearch import errors
from clipsearch.errors import ClipsearchError, FolderMismatch, IndexMismatch, IndexMissing, SearchRefused
from clipsearch.index.connection import connect
from clipsearch.index.filters import SearchFilter
from clipsearch.index.schema import SCHEMA_VERSION, IndexSchema, PhotoRecord, tag_value
from clipsearch.index.server import EmbeddedServer
from clipsearch.index.store import PhotoStore, refusal
from clipsearch.index.upgrades import upgrade
from clipsearch.ingest.facts import DAY, PhotoFacts, day_start
from clipsearch.ingest.places import fold_name
from clipsearch.model.identity import ModelIdentity
from clipsearch.settings import Settings

BACKENDS = ("redisearch", "valkey-search", "cluster")  # the store's operations on a cluster too

MODEL = ModelIdentity("ViT-B-32", "random-test", 512)


def unit_vectors(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def records(vectors: np.ndarray) -> list[PhotoRecord]:
    return [PhotoRecord(path=f"photo-{i:05d}.jpg", vector=v) for i, v in enumerate(vectors)]


def brute_force(vectors: np.ndarray, query: np.ndarray, k: int) -> tuple[list[int], np.ndarray]:
    similarities = vectors @ query
    order = np.argsort(-similarities, kind="stable")[:k]
    return order.tolist(), similarities[order]


def index_of(hit_path: str) -> int:
    return int(hit_path.removeprefix("photo-").removesuffix(".jpg"))


def test_flat_top10_equals_numpy_brute_force(client, settings: Settings) -> None:
    rng = np.random.default_rng(7)
    vectors = unit_vectors(rng, 2000, 512)
    schema = IndexSchema.from_settings(dataclasses.replace(settings, algorithm="FLAT"), MODEL)
    store = PhotoStore.open(client, schema, create=True)
    store.upsert(records(vectors))
    assert store.count() == 2000
    for query in unit_vectors(rng, 25, 512):
        hits = store.nearest(query, k=10)
        expected_order, expected_scores = brute_force(vectors, query, 10)
        assert [index_of(hit.path) for hit in hits] == expected_order
        np.testing.assert_allclose([hit.score for hit in hits], expected_scores, atol=1e-5)


def test_hnsw_default_settings_recall_on_clustered_data(client, settings: Settings) -> None:
    rng = np.random.default_rng(11)
    centers = unit_vectors(rng, 40, 512)
    members = centers[rng.integers(0, 40, 2000)] + 0.04 * rng.standard_normal((2000, 512)).astype(np.float32)
    vectors = (members / np.linalg.norm(members, axis=1, keepdims=True)).astype(np.float32)
    hnsw = dataclasses.replace(settings, algorithm="HNSW")
    store = PhotoStore.open(client, IndexSchema.from_settings(hnsw, MODEL), create=True)
    store.upsert(records(vectors))
    queries = centers[rng.integers(0, 40, 200)] + 0.04 * rng.standard_normal((200, 512)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    found = 0
    for query in queries:
        hits = store.nearest(query, k=10)
        expected, _ = brute_force(vectors, query, 10)
        found += len({index_of(hit.path) for hit in hits} & set(expected))
        for hit in hits:
            assert hit.score == pytest.approx(float(vectors[index_of(hit.path)] @ query), abs=1e-5)
    recall = found / (10 * len(queries))
    assert recall >= 0.99, f"recall@10 = {recall:.4f}"


def test_same_photo_twice_is_one_document_and_delete_removes_it(client, settings: Settings) -> None:
    rng = np.random.default_rng(3)
    first, second = unit_vectors(rng, 2, 512)
    store = PhotoStore.open(client, IndexSchema.from_settings(settings, MODEL), create=True)
    store.upsert([PhotoRecord("cat.jpg", first, thumbnail=b"old")])
    [key] = store.upsert([PhotoRecord("cat.jpg", second, width=10)])
    assert store.count() == 1
    [hit] = store.nearest(second, k=5)
    assert (hit.key, hit.path, hit.photo.width) == (key, "cat.jpg", 10)
    assert hit.score == pytest.approx(1.0, abs=1e-5)
    assert store.get([key], ["thumbnail"]) == [None], "a rewrite without thumbnail must drop the old one"
    assert store.delete([key]) == 1
    assert store.count() == 0
    assert store.nearest(second, k=5) == []


def test_odd_paths_round_trip(client, settings: Settings) -> None:
    store = PhotoStore.open(client, IndexSchema.from_settings(settings, MODEL), create=True)
    vector = unit_vectors(np.random.default_rng(1), 1, 512)[0]
    odd = "dir with space/caf\u00e9 \udcff.jpg"  # a non-UTF-8 byte, as os.fsdecode gives it
    store.upsert([PhotoRecord(odd, vector)])
    [hit] = store.nearest(vector, k=1)
    assert hit.path == odd and hit.photo.name == "caf\u00e9 \udcff.jpg"


def test_data_and_index_survive_restart(own_server: EmbeddedServer) -> None:
    server = own_server
    settings = Settings(data_dir=server.data_dir, index_name="persist")
    vectors = unit_vectors(np.random.default_rng(5), 50, 512)
    try:
        client = connect(settings)
        store = PhotoStore.open(client, IndexSchema.from_settings(settings, MODEL), create=True)
        store.upsert(records(vectors))
        client.close()
        first_pid = server.pid()
        assert server.stop()
        assert not server.is_running()

        client = connect(settings)  # starts the server again on the same directory
        assert server.pid() != first_pid
        store = PhotoStore.open(client, IndexSchema.from_settings(settings, MODEL))
        assert store.count() == 50
        assert index_of(store.nearest(vectors[17], k=1)[0].path) == 17
        client.close()
    finally:
        server.stop()


def test_model_mismatch_is_refused_naming_both(client, settings: Settings) -> None:
    PhotoStore.open(client, IndexSchema.from_settings(settings, MODEL), create=True)
    other = ModelIdentity("ViT-L-14", "openai", 768)
    with pytest.raises(IndexMismatch) as refused:
        PhotoStore.open(client, IndexSchema.from_settings(settings, other))
    message = str(refused.value)
    assert "ViT-B-32 / random-test (512-d)" in message and "ViT-L-14 / openai (768-d)" in message


def test_schema_version_mismatch_is_refused(client, settings: Settings) -> None:
    schema = IndexSchema.from_settings(settings, MODEL)
    PhotoStore.open(client, schema, create=True)
    client.hset(schema.meta_key, "schema_version", str(SCHEMA_VERSION + 1))
    with pytest.raises(IndexMismatch, match=f"key schema version {SCHEMA_VERSION + 1}.*reads version {SCHEMA_VERSION}"):
        PhotoStore.open(client, schema)


def test_foreign_index_without_meta_is_refused(client, settings: Settings) -> None:
    schema = IndexSchema.from_settings(settings, MODEL)
    PhotoStore.open(client, schema, create=True)
    client.delete(schema.meta_key)
    with pytest.raises(IndexMismatch, match="no clipsearch schema version.*leaves it alone"):
        PhotoStore.open(client, schema)
    with pytest.raises(IndexMismatch, match="no clipsearch schema version"):
        PhotoStore.existing(client, schema.name)


def test_missing_index_says_how_to_make_one(client, settings: Settings) -> None:
    with pytest.raises(IndexMissing, match="no photos indexed yet.*load_photos.py"):
        PhotoStore.open(client, IndexSchema.from_settings(settings, MODEL))


def test_drop_removes_documents_and_meta(client, settings: Settings) -> None:
    schema = IndexSchema.from_settings(settings, MODEL)
    store = PhotoStore.open(client, schema, create=True)
    store.upsert(records(unit_vectors(np.random.default_rng(2), 5, 512)))
    store.drop()
    assert settings.index_name.encode() not in client.execute_command("FT._LIST")
    assert list(client.scan_iter(match=f"{schema.prefix}*")) == []
    assert not client.exists(schema.meta_key)


def test_wrong_dimension_is_a_clear_error(client, settings: Settings) -> None:
    store = PhotoStore.open(client, IndexSchema.from_settings(settings, MODEL), create=True)
    with pytest.raises(ValueError, match=r"shape \(3,\), the index expects \(512,\)"):
        store.upsert([PhotoRecord("x.jpg", np.ones(3, dtype=np.float32))])
    assert store.count() == 0


def test_an_index_keeps_the_algorithm_it_was_built_with(client, settings: Settings) -> None:
    vectors = unit_vectors(np.random.default_rng(9), 20, 512)
    flat = PhotoStore.open(
        client, IndexSchema.from_settings(dataclasses.replace(settings, algorithm="FLAT"), MODEL), create=True
    )
    flat.upsert(records(vectors))
    hnsw = dataclasses.replace(settings, algorithm="HNSW")
    reopened = PhotoStore.open(client, IndexSchema.from_settings(hnsw, MODEL))
    assert reopened.schema.algorithm == "FLAT"
    assert index_of(reopened.nearest(vectors[3], k=1)[0].path) == 3


def test_schema_round_trips_through_its_metadata() -> None:
    schema = IndexSchema("photos", MODEL, "HNSW", m=24, ef_construction=300, ef_runtime=64)
    assert IndexSchema.from_meta("photos", schema.meta()) == schema
    legacy = {k: v for k, v in schema.meta().items() if k not in ("m", "ef_construction", "ef_runtime")}
    defaults = Settings()
    assert IndexSchema.from_meta("photos", legacy).m == defaults.hnsw_m
    with pytest.raises(IndexMismatch, match="damaged"):
        IndexSchema.from_meta("photos", {**schema.meta(), "dim": "many"})


def test_an_existing_index_opens_without_its_model(client, settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(IndexMissing):
        PhotoStore.existing(client, settings.index_name)
    wanted = IndexSchema.from_settings(dataclasses.replace(settings, algorithm="FLAT"), MODEL)
    store = PhotoStore.open(client, wanted, create=True)
    store.upsert(records(unit_vectors(np.random.default_rng(4), 3, 512)))
    store.record_photos_root(tmp_path)

    found = PhotoStore.existing(client, settings.index_name)
    assert found.schema == wanted
    assert found.photos_root == tmp_path.resolve()
    assert found.describe() == (
        f"3 photos, model ViT-B-32 / random-test (512-d), FLAT, key schema v{SCHEMA_VERSION}, photos from {tmp_path}"
    )
    found.drop()
    with pytest.raises(IndexMissing):
        PhotoStore.existing(client, settings.index_name)


def test_pruning_is_refused_over_another_folders_photos(client, settings: Settings, tmp_path: Path) -> None:
    store = PhotoStore.open(client, IndexSchema.from_settings(settings, MODEL), create=True)
    mine, other = tmp_path / "mine", tmp_path / "other"
    assert store.may_prune(other), "an empty index may be filled from any folder"
    store.upsert(records(unit_vectors(np.random.default_rng(6), 2, 512)))
    assert not store.may_prune(other), "documents from no known folder (a CSV) are protected too"
    store.record_photos_root(mine)
    assert store.may_prune(mine) and not store.may_prune(other)
    with pytest.raises(FolderMismatch, match=f"2 photos loaded from {mine}, not from {other}.*--allow-other-folder"):
        store.ensure_may_prune(other)


def test_racing_creators_with_different_models_never_both_win(client, settings: Settings) -> None:
    """FT.CREATE and the metadata of a new index form one step: exactly one model is recorded, and only its
    process gets the store, whatever the interleaving."""
    models = [ModelIdentity("ViT-B-32", f"racer-{i}", 512) for i in range(6)]
    start = threading.Barrier(len(models))
    outcomes: dict[str, str] = {}

    def race(model: ModelIdentity) -> None:
        racer_client = connect(settings)
        start.wait()
        try:
            PhotoStore.open(racer_client, IndexSchema.from_settings(settings, model), create=True)
            outcomes[model.pretrained] = "won"
        except IndexMismatch:
            outcomes[model.pretrained] = "refused"
        finally:
            racer_client.close()

    threads = [threading.Thread(target=race, args=(model,)) for model in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    winners = [name for name, outcome in outcomes.items() if outcome == "won"]
    assert len(outcomes) == len(models) and len(winners) == 1, outcomes
    recorded = PhotoStore.existing(client, settings.index_name).schema.model
    assert recorded.pretrained == winners[0]


def test_vector_of_reads_only_this_indexs_photos(client, settings: Settings) -> None:
    """Keys come from URLs: every key that is not one of this index's photos answers the same None."""
    store = PhotoStore.open(client, IndexSchema.from_settings(settings, MODEL), create=True)
    [key] = store.upsert(records(unit_vectors(np.random.default_rng(8), 1, 512)))
    assert store.vector_of(key) is not None and store.vector_of(key).shape == (512,)
    client.hset("other-app:user:1", mapping={"name": "secret", "vector": b"\0" * 2048})
    forged = store.schema.prefix + "0" * 32
    client.set(forged, "a string, not a hash")
    short = store.schema.prefix + "1" * 32
    client.hset(short, mapping={"vector": b"\0" * 12, "name": "short"})
    for probe in ("other-app:user:1", forged, short, store.schema.prefix + "2" * 32, store.schema.prefix + "x", ""):
        assert store.vector_of(probe) is None, probe
    assert [key for key, _ in store.scan(("path",))] == [key], "a key of another type does not stop a scan"
    client.delete("other-app:user:1", forged, short)


FOLDERS = ["2021/japan", "2021/japan/kyoto", "2021", "2022/Spain & Portugal", "", "other {x} | y"]
CAMERAS = ["Apple iPhone 12", "Canon EOS R6", "", "Fujifilm X-T4 (2020)"]


def records_with_facts(vectors: np.ndarray) -> list[PhotoRecord]:
    """Photos spread over folders (with spaces, punctuation and the tag separator in names), cameras, and two
    years of capture times, some without any."""
    start = day_start("2021-01-01")
    result = []
    for i, vector in enumerate(vectors):
        folder = FOLDERS[i % len(FOLDERS)]
        camera = CAMERAS[i % len(CAMERAS)]
        facts = None if i % 11 == 0 else PhotoFacts(start + i * 9 * DAY / 7, "exif", "+09:00", camera)
        path = f"{folder}/photo-{i:05d}.jpg".lstrip("/")
        result.append(PhotoRecord(path=path, vector=vector, facts=facts))
    return result


def allowed(record: PhotoRecord, where: SearchFilter) -> bool:
    """The filter's meaning, written directly."""
    taken = record.facts.taken if record.facts else None
    if where.after is not None and (taken is None or taken < where.after):
        return False
    if where.before is not None and (taken is None or taken >= where.before):
        return False
    folder = (where.folder or "").strip("/").lower()
    if folder and not record.path.lower().startswith(folder + "/"):
        return False
    # Any of them; a blank one is no camera (test_blank_filter_values_are_no_filter).
    cameras = {tag_value(camera.strip().strip("/")) for camera in where.cameras} - {""}
    return not cameras or bool(record.facts and tag_value(record.facts.camera) in cameras)


def test_filtered_search_equals_brute_force_over_the_filtered_photos(client, settings: Settings) -> None:
    rng = np.random.default_rng(11)
    vectors = unit_vectors(rng, 1200, 512)
    photos = records_with_facts(vectors)
    store = PhotoStore.open(
        client, IndexSchema.from_settings(dataclasses.replace(settings, algorithm="FLAT"), MODEL), create=True
    )
    store.upsert(photos)
    filters = [
        SearchFilter(after=day_start("2021-06-01"), before=day_start("2021-09-01")),
        SearchFilter(folder="2021/Japan"),  # any case, and with its subfolder
        SearchFilter(folder="/2022/Spain & Portugal/"),
        SearchFilter(folder="other {x} | y"),
        SearchFilter(cameras=("canon eos r6",)),
        SearchFilter(cameras=("Fujifilm X-T4 (2020)",), after=day_start("2022-01-01")),
        SearchFilter(folder="2021", cameras=("Apple iPhone 12",), before=day_start("2021-12-01")),
        SearchFilter(cameras=("Apple iPhone 12", "canon eos r6"), after=day_start("2021-03-01")),  # either
        SearchFilter(folder="2021/jap"),  # a prefix of a name is not the folder
    ]
    for where in filters:
        subset = [i for i, photo in enumerate(photos) if allowed(photo, where)]
        assert where.folder == "2021/jap" or subset, where
        # A listing by the filter alone: newest first, the undated photos after the dated ones.
        newest = sorted(subset, key=lambda i: -photos[i].facts.taken if photos[i].facts else math.inf)
        assert [hit.path for hit in store.listed(where, 10)] == [photos[i].path for i in newest[:10]], where
        for query in unit_vectors(rng, 3, 512):
            hits = store.nearest(query, k=10, where=where)
            similarities = vectors[subset] @ query
            expected = [photos[subset[j]].path for j in np.argsort(-similarities, kind="stable")[:10]]
            assert [hit.path for hit in hits] == expected, where


def test_newest_and_oldest_order_the_relevant_photos_by_capture_time(client, settings: Settings) -> None:
    rng = np.random.default_rng(12)
    vectors = unit_vectors(rng, 300, 512)
    store = PhotoStore.open(
        client, IndexSchema.from_settings(dataclasses.replace(settings, algorithm="FLAT"), MODEL), create=True
    )
    store.upsert(records_with_facts(vectors))
    query = unit_vectors(rng, 1, 512)[0]
    relevant = store.nearest(query, k=20)
    newest = store.nearest(query, k=20, order="newest")
    oldest = store.nearest(query, k=20, order="oldest")
    assert {hit.key for hit in newest} == {hit.key for hit in oldest} == {hit.key for hit in relevant}
    dated = [hit.photo.taken for hit in newest if hit.photo.taken is not None]
    assert dated == sorted(dated, reverse=True) and len(dated) < 20  # some have no date: they come last
    assert all(hit.photo.taken is None for hit in newest[len(dated) :])
    assert [hit.photo.taken for hit in oldest][: len(dated)] == sorted(dated)
    with pytest.raises(ValueError, match="choose one of relevance, newest, oldest"):
        store.nearest(query, order="random")


def test_an_index_of_the_previous_version_is_refused_to_readers_and_upgraded_by_writers(
    client, settings: Settings, downgrade_to_version_1
) -> None:
    rng = np.random.default_rng(13)
    vectors = unit_vectors(rng, 60, 512)
    photos = records_with_facts(vectors)
    schema = IndexSchema.from_settings(dataclasses.replace(settings, algorithm="FLAT"), MODEL)
    store = PhotoStore.open(client, schema, create=True)
    store.upsert(photos)
    downgrade_to_version_1(client, store)
    with pytest.raises(IndexMismatch, match="Run the loader once.*without encoding anything again"):
        PhotoStore.open(client, schema)
    writer = PhotoStore.open(client, schema, create=True)
    assert writer.needs_upgrade
    by_path = {photo.path: photo for photo in photos}
    assert upgrade(writer, lambda path, source: by_path[path].facts) == 60
    reader = PhotoStore.open(client, schema)
    assert not reader.needs_upgrade and reader.schema.version == SCHEMA_VERSION
    where = SearchFilter(folder="2021/japan", after=day_start("2021-03-01"))
    hits = reader.nearest(vectors[7], k=5, where=where)
    subset = [i for i, photo in enumerate(photos) if allowed(photo, where)]
    expected = [photos[subset[j]].path for j in np.argsort(-(vectors[subset] @ vectors[7]), kind="stable")[:5]]
    assert [hit.path for hit in hits] == expected
    assert np.array_equal(reader.vector_of(hits[0].key), vectors[subset[np.argmax(vectors[subset] @ vectors[7])]])


def test_auto_switches_between_flat_and_hnsw_by_size_keeping_every_document(
    client, settings: Settings, monkeypatch
) -> None:
    import clipsearch.index.schema

    monkeypatch.setattr(clipsearch.index.schema, "AUTO_FLAT_UP_TO", 50)  # the switch, at a size a test can reach
    vectors = unit_vectors(np.random.default_rng(21), 60, 512)
    store = PhotoStore.open(client, IndexSchema.from_settings(settings, MODEL), create=True)
    assert settings.algorithm == "AUTO" and store.schema.algorithm == "FLAT"  # a new index starts exact
    store.upsert(records(vectors[:45]))
    assert store.fit_algorithm() is None
    store.upsert(records(vectors)[45:])
    assert store.fit_algorithm() == ("FLAT", "HNSW") and store.count() == 60
    reopened = PhotoStore.open(client, IndexSchema.from_settings(settings, MODEL))
    assert reopened.schema.algorithm == "HNSW" and index_of(reopened.nearest(vectors[50], k=1)[0].path) == 50
    store.delete(store.schema.key_for(record.path) for record in records(vectors)[:15])  # 45: within the margin
    assert store.fit_algorithm() is None
    store.delete(store.schema.key_for(record.path) for record in records(vectors)[15:30])  # 30
    assert store.fit_algorithm() == ("HNSW", "FLAT")
    expected, _ = brute_force(vectors[30:], vectors[40], 3)
    assert [index_of(hit.path) for hit in store.nearest(vectors[40], k=3)] == [30 + i for i in expected]


@pytest.mark.parametrize("blank", [" ", "/ /", "\t", "//", " / "])
def test_blank_filter_values_are_no_filter(blank: str) -> None:
    """`?folder=%20` once built `@folders:{}`, which the server refuses."""
    assert SearchFilter(folder=blank).query() == "*"
    assert SearchFilter(cameras=(blank,)).query() == "*"
    assert SearchFilter.of_days(None, None, folder=blank, camera=blank).query() == "*"
    assert SearchFilter(folder=blank, cameras=("Canon",)).query() == "(@camera_tag:{canon})"


def test_a_refused_search_is_the_projects_own_error(client, settings: Settings) -> None:
    """Whatever the server says to a query, the page gets a ClipsearchError with a title, not valkey's error."""
    store = PhotoStore.open(client, IndexSchema.from_settings(settings, MODEL), create=True)
    store.upsert(records_with_facts(unit_vectors(np.random.default_rng(3), 5, 512)))
    client.execute_command("FT.DROPINDEX", settings.index_name)
    with pytest.raises(IndexMissing):
        store.nearest(unit_vectors(np.random.default_rng(4), 1, 512)[0])
    refused = refusal(settings.index_name, valkey.ResponseError("Syntax error at offset 12 near folders"))
    assert isinstance(refused, SearchRefused) and "Syntax error" in str(refused)


def test_every_error_names_its_own_title() -> None:
    """The page shows the title above the message: TlsRefused and FolderMismatch once said "Something went wrong"."""
    kinds = [kind for kind in vars(errors).values() if isinstance(kind, type) and issubclass(kind, ClipsearchError)]
    titles = [kind.title for kind in kinds if kind is not ClipsearchError]
    assert len(titles) >= 11 and len(set(titles)) == len(titles) and ClipsearchError.title not in titles


def test_searches_during_the_algorithm_switch_keep_answering_from_the_old_index(
    client, settings: Settings, monkeypatch
) -> None:
    """The switch once dropped the index and made it again in place: on 15,000 photos, 9 to 11 of about 125
    concurrent searches missed their exact match, with a partial count. Now the next index is built beside the
    current one; every search meanwhile, by a reader that opened the index before the switch, finds its photo
    first among all of them."""
    import clipsearch.index.schema

    monkeypatch.setattr(clipsearch.index.schema, "AUTO_FLAT_UP_TO", 1000)
    count = 6000
    vectors = unit_vectors(np.random.default_rng(8), count, 512)
    writer = PhotoStore.open(client, IndexSchema.from_settings(settings, MODEL), create=True)
    writer.upsert(records(vectors))
    reader = PhotoStore.open(connect(settings), IndexSchema.from_settings(settings, MODEL))
    assert writer.schema.algorithm == reader.schema.algorithm == "FLAT"
    misses: list[str] = []
    searched = 0
    switching = threading.Event()

    def search_until_switched() -> None:
        nonlocal searched
        rng = np.random.default_rng(9)
        while switching.is_set():
            target = int(rng.integers(count))
            try:
                hits = reader.nearest(vectors[target], k=10, fields=("path",))
                total = reader.count()
            except Exception as error:
                misses.append(f"{type(error).__name__}: {error}")
                continue
            searched += 1
            if len(hits) != 10 or index_of(hits[0].path) != target or total != count:
                misses.append(f"{target}: {len(hits)} hits, first {hits[0].path if hits else None}, count {total}")

    switching.set()
    searcher = threading.Thread(target=search_until_switched)
    searcher.start()
    try:
        assert writer.fit_algorithm() == ("FLAT", "HNSW")
    finally:
        switching.clear()
        searcher.join()
    assert searched > 20 and not misses, (searched, misses[:5])
    assert reader.nearest(vectors[7], k=1)[0].path == "photo-00007.jpg" and reader.schema.algorithm == "HNSW"
    assert sorted(
        clipsearch.index.store._search_indexes(client) & {settings.index_name, f"{settings.index_name}.1"}
    ) == [f"{settings.index_name}.1"], "the old search index is dropped"
    writer.drop()
    assert not {name for name in clipsearch.index.store._search_indexes(client) if name.startswith(settings.index_name)}


def planted_vectors(rng: np.random.Generator) -> np.ndarray:
    """400 photos: 380 unlike one another, and a group of 20 near-copies of one photo (more than a first KNN
    ask), each at about 0.99 to it."""
    vectors = unit_vectors(rng, 400, 512)
    copies = vectors[0] + 0.005 * rng.standard_normal((19, 512)).astype(np.float32)
    vectors[381:] = copies / np.linalg.norm(copies, axis=1, keepdims=True)
    return vectors


@pytest.mark.parametrize("algorithm", ["FLAT", "HNSW"])
def test_similar_pairs_equal_brute_force_on_either_index(
    client, settings: Settings, algorithm: str, monkeypatch
) -> None:
    """FLAT: compared in blocks here (several each way); HNSW: each photo's KNN, asked again while all pass;
    a pair counts if found from either side."""
    from clipsearch.search import duplicates

    monkeypatch.setattr(duplicates, "BLOCK", 64)
    vectors = planted_vectors(np.random.default_rng(11))
    schema = IndexSchema.from_settings(dataclasses.replace(settings, algorithm=algorithm), MODEL)
    store = PhotoStore.open(client, schema, create=True)
    keys = store.upsert(records(vectors))
    store.wait_indexed()  # a backend may index in the background (RediSearch's workers, valkey-search)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -1)
    truth = {(keys[a], keys[b]) for a, b in zip(*np.nonzero(similarity >= 0.95), strict=True)}
    assert len(truth) == 20 * 19

    pairs = duplicates.similar_pairs(store, 0.95)
    found = {(pairs.keys[a], pairs.keys[b]) for a, b in zip(pairs.first, pairs.second, strict=True)}
    # Counted, not compared whole: pytest's report of two sets of 380 pairs took past the suite's timeout.
    assert (len(found - truth), len(truth - found)) == (0, 0), "pairs found that are not, and pairs missed"
    assert pairs.photos == 400 and pairs.capped == 0
    assert [len(group) for group in pairs.groups(0.95)] == [20]

    capped = duplicates.similar_pairs(store, 0.95, max_neighbours=3)
    per_photo = np.bincount(capped.first, minlength=len(capped.keys))
    assert per_photo.max() == 3 and capped.capped == 20  # each copy has 19, and keeps its 3 best
    for a, b, score in zip(capped.first, capped.second, capped.similarity, strict=True):
        row = keys.index(capped.keys[a])
        assert score == pytest.approx(similarity[row, keys.index(capped.keys[b])], abs=1e-5)
        assert score >= np.sort(similarity[row])[-3] - 1e-5, "one of its three most similar"


@pytest.mark.parametrize("algorithm", ["FLAT", "HNSW"])
def test_capped_pairs_keep_as_many_when_a_photo_has_exact_copies(client, settings: Settings, algorithm: str) -> None:
    """The same file in several folders has the same vector: an index's KNN among equal scores need not put the
    asking photo first, or return it at all, and each photo still keeps its `max_neighbours` others, no more."""
    from clipsearch.search import duplicates

    vectors = unit_vectors(np.random.default_rng(12), 60, 512)
    vectors[50:] = vectors[0]  # eleven copies of one photo
    schema = IndexSchema.from_settings(dataclasses.replace(settings, algorithm=algorithm), MODEL)
    store = PhotoStore.open(client, schema, create=True)
    keys = store.upsert(records(vectors))
    store.wait_indexed()
    capped = duplicates.similar_pairs(store, 0.95, max_neighbours=3)
    per_photo = np.bincount(capped.first, minlength=len(capped.keys))
    copies = {keys[i] for i in [0, *range(50, 60)]}
    assert {capped.keys[i]: int(count) for i, count in enumerate(per_photo) if count} == dict.fromkeys(copies, 3)
    assert capped.capped == 11
    assert all(capped.keys[a] != capped.keys[b] for a, b in zip(capped.first, capped.second, strict=True))


# Every character the query syntax gives a meaning to but "*", which valkey-search reads as a prefix wildcard
# at a tag's end even escaped (the known bug below has its own test).
HOSTILE = st.lists(st.sampled_from([*"@|-{}()\"'~%:;\\/ \t$[]<>!,.^é中a", "canon"]), max_size=8).map("".join)


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cameras=st.lists(HOSTILE, max_size=3), places=st.lists(HOSTILE, max_size=2), folder=HOSTILE)
def test_hostile_tag_values_are_matched_exactly_or_not_at_all(settings_for_tags, cameras, places, folder) -> None:
    """Cameras (any of them, beside a real one), places and a folder of any characters reach both backends and
    the cluster escaped: a search and a listing answer, and only with the photos the filter's meaning admits."""
    store, photos, vectors = settings_for_tags
    folder_tag = tag_value(folder.strip().strip("/"))  # a blank one is no filter (test_blank_filter_values...)
    where = SearchFilter(
        cameras=(*cameras, "canon eos r6"), places=tuple(places), folder=folder if folder_tag else None
    )
    query = vectors[0]
    placed = any(tag_value(fold_name(place)) for place in places)  # these photos have no place
    subset = [] if placed else [i for i, photo in enumerate(photos) if allowed(photo, where)]
    expected = [photos[subset[j]].path for j in np.argsort(-(vectors[subset] @ query), kind="stable")[:10]]
    assert [hit.path for hit in store.nearest(query, k=10, where=where)] == expected, where
    listed = {hit.path for hit in store.listed(where, 500)}
    assert listed == {photos[i].path for i in subset}, where


@pytest.fixture
def settings_for_tags(client, settings: Settings):
    """A FLAT index of photos with facts (the folders and cameras of records_with_facts), written once a test."""
    vectors = unit_vectors(np.random.default_rng(21), 300, 512)
    photos = records_with_facts(vectors)
    store = PhotoStore.open(
        client, IndexSchema.from_settings(dataclasses.replace(settings, algorithm="FLAT"), MODEL), create=True
    )
    store.upsert(photos)
    store.wait_indexed()
    return store, photos, vectors


def test_a_tag_value_that_ends_in_a_star_is_matched_exactly(request, backend: str, settings_for_tags) -> None:
    """Known bug on valkey-search (and so on the cluster): `@folders:{2021\\*}` is read as the prefix 2021
    whatever the escape, so it admits every folder that begins with 2021, and `{\\*}` is refused. Exact on
    RediSearch. Strict: this fails once the bug is fixed, so that the alphabet above takes "*" again."""
    if backend != "redisearch":
        request.applymarker(pytest.mark.xfail(strict=True, reason="valkey-search: a trailing escaped * is a prefix"))
    store, _, vectors = settings_for_tags
    for folder in ("2021*", "*"):
        where = SearchFilter(folder=folder)
        assert store.nearest(vectors[0], k=10, where=where) == [], where
