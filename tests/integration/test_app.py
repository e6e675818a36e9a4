"""The search page through Streamlit's AppTest, against a real server and a real (random) model."""

from __future__ import annotations

import datetime
import io
import re
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from clipsearch import library
from clipsearch.display import escape_markdown
from clipsearch.index.filters import SearchFilter
from clipsearch.index.store import PhotoStore
from clipsearch.ingest.facts import day_start
from clipsearch.ingest.loader import LoadOptions, PhotoLoader
from clipsearch.library import Library, forget_encodings
from clipsearch.model.labels import MAX_LABELS_TEXT, LabelList
from clipsearch.model.onnx_engine import OnnxTextEncoder
from clipsearch.model.torch_engine import TorchTextEncoder
from clipsearch.search.duplicates import find_duplicates
from clipsearch.search.results import SearchOptions, find
from clipsearch.settings import Settings
from tests.conftest import choose_in_gallery, dated_photo, gallery_columns, gallery_tiles

APP = str(Path(__file__).resolve().parents[2] / "streamlit_app.py")
CAPTION = re.compile(r"^#(\d+) · (-?\d\.\d{3}) · (.+?)(?: · (\d{4}-\d\d-\d\d)(?: \(file date\))?)?$")


@pytest.fixture
def app_env(
    monkeypatch,
    search_server,
    settings: Settings,
    random_checkpoint: Path,
    photo_folder: Path,
    planted_similarity: float,
) -> Settings:
    """The app's environment: this test's index, the random model, the test photo folder, and a near-duplicate
    similarity measured for the random model (its 34 photos are at most 0.982 apart, so none folds; the
    planted copies of tests/conftest.py do)."""
    for name in ("VALKEY_URL", "CLIPSEARCH_MODEL", "CLIPSEARCH_ALGORITHM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLIPSEARCH_DUPLICATE_SIMILARITY", str(planted_similarity))
    for name, value in search_server.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CLIPSEARCH_INDEX", settings.index_name)
    monkeypatch.setenv("CLIPSEARCH_PRETRAINED", str(random_checkpoint))
    monkeypatch.setenv("CLIPSEARCH_PHOTOS", str(photo_folder))
    return settings


@pytest.fixture
def indexed(app_env: Settings, indexed_store: PhotoStore) -> PhotoStore:
    return indexed_store


def run_app(**query_params: str) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=120)
    for name, value in query_params.items():
        app.query_params[name] = value
    return app.run()


def act(app: AppTest, photo_key: str, action: str) -> None:
    """Choose one of a result's actions: More like this, Open, +N near-duplicates."""
    choose_in_gallery(app, photo_key, {"More like this": "like", "Open": "open"}.get(action, "near-duplicates"))


def results(app: AppTest) -> list[tuple[int, float, str]]:
    """(rank, similarity, name) of each gallery tile, in rank order."""
    found = [CAPTION.match(tile["caption"]) for tile in gallery_tiles(app)]
    return sorted((int(m[1]), float(m[2]), m[3]) for m in found if m)


def unescape(markdown: str) -> str:
    """The text that escaped Markdown shows."""
    return re.sub(r"\\(.)", r"\1", markdown)


def assert_clean(app: AppTest) -> None:
    assert not app.exception, [e.value for e in app.exception]


def the_one_error(app: AppTest) -> str:
    """The text of the page's only error message, as a person reads it."""
    assert_clean(app)
    [error] = app.error
    return unescape(error.value)


def test_text_search_shows_slider_count_and_columns(indexed: PhotoStore) -> None:
    app = run_app()
    assert_clean(app)
    app.text_input(key="q").input("a snowy street").run()
    assert [rank for rank, _, _ in results(app)] == list(range(1, 13))
    scores = [score for _, score, _ in results(app)]
    assert scores == sorted(scores, reverse=True)
    app.slider(key="k").set_value(30).run()
    assert len(results(app)) == 30
    app.slider(key="k").set_value(5).run()
    assert len(results(app)) == 5
    app.slider(key="columns").set_value(5).run()
    assert len(results(app)) == 5 and gallery_columns(app) == 5
    app.slider(key="columns").set_value(6).run()
    assert gallery_columns(app) == 6


def test_example_prompt_searches(indexed: PhotoStore) -> None:
    app = run_app()
    app.pills(key="example").set_value("dog on chair").run()
    assert_clean(app)
    assert app.text_input(key="q").value == "dog on chair"
    assert len(results(app)) == 12


