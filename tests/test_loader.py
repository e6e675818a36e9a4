"""The encoder, the loader and the search command, with a real open_clip model and a real server."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import open_clip
import pytest
import torch
from conftest import ROOT
from PIL import Image, ImageOps

from clipsearch.encoder import ClipEncoder, TextEncoder, pretrained_label, rank_labels
from clipsearch.errors import ConfigError
from clipsearch.loader import LoadOptions, PhotoLoader, loaded_from
from clipsearch.photos import decode_photo, file_under
from clipsearch.settings import Settings
from clipsearch.store import IndexSchema, PhotoStore, connect

PHOTOS = ROOT / "photos"
SOME_PHOTOS = ["chair.jpg", "farm-animals-cat.jpg", "giraffe.jpg", "igloo.jpg", "pan.jpg", "sea1.jpg"]


def open_store(settings: Settings, encoder: ClipEncoder) -> PhotoStore:
    return PhotoStore.open(connect(settings), IndexSchema.from_settings(settings, encoder.identity), create=True)


def copy_photos(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(PHOTOS / name, folder / name)
    return folder


def quiet_loader(store: PhotoStore, encoder: ClipEncoder, **options) -> PhotoLoader:
    return PhotoLoader(store, encoder, LoadOptions(**options), show_bar=False)


def stored_vectors(store: PhotoStore) -> dict[str, np.ndarray]:
    return {row["path"]: row["vector"] for _, row in store.scan(("path", "vector"))}


def run_cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clipsearch", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


# --- the encoder -------------------------------------------------------------------------


def test_vectors_equal_open_clips_own_encoding(
    tmp_path: Path, settings: Settings, encoder: ClipEncoder, random_checkpoint: Path
) -> None:
    folder = copy_photos(tmp_path / "photos", SOME_PHOTOS)
    store = open_store(settings, encoder)
    report = quiet_loader(store, encoder, batch_size=4).index_folder(folder)
    assert report.indexed == len(SOME_PHOTOS) and not report.failed

    reference, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=str(random_checkpoint))
    reference.eval()
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    vectors = stored_vectors(store)
    with torch.no_grad():
        for name in SOME_PHOTOS:
            image = ImageOps.exif_transpose(Image.open(folder / name)).convert("RGB")
            expected = torch.nn.functional.normalize(reference.encode_image(preprocess(image)[None]), dim=-1)[0]
            assert vectors[name].dtype == np.float32
            np.testing.assert_allclose(vectors[name], expected.numpy(), atol=1e-5)
        text = "a photo of a cat on a chair"
        expected_text = torch.nn.functional.normalize(reference.encode_text(tokenizer([text])), dim=-1)[0]
    query = encoder.encode_text([text])[0]
    assert query.dtype == np.float32
    np.testing.assert_allclose(query, expected_text.numpy(), atol=1e-5)
    assert np.linalg.norm(query) == pytest.approx(1.0, abs=1e-5)


def test_text_tower_alone_encodes_like_the_full_model(encoder: ClipEncoder, random_checkpoint: Path) -> None:
    text_only = TextEncoder.load("ViT-B-32", str(random_checkpoint))
    assert text_only.identity == encoder.identity
    tower_parameters = sum(p.numel() for p in text_only.tower.parameters())
    assert tower_parameters < 0.5 * sum(p.numel() for p in encoder.model.parameters())
    assert not any(name.startswith("visual") for name, _ in text_only.tower.named_parameters())
    texts = ["a photo of a cat", "snowy streets at night", ""]
    np.testing.assert_allclose(text_only.encode_text(texts), encoder.encode_text(texts), atol=1e-6)
    assert text_only.logit_scale == pytest.approx(encoder.logit_scale)


def test_rank_labels_orders_by_similarity_with_clip_softmax(encoder: ClipEncoder) -> None:
    labels = ["cat", "dog", "car", " ", "cat"]
    image = encoder.encode_images([decode_photo((PHOTOS / "farm-animals-cat.jpg").read_bytes())])[0]
    ranked = rank_labels(encoder, image, labels)
    assert [score.label for score in ranked] == sorted(
        {"cat", "dog", "car"}, key=lambda label: -float(encoder.encode_text([f"a photo of {label}."])[0] @ image)
    )
    assert sum(score.probability for score in ranked) == pytest.approx(1.0)
    logits = np.array([score.similarity for score in ranked]) * encoder.logit_scale
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose([score.probability for score in ranked], expected, rtol=1e-5)


def test_a_checkpoint_file_is_known_by_name_and_content_not_by_folder(random_checkpoint: Path, tmp_path: Path) -> None:
    same = tmp_path / "elsewhere" / random_checkpoint.name
    same.parent.mkdir()
    shutil.copy(random_checkpoint, same)
    assert pretrained_label(str(same)) == pretrained_label(str(random_checkpoint))
    assert pretrained_label(str(same)).startswith("vit-b-32-random.pt#")
    other = tmp_path / "other" / random_checkpoint.name  # same name, other weights
    other.parent.mkdir()
    shutil.copy(random_checkpoint, other)
    with open(other, "r+b") as handle:  # same size, one byte of the weights changed
        handle.seek(600_000)
        byte = handle.read(1)
        handle.seek(600_000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert pretrained_label(str(other)) != pretrained_label(str(random_checkpoint))
    assert pretrained_label("laion2b_s34b_b79k") == "laion2b_s34b_b79k"


def test_unknown_model_or_tag_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not an open_clip model"):
        ClipEncoder.load("ViT-Z-99", "openai")
    with pytest.raises(ConfigError, match="neither a pretrained tag of ViT-B-32.*nor an existing checkpoint file"):
        ClipEncoder.load("ViT-B-32", "no-such-tag-or-file")


# --- the loader ----------------------------------------------------------------------------


def test_incremental_runs_changes_and_prune(tmp_path: Path, settings: Settings, encoder: ClipEncoder) -> None:
    folder = copy_photos(tmp_path / "photos", SOME_PHOTOS)
    store = open_store(settings, encoder)
    assert quiet_loader(store, encoder).index_folder(folder).indexed == len(SOME_PHOTOS)

    second = quiet_loader(store, encoder).index_folder(folder)
    assert (second.indexed, second.unchanged, second.failed) == (0, len(SOME_PHOTOS), [])

    before = stored_vectors(store)
    shutil.copy2(PHOTOS / "crab.jpg", folder / "chair.jpg")  # new content under an old name
    os.utime(folder / "igloo.jpg", (time.time() + 100, time.time() + 100))  # touched, same content
    third = quiet_loader(store, encoder).index_folder(folder)
    assert (third.indexed, third.unchanged) == (1, len(SOME_PHOTOS) - 1)
    after = stored_vectors(store)
    assert not np.allclose(after["chair.jpg"], before["chair.jpg"])
    np.testing.assert_array_equal(after["igloo.jpg"], before["igloo.jpg"])
    [igloo] = [row for _, row in store.scan(("path", "mtime")) if row["path"] == "igloo.jpg"]
    assert igloo["mtime"] == (folder / "igloo.jpg").stat().st_mtime
    assert quiet_loader(store, encoder).index_folder(folder).indexed == 0

    (folder / "pan.jpg").unlink()
    kept = quiet_loader(store, encoder).index_folder(folder)
    assert kept.pruned == 0 and store.count() == len(SOME_PHOTOS)
    pruned = quiet_loader(store, encoder, prune=True).index_folder(folder)
    assert pruned.pruned == 1 and store.count() == len(SOME_PHOTOS) - 1
    assert loaded_from(store) == folder.resolve()
    assert "pan.jpg" not in stored_vectors(store)


def write_bad_and_odd_files(folder: Path) -> tuple[dict[str, str], set[str]]:
    """Bad files (name -> expected reason) and good files with awkward names or formats."""
    folder.mkdir(parents=True, exist_ok=True)
    jpeg = (PHOTOS / "giraffe.jpg").read_bytes()
    (folder / "notes.jpg").write_text("this is not an image")
    (folder / "empty.png").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    png = _png_bytes(Image.open(PHOTOS / "giraffe.jpg"))
    middle = len(png) // 2
    (folder / "corrupt.png").write_bytes(
        png[:middle] + bytes(b ^ 0x5A for b in png[middle : middle + 64]) + png[middle + 64 :]
    )
    Image.new("L", (3000, 3000)).save(folder / "bomb.png")  # tiny file, 9 Mpx: over the test's limit
    (folder / "gone.jpg").symlink_to(folder / "does-not-exist.jpg")
    bad = {
        "notes.jpg": "not an image",
        "empty.png": "empty file",
        "truncated.jpg": "truncated",
        "corrupt.png": "corrupt",
        "bomb.png": "decompression bomb",
        "gone.jpg": "cannot stat",
    }
    good = set()
    for name in ("with space.jpg", "ünïcödé 写真.jpg", "sub/dir/nested.JPG"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PHOTOS / "pan.jpg", folder / name)
        good.add(name)
    raw_name = os.fsencode(folder) + b"/caf\xe9-latin1.jpg"  # not UTF-8
    with open(raw_name, "wb") as handle:
        handle.write((PHOTOS / "chair.jpg").read_bytes())
    good.add(os.fsdecode(b"caf\xe9-latin1.jpg"))
    base = Image.open(PHOTOS / "sea1.jpg").convert("RGB").resize((64, 48))
    rgba = base.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "alpha.png")
    base.convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray((np.arange(64 * 48).reshape(48, 64) * 20).astype(np.uint16)).save(folder / "sixteen-bit.png")
    base.convert("P").save(folder / "palette.gif")
    frames = [base, base.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    base.save(folder / "bitmap.bmp")
    base.save(folder / "scan.tiff")
    base.save(folder / "modern.webp")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    base.save(folder / "rotated.jpg", exif=exif)
    good |= {"alpha.png", "cmyk.jpg", "sixteen-bit.png", "palette.gif", "animated.gif", "bitmap.bmp", "scan.tiff"}
    good |= {"modern.webp", "rotated.jpg"}
    return bad, good


def test_bad_files_are_reported_and_skipped_good_ones_indexed(
    tmp_path: Path, settings: Settings, encoder: ClipEncoder
) -> None:
    bad, good = write_bad_and_odd_files(tmp_path / "mixed")
    store = open_store(settings, encoder)
    report = quiet_loader(store, encoder, max_pixels=4_000_000).index_folder(tmp_path / "mixed")
    failed = dict(report.failed)
    assert set(failed) == set(bad), report.summary()
    for name, reason in bad.items():
        assert reason in failed[name]
    stored = {row["path"]: row for _, row in store.scan(("path", "width", "height", "thumbnail"))}
    assert set(stored) == good
    assert (stored["rotated.jpg"]["width"], stored["rotated.jpg"]["height"]) == (48, 64)
    assert Image.open(__import__("io").BytesIO(stored["alpha.png"]["thumbnail"])).format == "JPEG"
    assert report.indexed == len(good)


def test_stored_paths_never_climb_out_of_the_photo_folder(tmp_path: Path) -> None:
    (tmp_path / "photos" / "sub").mkdir(parents=True)
    (tmp_path / "photos" / "sub" / "a.jpg").write_bytes(b"x")
    (tmp_path / "secret.jpg").write_bytes(b"x")
    root = tmp_path / "photos"
    assert file_under(root, "sub/a.jpg") == root / "sub" / "a.jpg"
    assert file_under(root, "../secret.jpg") is None
    assert file_under(root, str(tmp_path / "secret.jpg")) is None
    assert file_under(root, "sub/missing.jpg") is None


def test_conversions_to_rgb() -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert decode_photo(_png_bytes(rgba)).getpixel((0, 0)) == (255, 255, 255)  # transparent over white
    half = Image.new("RGBA", (4, 4), (0, 0, 0, 128))
    assert decode_photo(_png_bytes(half)).getpixel((0, 0)) == (127, 127, 127)
    sixteen = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert decode_photo(_png_bytes(sixteen)).getpixel((0, 0)) == (255, 255, 255)
    dim16 = Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16))
    assert decode_photo(_png_bytes(dim16)).getpixel((0, 0)) == (127, 127, 127)


def _png_bytes(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_file_gone_bad_does_not_touch_its_document(tmp_path: Path, settings: Settings, encoder: ClipEncoder) -> None:
    folder = copy_photos(tmp_path / "photos", ["chair.jpg"])
    store = open_store(settings, encoder)
    quiet_loader(store, encoder).index_folder(folder)
    before = stored_vectors(store)["chair.jpg"]
    (folder / "chair.jpg").write_bytes(b"\xff\xd8\xff garbage")
    report = quiet_loader(store, encoder, prune=True).index_folder(folder)
    assert [path for path, _ in report.failed] == ["chair.jpg"] and report.pruned == 0
    np.testing.assert_array_equal(stored_vectors(store)["chair.jpg"], before)


class _PhotoServer(http.server.SimpleHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


def test_from_csv_downloads_urls_and_reads_paths(tmp_path: Path, settings: Settings, encoder: ClipEncoder) -> None:
    served = copy_photos(tmp_path / "served", ["giraffe.jpg", "igloo.jpg"])
    copy_photos(tmp_path / "local", ["pan.jpg"])
    handler = lambda *args: _PhotoServer(*args, directory=str(served))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        csv_path = tmp_path / "photos.tsv"
        rows = ["photo_id\tphoto_image_url", f"1\t{base}/giraffe.jpg", f"2\t{base}/igloo.jpg"]
        rows += [f"3\t{base}/missing.jpg", "4\tlocal/pan.jpg"]
        csv_path.write_text("\n".join(rows) + "\n")
        store = open_store(settings, encoder)
        report = quiet_loader(store, encoder, download_retries=2).index_csv(csv_path)
        assert report.indexed == 3
        assert [(path, "HTTP 404" in reason) for path, reason in report.failed] == [(f"{base}/missing.jpg", True)]
        paths = {row["path"]: row for _, row in store.scan(("path", "name", "source"))}
        assert paths[f"{base}/giraffe.jpg"]["name"] == "giraffe.jpg" and paths[f"{base}/giraffe.jpg"]["source"] == "url"
        assert paths["local/pan.jpg"]["source"] == "file"

        _PhotoServer.requests.clear()
        again = quiet_loader(store, encoder).index_csv(csv_path)
        assert (again.indexed, again.unchanged) == (0, 3)
        assert _PhotoServer.requests == ["/missing.jpg"], "only the failed URL is fetched again, a 404 once"
    finally:
        server.shutdown()


# --- the command line ----------------------------------------------------------------------


@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_killed_run_then_rerun_gives_one_whole_document_per_photo(
    tmp_path: Path, settings: Settings, encoder: ClipEncoder, cli_env: dict[str, str], stop_signal: int
) -> None:
    names = sorted(p.name for p in PHOTOS.glob("*.jpg"))[:60]
    folder = copy_photos(tmp_path / "photos", names)
    command = [sys.executable, "scripts/load_photos.py", str(folder), "--batch-size", "4"]
    run = subprocess.Popen(command, env=cli_env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    store = open_store(settings, encoder)
    deadline = time.monotonic() + 240
    while store.count() < 12 and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.05)
    run.send_signal(stop_signal)
    _, stderr = run.communicate(timeout=60)
    if stop_signal == signal.SIGINT:
        assert run.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr
    written = store.count()
    assert 12 <= written < len(names), f"the run should be killed halfway, not after {written} photos"

    rerun = subprocess.run([*command, "--strict"], env=cli_env, cwd=ROOT, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"indexed {len(names) - written}, unchanged {written}, failed 0" in rerun.stdout
    rows = [row for _, row in store.scan(("path", "vector", "thumbnail", "content_hash", "width"))]
    assert sorted(row["path"] for row in rows) == names
    assert all(row["vector"].shape == (512,) and row["thumbnail"] and row["width"] for row in rows)
    assert store.count() == len(names)


def test_second_cli_run_encodes_nothing_and_says_so(tmp_path: Path, cli_env: dict[str, str]) -> None:
    folder = copy_photos(tmp_path / "photos", SOME_PHOTOS[:2])
    first = subprocess.run(
        [sys.executable, "scripts/load_photos.py", str(folder)], env=cli_env, cwd=ROOT, capture_output=True, text=True
    )
    assert first.returncode == 0 and "indexed 2, unchanged 0, failed 0" in first.stdout
    second = run_cli(cli_env, "index", str(folder))
    assert "Nothing to encode: all 2 photos are unchanged." in second.stdout
    assert "indexed 0, unchanged 2" in second.stdout

    info = run_cli(cli_env, "info").stdout
    assert "2 photos, model ViT-B-32 / vit-b-32-random.pt#" in info and f"photos from {folder.resolve()}" in info
    assert "dropped" in run_cli(cli_env, "drop", "--yes").stdout
    assert "none yet" in run_cli(cli_env, "info").stdout


def test_cli_exit_status_for_failures_and_unreachable_store(tmp_path: Path, cli_env: dict[str, str]) -> None:
    folder = copy_photos(tmp_path / "photos", ["pan.jpg"])
    (folder / "broken.png").write_bytes(b"nope")
    lenient = run_cli(cli_env, "index", str(folder))
    assert lenient.returncode == 0 and "failed: broken.png: not an image" in lenient.stdout
    strict = run_cli(cli_env, "index", str(folder), "--strict")
    assert strict.returncode == 1
    unreachable = run_cli({**cli_env, "VALKEY_URL": "redis://:pw@127.0.0.1:1"}, "index", str(folder))
    assert (
        unreachable.returncode == 2 and "cannot reach" in unreachable.stderr and "Traceback" not in unreachable.stderr
    )


def test_weights_unavailable_offline_names_model_tag_and_how_to_give_a_file(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    env = {k: v for k, v in cli_env.items() if k != "CLIPSEARCH_PRETRAINED"}  # the default tag
    offline = run_cli({**env, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf-cache")}, "search", "a cat")
    assert offline.returncode == 2 and "Traceback" not in offline.stderr
    assert "CLIP model ViT-B-32 with pretrained tag 'laion2b_s34b_b79k'" in offline.stderr
    assert "huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in offline.stderr
    assert "CLIPSEARCH_PRETRAINED=/path/to/that/file" in offline.stderr


@pytest.fixture
def sample_index(cli_env: dict[str, str]) -> dict[str, str]:
    """All sample photos indexed through the loader script."""
    loaded = subprocess.run(
        [sys.executable, "scripts/load_photos.py"], env=cli_env, cwd=ROOT, capture_output=True, text=True
    )
    assert loaded.returncode == 0, loaded.stderr
    return cli_env


def test_search_json_equals_brute_force_and_own_vectors_come_first(
    sample_index: dict[str, str], settings: Settings, encoder: ClipEncoder
) -> None:
    store = open_store(settings, encoder)
    rows = {key: row for key, row in store.scan(("path", "vector", "content_hash"))}
    assert len(rows) == len(list(PHOTOS.glob("*.jpg")))
    keys = list(rows)
    matrix = np.stack([rows[key]["vector"] for key in keys])

    for text in ("a photo of a cat", "snowy streets"):
        found = json.loads(run_cli(sample_index, "search", text, "--k", "10", "--json").stdout)
        scores = matrix @ encoder.encode_text([text])[0]
        best = np.argsort(-scores)[:10]
        assert [hit["key"] for hit in found] == [keys[i] for i in best]
        np.testing.assert_allclose([hit["score"] for hit in found], scores[best], atol=1e-5)
        assert all(hit["path"] == rows[hit["key"]]["path"] for hit in found)

    for key in keys:
        first = store.search(rows[key]["vector"], k=1)[0]
        assert rows[first.key]["content_hash"] == rows[key]["content_hash"]
        assert first.score == pytest.approx(1.0, abs=1e-5)

    by_image = json.loads(run_cli(sample_index, "search", "--image", str(PHOTOS / "giraffe.jpg"), "--json").stdout)
    assert by_image[0]["path"] == "giraffe.jpg"


@pytest.mark.skipif(
    not os.environ.get("CLIPSEARCH_TEST_CHECKPOINT"),
    reason="set CLIPSEARCH_TEST_CHECKPOINT to a real ViT-B-32 open_clip checkpoint (or tag, with network)",
)
def test_real_weights_find_the_cat(tmp_path: Path, cli_env: dict[str, str]) -> None:
    env = {**cli_env, "CLIPSEARCH_PRETRAINED": os.environ["CLIPSEARCH_TEST_CHECKPOINT"]}
    env.pop("HF_HUB_OFFLINE")  # a tag may be downloaded here
    env["CLIPSEARCH_INDEX"] += "-real"
    assert run_cli(env, "index", str(PHOTOS)).returncode == 0
    found = json.loads(run_cli(env, "search", "a photo of a cat", "--json", "--k", "3").stdout)
    assert found[0]["path"] == "farm-animals-cat.jpg"