def test_minimum_similarity_hides_results_under_it(indexed: PhotoStore) -> None:
    app = run_app()
    first = results(app.text_input(key="q").input("a red car").run())
    liked_key = _key_of(indexed, first[2][2])
    act(app, liked_key, "More like this")  # photo-to-photo scores spread widely
    liked = results(app)
    cut = float(np.floor(liked[5][1] * 100) / 100)  # the slider moves in steps of 0.01
    app.slider(key="min_similarity").set_value(cut).run()
    expected = [hit.photo.name for hit in indexed.nearest(indexed.vector_of(liked_key), k=12) if hit.score >= cut]
    shown = [name for _, _, name in results(app)]
    assert shown == expected and 0 < len(shown) < len(liked)

    text = run_app(q="a red car", min="0.5")  # the old name of min_similarity; text-to-photo scores are near 0
    assert results(text) == []
    assert any("No result reaches similarity 0.50" in unescape(info.value) for info in text.info)


def _key_of(store: PhotoStore, name: str) -> str:
    return next(key for key, row in store.scan(("name",)) if row.name == name)


def test_query_params_reproduce_a_search(indexed: PhotoStore) -> None:
    typed = run_app()
    typed.text_input(key="q").input("old tools").run()
    typed.slider(key="k").set_value(7).run()
    shared = run_app(q="old tools", k="7")
    assert_clean(shared)
    assert results(shared) == results(typed) and len(results(shared)) == 7


def test_more_like_this_uses_the_stored_vector_and_goes_into_the_url(indexed: PhotoStore) -> None:
    app = run_app(q="a monument")
    _, _, third = results(app)[2]
    key = _key_of(indexed, third)
    act(app, key, "More like this")
    assert_clean(app)
    top = results(app)[0]
    assert top[2] == third and top[1] == pytest.approx(1.0, abs=1e-3)
    assert app.query_params["like"] == [key] or app.query_params["like"] == key
    again = run_app(like=key)
    assert results(again) == results(app)
    vector = indexed.vector_of(key)
    expected = [hit.photo.name for hit in indexed.nearest(vector, k=12)]
    assert [name for _, _, name in results(app)] == expected


def test_a_gallery_event_for_a_photo_not_shown_or_an_action_not_offered_changes_nothing(indexed: PhotoStore) -> None:
    """The gallery's events come from the browser, and so from whoever speaks its websocket."""
    app = run_app(q="a monument", k="3")
    shown = results(app)
    hidden = next(
        name for name in (row.name for _, row in indexed.scan(("name",))) if name not in {n for *_, n in shown}
    )
    for photo, action in [
        (_key_of(indexed, hidden), "like"),
        (_key_of(indexed, shown[0][2]), "delete"),
        ("x" * 9, "open"),
    ]:
        choose_in_gallery(app, photo, action)
        assert_clean(app)
        assert results(app) == shown and "like" not in app.query_params and not app.get("progress")


def test_upload_searches_by_image_and_names_what_is_in_it(indexed: PhotoStore, photo_folder: Path) -> None:
    app = run_app()
    app.segmented_control(key="mode").set_value("Photo").run()
    photo = sorted(photo_folder.iterdir())[4]
    app.file_uploader(key="upload").set_value((photo.name, photo.read_bytes(), "image/jpeg")).run()
    assert_clean(app)
    top = results(app)[0]
    assert top[2] == photo.name and top[1] == pytest.approx(1.0, abs=1e-3)
    assert len(app.get("progress")) == 5, "the top 5 labels with their scores"
    app.text_input(key="also").input("- 3:a photo of this").run()  # words beside the upload: one query
    assert_clean(app)
    assert results(app)[0][1] < 0.99 and any("- 3:a photo of this" in unescape(md.value) for md in app.markdown)


def test_bad_upload_is_a_message_not_a_traceback(indexed: PhotoStore) -> None:
    app = run_app()
    app.segmented_control(key="mode").set_value("Photo").run()
    app.file_uploader(key="upload").set_value(("holiday.jpg", b"definitely not a jpeg", "image/jpeg")).run()
    assert_clean(app)
    assert any(f"{escape_markdown('holiday.jpg')} cannot be used" in error.value for error in app.error)
    assert results(app) == []


def test_a_small_upload_of_a_huge_canvas_is_refused_with_the_reason(indexed: PhotoStore) -> None:
    """A 200 KB PNG of 7071x7071 RGBA pixels once took 1.1 GB to decode; now its header is enough to refuse it."""
    buffer = io.BytesIO()
    Image.new("RGBA", (7071, 7071), (10, 200, 30, 128)).save(buffer, "PNG")
    app = run_app()
    app.segmented_control(key="mode").set_value("Photo").run()
    app.file_uploader(key="upload").set_value(("canvas.png", buffer.getvalue(), "image/png")).run()
    message = the_one_error(app)
    assert "canvas.png cannot be used:** decoding this 7071x7071 PNG would take about 381 MiB" in message, message
    assert results(app) == []


def test_a_sixteen_bit_upload_is_searched_and_shown_from_its_bounded_decode(indexed: PhotoStore) -> None:
    """Within the bounds (about 100 MB to decode), but the page once showed the upload itself with st.image,
    which decoded the whole file again and cannot show 16-bit pixels: an exception."""
    buffer = io.BytesIO()
    Image.new("I;16", (7071, 7071), 300).save(buffer, "PNG")
    app = run_app()
    app.segmented_control(key="mode").set_value("Photo").run()
    app.file_uploader(key="upload").set_value(("grey.png", buffer.getvalue(), "image/png")).run()
    assert_clean(app)
    assert len(results(app)) == 12 and any("Photos like **grey.png**" in unescape(md.value) for md in app.markdown)


@pytest.mark.parametrize("blank", [" ", "/ /", "\t"])
def test_a_blank_folder_in_a_link_is_no_filter(indexed: PhotoStore, blank: str) -> None:
    """`?q=dog&folder=%20` once showed valkey's ResponseError."""
    app = run_app(q="a dog", folder=blank)
    assert_clean(app)
    assert not app.error and len(results(app)) == 12


@pytest.mark.parametrize(
    ("near", "within", "said"),
    [("35.6,135.2", "80", "No photo within 80 km of 35.6000, 135.2000."), ("-18.12,-179.9", "150", None)],
)  # fmt: skip
def test_a_radius_that_holds_no_photo_says_so(
    app_env: Settings, located_library: Path, open_test_index, encoder, near: str, within: str, said: str | None
) -> None:
    """Kyoto's photos are in the box around 80 km of (35.6, 135.2), 83 km from its centre: the page once showed
    a TypeError. Across the 180th meridian the box is a band of latitudes, which none of them is in."""
    PhotoLoader(open_test_index(), lambda: encoder, LoadOptions(), show_bar=False).index_folder(located_library)
    app = run_app(q="city", near=near, within=within)
    assert_clean(app)
    assert not results(app)
    assert [unescape(info.value) for info in app.info] == [
        said or f"No photo within {within} km of -18.1200, -179.9000."
    ]


def test_a_link_with_every_parameter_hostile_shows_the_search_held_to_its_bounds(indexed: PhotoStore) -> None:
    """A 90 KB query of spaces once took 37 s of CPU in the parser while other visitors waited; numbers, choices
    and dates out of bounds fall back to their controls' defaults."""
    link = {
        "q": "a dog" + " " * 90_000 + "b", "also": "1" * 16_000 + ":x", "k": "1e9", "cols": "-3", "variety": "nan",
        "min": "inf", "below": "7", "cut": "bogus", "dedup": "maybe", "order": "sideways", "after": "9999-99-99",
        "before": "0000-01-01", "folder": "/" * 5000, "camera": "x" * 5000, "pages": "9" * 30, "like": "k" * 90_000,
        "view": "admin", "dup": "0.1", "unknown": "x" * 90_000,
    }  # fmt: skip
    app = run_app(**link)
    assert_clean(app)
    assert not app.error and len(results(app)) == 12
    assert app.text_input(key="q").value == "a dog" + " " * 995
    assert "unknown" not in app.query_params and len(app.query_params["q"]) == 1000


def test_index_button_indexes_the_photo_folder(app_env: Settings, photo_folder: Path, encoder) -> None:
    app = run_app()
    assert_clean(app)
    assert any("No photos indexed yet" in info.value for info in app.info)
    button = next(b for b in app.sidebar.button if b.label.startswith("Index "))
    button.click().run()
    assert_clean(app)
    store = Library(app_env, text_encoder=lambda: encoder).store()
    assert store.count() == len(list(photo_folder.glob("*.jpg")))
    app.text_input(key="q").input("a cat").run()
    assert len(results(app)) == 12
    assert not [b for b in app.sidebar.button if b.label.startswith("Index ")], "nothing left to index"


def test_stale_index_offers_the_button_again(indexed: PhotoStore, photo_folder: Path, sample_photos: Path) -> None:
    shutil.copy2(sample_photos / "farm-animals-cat.jpg", photo_folder / "new-cat.jpg")
    app = run_app()
    assert any("1 photos in" in warning.value for warning in app.sidebar.warning)


def test_server_unreachable_is_explained(app_env: Settings, monkeypatch) -> None:
    monkeypatch.setenv("VALKEY_URL", "redis://default:hunter2@127.0.0.1:1")
    error = the_one_error(run_app())
    assert "Cannot reach the Valkey server" in error and "hunter2" not in error


def test_model_mismatch_is_explained(indexed: PhotoStore, random_checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    other = tmp_path / "another-model.pt"
    shutil.copy(random_checkpoint, other)
    monkeypatch.setenv("CLIPSEARCH_PRETRAINED", str(other))
    error = the_one_error(run_app())
    assert "does not fit this model" in error and "vit-b-32-random.pt" in error
    key = next(iter(dict(indexed.scan(("path",)))))
    for link in ({"q": "a cat"}, {"like": key}):  # a search by a photo of the index alone too
        error = the_one_error(run_app(**link))
        assert "does not fit this model" in error and "vit-b-32-random.pt" in error, link


def test_weights_unavailable_offline_is_explained(app_env: Settings, monkeypatch) -> None:
    monkeypatch.setenv("CLIPSEARCH_PRETRAINED", "commonpool_s_s13m_b4k")
    error = the_one_error(run_app())
    assert "weights are not available" in error and "CLIPSEARCH_PRETRAINED=/path/to" in error


@pytest.fixture
def text_encodes(monkeypatch) -> list[list[str]]:
    """Every batch of texts the page encodes, in order, from empty caches (as in a fresh page process: the
    same test ran before on another backend in this process)."""
    st.cache_data.clear()
    forget_encodings()
    calls: list[list[str]] = []
    for engine in (TorchTextEncoder, OnnxTextEncoder):

        def counting_encode(self, texts, real_encode=engine.encode_text):
            calls.append(list(texts))
            return real_encode(self, texts)

        monkeypatch.setattr(engine, "encode_text", counting_encode)
    return calls


def test_repeated_queries_are_not_encoded_again(indexed: PhotoStore, text_encodes: list[list[str]]) -> None:
    calls = text_encodes
    query = f"a lighthouse at dusk {uuid.uuid4().hex[:6]}"
    app = run_app(q=query)
    app.slider(key="k").set_value(20).run()
    app.slider(key="columns").set_value(2).run()
    run_app(q=query)
    assert calls == [[query]]


def test_open_shows_the_photo_larger_with_its_labels(indexed: PhotoStore, photo_folder: Path) -> None:
    app = run_app(q="a bridge")
    _, score, name = results(app)[1]
    act(app, _key_of(indexed, name), "Open")
    assert_clean(app)
    assert any(f"#2 · similarity {score:.3f}" in md.value and unescape(md.value).endswith(name) for md in app.markdown)
    large = [image for image in app.image if image.captions == [""]]
    assert len(large) == 1, "the photo itself, from the photo folder"
    assert len(app.get("progress")) == 5


def test_a_stopped_embedded_server_is_reported_then_restarted(
    tmp_path: Path, monkeypatch, random_checkpoint: Path, encoder, photo_folder: Path
) -> None:
    from clipsearch.index.server import EmbeddedServer

    server = EmbeddedServer(tmp_path / "own-data")
    settings = Settings(data_dir=server.data_dir, index_name="restartable")
    monkeypatch.setenv("CLIPSEARCH_DATA_DIR", str(server.data_dir))
    monkeypatch.setenv("CLIPSEARCH_INDEX", settings.index_name)
    monkeypatch.setenv("CLIPSEARCH_PRETRAINED", str(random_checkpoint))
    monkeypatch.setenv("CLIPSEARCH_PHOTOS", str(photo_folder))
    try:
        store = Library(settings, text_encoder=lambda: encoder).store(create=True)
        PhotoLoader(store, lambda: encoder, LoadOptions(), show_bar=False).index_folder(photo_folder)
        app = run_app(q="a tower")
        assert len(results(app)) == 12
        server.stop()
        app.run()
        assert_clean(app)
        assert any("Lost the connection" in error.value for error in app.error)
        app.run()
        assert_clean(app)
        assert len(results(app)) == 12 and server.is_running()
    finally:
        server.stop()


def index_elsewhere(settings: Settings, encoder, photo: Path, folder: Path, **options) -> PhotoStore:
    """This test's index, loaded from a folder other than CLIPSEARCH_PHOTOS holding one photo."""
    folder.mkdir()
    shutil.copy2(photo, folder / photo.name)
    store = Library(settings, text_encoder=lambda: encoder).store(create=True)
    PhotoLoader(store, lambda: encoder, LoadOptions(**options), show_bar=False).index_folder(folder)
    return store


def test_no_index_button_over_an_index_loaded_from_another_folder(
    app_env: Settings, encoder, photo_folder: Path, tmp_path: Path, sample_photos: Path
) -> None:
    store = index_elsewhere(app_env, encoder, sample_photos / "pan.jpg", tmp_path / "elsewhere")
    app = run_app()
    assert_clean(app)
    assert not [b for b in app.sidebar.button if b.label.startswith("Index ")], "it would prune the other folder"
    assert store.count() == 1


def test_an_index_without_thumbnails_shows_photos_from_the_folder(
    app_env: Settings, encoder, photo_folder: Path
) -> None:
    store = Library(app_env, text_encoder=lambda: encoder).store(create=True)
    PhotoLoader(store, lambda: encoder, LoadOptions(thumbnail_size=None), show_bar=False).index_folder(photo_folder)
    assert all(row.thumbnail is None for _, row in store.scan(("thumbnail",)))
    app = run_app(q="a harbour")
    assert_clean(app)
    assert len(results(app)) == 12 and not [c for c in app.caption if "(no thumbnail)" in c.value]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_uploads_over_the_pixel_or_byte_limit_are_refused_with_a_message(indexed: PhotoStore, monkeypatch) -> None:
    bomb = png(Image.new("1", (11_000, 8_700)))  # 95.7 Mpx in a few KiB
    assert len(bomb) < 20_000
    app = run_app()
    app.segmented_control(key="mode").set_value("Photo").run()
    app.file_uploader(key="upload").set_value(("bomb.png", bomb, "image/png")).run()
    assert_clean(app)
    assert any("decompression bomb" in error.value and "95,700,000" in error.value for error in app.error)

    monkeypatch.setenv("CLIPSEARCH_UPLOAD_MAX_BYTES", "1000")
    app = run_app()
    app.segmented_control(key="mode").set_value("Photo").run()
    photo = sorted(indexed_folder(indexed).glob("*.jpg"))[0]
    app.file_uploader(key="upload").set_value((photo.name, photo.read_bytes(), "image/jpeg")).run()
    assert_clean(app)
    assert any("over the limit of 1,000" in unescape(error.value) for error in app.error)
    assert results(app) == []


def indexed_folder(store: PhotoStore) -> Path:
    root = store.photos_root
    assert root is not None
    return root


def test_labels_are_capped_and_encoded_once_in_batches(indexed: PhotoStore, text_encodes: list[list[str]]) -> None:
    app = run_app(q="a boat")
    labels = "\n".join(f"thing number {i} " + "x" * (i % 90) for i in range(1000))
    box = app.sidebar.text_area(key="labels")
    assert box.proto.max_chars == MAX_LABELS_TEXT < len(labels), "the browser takes no more than the page reads"
    box.input(labels[:MAX_LABELS_TEXT]).run()
    left_out = LabelList.parse(labels[:MAX_LABELS_TEXT]).left_out
    assert left_out > 0 and any(f"{left_out} left out" in c.value for c in app.sidebar.caption)
    _, _, name = results(app)[0]
    act(app, _key_of(indexed, name), "Open")
    assert_clean(app)
    assert len(app.get("progress")) == 5
    label_batches = [len(batch) for batch in text_encodes if len(batch) != 1]  # the query itself is one text
    assert sum(label_batches) == 100 and max(label_batches) <= 64, label_batches
    app.slider(key="k").set_value(13).run()  # another rerun: the label vectors come from the cache
    assert sum(len(batch) for batch in text_encodes if len(batch) != 1) == 100


def test_full_size_photos_come_only_from_the_configured_folder(
    app_env: Settings, encoder, photo_folder: Path, tmp_path: Path, sample_photos: Path
) -> None:
    """The index names the folder it was loaded from; the page must not serve files from there."""
    index_elsewhere(app_env, encoder, sample_photos / "giraffe.jpg", tmp_path / "elsewhere", thumbnail_size=None)
    app = run_app(q="an animal")
    assert_clean(app)
    [tile] = gallery_tiles(app)
    assert tile["src"] is None, "no thumbnail, and the file is not in CLIPSEARCH_PHOTOS: no picture to show"
    assert tile["caption"].endswith("(no thumbnail)")


def test_a_malformed_valkey_url_is_explained_without_the_password(app_env: Settings, monkeypatch) -> None:
    monkeypatch.setenv("VALKEY_URL", "rediss://default:Hunter#22@host.example:6379")
    error = the_one_error(run_app())
    assert "A setting is wrong" in error and "percent-encode" in error and "Hunter" not in error


def test_filters_and_order_round_trip_through_the_url_and_equal_the_store(
    app_env: Settings, dated_library: Path, encoder, open_test_index, monkeypatch
) -> None:
    monkeypatch.setenv("CLIPSEARCH_PHOTOS", str(dated_library))
    store = open_test_index()
    PhotoLoader(store, lambda: encoder, LoadOptions(), show_bar=False).index_folder(dated_library)
    app = run_app(q="a photo", folder="2021/japan", order="newest", after="2021-03-01")
    assert_clean(app)
    assert app.text_input(key="folder").value == "2021/japan" and app.selectbox(key="order").value == "newest"
    assert app.date_input(key="after").value == datetime.date(2021, 3, 1)
    where = SearchFilter(after=day_start("2021-03-01"), folder="2021/japan")
    expected = store.nearest(encoder.encode_text(["a photo"])[0], k=12, where=where, order="newest")
    shown = results(app)
    assert [name for _, _, name in shown] == [hit.photo.name for hit in expected] and 0 < len(shown) < 12
    dates = [CAPTION.match(tile["caption"]).group(4) for tile in gallery_tiles(app)]
    assert dates == sorted(dates, reverse=True) and min(dates) >= "2021-03-01"

    app.selectbox(key="camera").set_value("Canon EOS R6").run()  # no Canon photo is in 2021/japan
    assert not results(app)
    app.text_input(key="folder").set_value("").run()
    canon = {path.name for path in (dated_library / "2021").glob("*.jpg")}
    assert results(app) and {name for _, _, name in results(app)} <= canon
    shared = run_app(q="a photo", camera="Canon EOS R6")  # the camera comes from the URL too
    assert shared.selectbox(key="camera").value == "Canon EOS R6" and results(shared)
    assert {name for _, _, name in results(shared)} <= canon


def test_a_link_to_photos_older_than_ten_years_keeps_its_dates(
    app_env: Settings, tmp_path: Path, sample_photos: Path, encoder, open_test_index, monkeypatch
) -> None:
    """Streamlit's date boxes take today ± 10 years unless told otherwise: a 2003 date in a link was dropped,
    and every photo shown."""
    folder = tmp_path / "old"
    folder.mkdir()
    taken = {"2003-06-01": 2, "2004-12-31": 1, "2005-01-01": 1, "2012-08-09": 2}
    sources = iter(sorted(sample_photos.glob("*.jpg")))
    for day, photos in taken.items():
        for i in range(photos):
            exif_time = day.replace("-", ":") + " 12:00:00"
            (folder / f"{day}-{i}.jpg").write_bytes(dated_photo(next(sources), exif_time, ("Canon", "Canon EOS 10D")))
    monkeypatch.setenv("CLIPSEARCH_PHOTOS", str(folder))
    PhotoLoader(open_test_index(), lambda: encoder, LoadOptions(), show_bar=False).index_folder(folder)
    app = run_app(q="a photo", after="2003-01-01", before="2004-12-31")
    assert_clean(app)
    assert app.date_input(key="after").value == datetime.date(2003, 1, 1)
    assert app.date_input(key="before").value == datetime.date(2004, 12, 31)
    assert (app.query_params["after"], app.query_params["before"]) == ("2003-01-01", "2004-12-31")
    assert sorted(name for _, _, name in results(app)) == ["2003-06-01-0.jpg", "2003-06-01-1.jpg", "2004-12-31-0.jpg"]
    app.date_input(key="after").set_value(datetime.date(2005, 1, 1)).run()  # the box takes an old date too
    assert app.date_input(key="after").value == datetime.date(2005, 1, 1) and not results(app)
    app.date_input(key="before").set_value(None).run()
    assert sorted(name for _, _, name in results(app)) == ["2005-01-01-0.jpg", "2012-08-09-0.jpg", "2012-08-09-1.jpg"]
    for outside in ("1799-12-31", "2200-01-01"):  # beyond what a filter takes: dropped, as any malformed date
        assert run_app(q="a photo", after=outside).date_input(key="after").value is None


# --- near-duplicates, variety, the cut, Show more, photos with words, the duplicates view -------------------

SIMILAR = re.compile(r"^≈ (-?\d\.\d{3}) · (.+?) · \d+ x \d+ px")


@pytest.fixture
def planted(app_env: Settings, open_test_index, encoder, photo_folder: Path, planted_duplicates) -> PhotoStore:
    store = open_test_index()
    PhotoLoader(store, lambda: encoder, LoadOptions(), show_bar=False).index_folder(photo_folder)
    return store


def near_duplicates(app: AppTest) -> dict[str, list[str]]:
    """Each "+N near-duplicates" action's label and the names of the photos its dialog pictures (chosen one
    after the other: a search itself sends none of their pictures)."""
    folded = {}
    for key, label in folding_actions(app):
        assert not [caption for image in app.image for caption in image.captions if SIMILAR.match(caption)]
        choose_in_gallery(app, key, "near-duplicates")
        folded[label] = [
            unescape(match[2]) for image in app.image for caption in image.captions if (match := SIMILAR.match(caption))
        ]
        app.run()  # the dialog closes
    return folded


def folding_actions(app: AppTest) -> list[tuple[str, str]]:
    """(photo key, label) of each result's "+N near-duplicates" action."""
    return [
        (tile["key"], action["label"])
        for tile in gallery_tiles(app)
        for action in tile["actions"]
        if action["action"] == "near-duplicates"
    ]


def test_near_duplicates_fold_under_the_best_and_the_toggle_round_trips(
    planted: PhotoStore, planted_duplicates: dict[str, list[str]]
) -> None:
    key = _key_of(planted, "monuments-navajo.jpg")
    app = run_app(like=key, k="5")
    assert_clean(app)
    assert app.toggle(key="fold").value is True
    shown = results(app)
    assert len(shown) == 5 and shown[0][2] in {"monuments-navajo.jpg", "monuments-navajo-png.png"}
    folded = near_duplicates(app)
    copies = {"monuments-navajo.jpg", *(Path(path).name for path in planted_duplicates["monuments-navajo.jpg"])}
    assert {shown[0][2], *folded["+4 near-duplicates"]} == copies
    assert not copies & {name for _, _, name in shown[1:]}, "the other four results are other photos"
    total = sum(len(names) for names in folded.values())
    assert any(f"{total} near-duplicates folded" in md.value for md in app.markdown)

    plain = run_app(like=key, k="5", fold="false")
    assert plain.toggle(key="fold").value is False and not [action for action in folding_actions(plain)]
    assert {name for _, _, name in results(plain)} == copies, "unfolded, the copies fill the five places"
    app.toggle(key="fold").set_value(False).run()
    assert results(app) == results(plain)


def test_a_burst_shows_the_first_folded_photos_and_names_the_rest(
    indexed: PhotoStore, photo_folder: Path, encoder
) -> None:
    for i in range(12):  # the same photo, byte for byte different: thirteen in all
        (photo_folder / f"burst-{i:02d}.jpg").write_bytes((photo_folder / "kingfisher.jpg").read_bytes() + bytes(i + 1))
    PhotoLoader(indexed, lambda: encoder, LoadOptions(), show_bar=False).index_folder(photo_folder)
    app = run_app(like=_key_of(indexed, "kingfisher.jpg"), k="3")
    assert_clean(app)
    [(label, pictured)] = near_duplicates(app).items()
    assert label == "+12 near-duplicates" and len(pictured) == 8
    [(key, label)] = folding_actions(app)
    choose_in_gallery(app, key, "near-duplicates")
    [rest] = [caption.value for caption in app.caption if caption.value.startswith("and 4 more: ")]
    named = set(unescape(rest.removeprefix("and 4 more: ")).split(", "))
    assert (
        len(named) == 4
        and not named & set(pictured)
        and named | set(pictured) | {results(app)[0][2]}
        == {"kingfisher.jpg", *(f"burst-{i:02d}.jpg" for i in range(12))}
    )


def chart(app: AppTest) -> tuple[int, float | None]:
    """The score chart's number of candidates and the similarity where its cut is drawn (its expander opened:
    the chart is drawn only then)."""
    assert not [element for element in app.get("html") if "<svg" in element.proto.body], "drawn while closed"
    app.session_state["scores"] = True
    app.run()
    [svg] = [element.proto.body for element in app.get("html") if "<svg" in element.proto.body]
    cut = re.search(r'data-cut="([0-9.]+)"', svg)
    return svg.count("<circle"), float(cut[1]) if cut else None


def test_variety_and_the_relative_cut_from_the_url_equal_the_library(indexed: PhotoStore, encoder) -> None:
    vector = encoder.encode_text(["a harbour at dawn"])[0]
    varied = run_app(q="a harbour at dawn", variety="0.6")
    assert_clean(varied)
    assert varied.slider(key="variety").value == 0.6
    expected = find(indexed, vector, SearchOptions(k=12, duplicate_similarity=0.99, variety=0.6))
    assert [name for _, _, name in results(varied)] == [r.hit.photo.name for r in expected.shown]
    assert [name for _, _, name in results(varied)] != [name for _, _, name in results(run_app(q="a harbour at dawn"))]

    scores = [hit.score for hit in indexed.nearest(vector, k=34)]
    below = round((scores[0] - scores[5]) + 0.001, 3)  # measured: keeps the best six (the next is further off)
    assert scores[0] - scores[6] > below
    cut = run_app(q="a harbour at dawn", cut="relative", below_best=str(below))
    assert_clean(cut)
    assert cut.button_group(key="cut").value == "relative" and cut.slider(key="below_best").value == below
    assert len(results(cut)) == 6
    candidates, drawn = chart(cut)
    assert drawn == pytest.approx(scores[0] - below, abs=1e-6) and candidates == 32, "k + 20 candidates"
    assert any("26 of the 32 nearest under the cut" in md.value for md in cut.markdown)
    absolute = run_app(q="a harbour at dawn")
    assert chart(absolute) == (32, None), "no cut, no line"


def test_show_more_extends_past_the_slider_without_encoding_again(
    indexed: PhotoStore, text_encodes: list[list[str]]
) -> None:
    query = f"a market stall {uuid.uuid4().hex[:6]}"
    app = run_app(q=query, k="10")
    assert len(results(app)) == 10
    app.button(key="more").click().run()
    assert [rank for rank, _, _ in results(app)] == list(range(1, 21))
    assert app.query_params["pages"] in ("2", ["2"])
    app.button(key="more").click().run()
    assert len(results(app)) == 30
    app.button(key="more").click().run()
    assert len(results(app)) == 34 and not [b for b in app.button if b.key == "more"], "all 34 photos shown"
    assert text_encodes == [[query]], "the query was encoded once"
    shared = run_app(q=query, k="10", pages="2")
    assert len(results(shared)) == 20
    shared.text_input(key="q").input("a fishing boat").run()
    assert len(results(shared)) == 10, "a new search starts from one page again"


def test_words_added_to_a_photo_are_terms_of_one_query(indexed: PhotoStore, encoder) -> None:
    key = _key_of(indexed, sorted(name for _, row in indexed.scan(("name",)) for name in [row.name])[3])
    app = run_app(like=key, also="- 0.5:people + at night")
    assert_clean(app)
    assert app.text_input(key="also").value == "- 0.5:people + at night"
    people, night = encoder.encode_text(["people", "at night"])
    expected_vector = indexed.vector_of(key) - 0.5 * people + night
    expected = indexed.nearest(expected_vector / np.linalg.norm(expected_vector), k=12)
    shown = results(app)
    assert [name for _, _, name in shown] == [hit.photo.name for hit in expected]
    np.testing.assert_allclose([score for _, score, _ in shown], [round(hit.score, 3) for hit in expected], atol=1e-3)
    assert any("- 0.5:people + at night" in unescape(md.value) for md in app.markdown)
    bad = run_app(like=key, also="+ + night")
    assert "Those words cannot be read" in bad.error[0].value and not results(bad)


def test_the_duplicates_view_groups_the_planted_copies(
    planted: PhotoStore, planted_duplicates: dict[str, list[str]], monkeypatch, encoder, photo_folder: Path
) -> None:
    expected = find_duplicates(planted, 0.999)
    scans: list[float] = []

    def counted(store: PhotoStore, floor: float, *args, real=library.similar_pairs, **kwargs):
        scans.append(floor)
        return real(store, floor, *args, **kwargs)

    monkeypatch.setattr(library, "similar_pairs", counted)
    app = run_app(view="duplicates")  # a link from before the views had their own paths
    assert_clean(app)
    assert "view" not in app.query_params
    assert any(md.value.startswith("**3 groups** of near-duplicates (8 photos beyond") for md in app.markdown)
    shown = [unescape(caption.split(" · ")[1]) for image in app.image for caption in image.captions]
    planted_paths = [path for original, copies in planted_duplicates.items() for path in (original, *copies)]
    assert sorted(shown) == sorted(planted_paths), "every member of every group, once"
    shared = run_app(view="duplicates", dup="0.999")  # the threshold's old name
    assert shared.slider(key="duplicate_similarity").value == 0.999
    assert len(expected.groups) > 0 and expected.duplicates < 8, "measured: some copies are not this close"
    assert any(
        md.value.startswith(f"**{len(expected.groups)} groups** of near-duplicates ({expected.duplicates} ")
        for md in shared.markdown
    )
    assert scans == [0.9], "one scan, at the slider's floor, serves both thresholds"
    again = run_app(view="duplicates")  # another visitor: the same groups, not scanned again
    assert any(md.value.startswith("**3 groups**") for md in again.markdown) and scans == [0.9]

    # A photo deleted and another added (the count stays): the next visitor never sees the deleted one.
    gone = planted_duplicates["kingfisher.jpg"][0]
    planted.delete([planted.schema.key_for(gone)])
    (photo_folder / "new").mkdir()
    shutil.copy2(photo_folder / "kingfisher.jpg", photo_folder / "new" / "kingfisher-again.jpg")
    (photo_folder / gone).unlink()
    PhotoLoader(planted, lambda: encoder, LoadOptions(), show_bar=False).index_folder(photo_folder)
    after = run_app(view="duplicates")
    shown = [unescape(caption.split(" · ")[1]) for image in after.image for caption in image.captions]
    assert gone not in shown and "new/kingfisher-again.jpg" in shown and scans == [0.9, 0.9]


def test_a_dense_library_shows_bounded_groups(app_env: Settings, open_test_index) -> None:
    """Every photo at least 0.9 like every other (as the random model's own photos are): once, each photo asked
    again for 4x more neighbours while all passed (35 s at 1,000 photos), and a group showed every member."""
    from clipsearch.index.schema import PhotoRecord

    store = open_test_index()
    rng = np.random.default_rng(5)
    centre = rng.standard_normal(512)
    vectors = centre / np.linalg.norm(centre) + 0.012 * rng.standard_normal((150, 512))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assert (vectors @ vectors.T).min() > 0.9
    store.upsert(PhotoRecord(path=f"burst/{i:03d}.jpg", vector=v, width=100, height=100) for i, v in enumerate(vectors))
    app = run_app(view="duplicates", dup="0.9")
    assert_clean(app)
    assert any(md.value.startswith("**1 groups** of near-duplicates (149 photos beyond") for md in app.markdown)
    assert len([caption for caption in app.caption if "burst/" in caption.value]) == 16  # (no thumbnails stored)
    assert any(caption.value == "and 134 more" for caption in app.caption)
    assert any("150 photos have over 64 others at 0.9 or more" in caption.value for caption in app.caption)
