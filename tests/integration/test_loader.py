"""The loader with a real open_clip model and a real server: incremental runs, bad files, CSV sources."""

from __future__ import annotations

import http.server
import io
import os
import shutil
import threading
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image, ImageOps

from clipsearch.errors import FolderMismatch
from clipsearch.index.filters import SearchFilter
from clipsearch.index.schema import SCHEMA_VERSION
from clipsearch.index.store import PhotoStore
from clipsearch.ingest.decoding import decode_photo
from clipsearch.ingest.loader import LoadOptions, PhotoLoader
from clipsearch.model.torch_engine import TorchImageEncoder

SOME_PHOTOS = ["chair.jpg", "farm-animals-cat.jpg", "giraffe.jpg", "igloo.jpg", "pan.jpg", "sea1.jpg"]


def quiet_loader(store: PhotoStore, encoder: TorchImageEncoder, **options) -> PhotoLoader:
    return PhotoLoader(store, lambda: encoder, LoadOptions(**options), show_bar=False)


def lazy_loader(store: PhotoStore, load, **options) -> PhotoLoader:
    return PhotoLoader(store, load, LoadOptions(**options), show_bar=False)


def stored_vectors(store: PhotoStore) -> dict[str, np.ndarray]:
    return {row.path: row.vector for _, row in store.scan(("path", "vector"))}


def test_stored_vectors_equal_open_clips_own_encoding(
    tmp_path: Path, encoder: TorchImageEncoder, random_checkpoint: Path, open_test_index, copy_photos
) -> None:
    folder = copy_photos(tmp_path / "photos", SOME_PHOTOS)
    store = open_test_index()
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


def test_incremental_runs_changes_and_prune(
    tmp_path: Path, encoder: TorchImageEncoder, open_test_index, copy_photos, sample_photos: Path
) -> None:
    folder = copy_photos(tmp_path / "photos", SOME_PHOTOS)
    store = open_test_index()
    assert quiet_loader(store, encoder).index_folder(folder).indexed == len(SOME_PHOTOS)

    second = quiet_loader(store, encoder).index_folder(folder)
    assert (second.indexed, second.unchanged, second.failed) == (0, len(SOME_PHOTOS), [])

    before = stored_vectors(store)
    shutil.copy2(sample_photos / "crab.jpg", folder / "chair.jpg")  # new content under an old name
    os.utime(folder / "igloo.jpg", (time.time() + 100, time.time() + 100))  # touched, same content
    third = quiet_loader(store, encoder).index_folder(folder)
    assert (third.indexed, third.unchanged) == (1, len(SOME_PHOTOS) - 1)
    after = stored_vectors(store)
    assert not np.allclose(after["chair.jpg"], before["chair.jpg"])
    np.testing.assert_array_equal(after["igloo.jpg"], before["igloo.jpg"])
    [igloo] = [row for _, row in store.scan(("path", "mtime")) if row.path == "igloo.jpg"]
    assert igloo.mtime == (folder / "igloo.jpg").stat().st_mtime
    assert quiet_loader(store, encoder).index_folder(folder).indexed == 0

    (folder / "pan.jpg").unlink()
    kept = quiet_loader(store, encoder).index_folder(folder)
    assert kept.pruned == 0 and store.count() == len(SOME_PHOTOS)
    pruned = quiet_loader(store, encoder, prune=True).index_folder(folder)
    assert pruned.pruned == 1 and store.count() == len(SOME_PHOTOS) - 1
    assert store.photos_root == folder.resolve()
    assert "pan.jpg" not in stored_vectors(store)


def test_prune_refuses_an_index_loaded_from_another_folder(
    tmp_path: Path, encoder: TorchImageEncoder, open_test_index, copy_photos
) -> None:
    first = copy_photos(tmp_path / "first", ["chair.jpg", "pan.jpg"])
    second = copy_photos(tmp_path / "second", ["igloo.jpg"])
    store = open_test_index()
    quiet_loader(store, encoder).index_folder(first)
    with pytest.raises(FolderMismatch, match="pruning would delete them"):
        quiet_loader(store, encoder, prune=True).index_folder(second)
    assert store.count() == 2 and store.photos_root == first.resolve()
    replaced = quiet_loader(store, encoder, prune=True, allow_other_folder=True).index_folder(second)
    assert (replaced.indexed, replaced.pruned) == (1, 2)
    assert sorted(stored_vectors(store)) == ["igloo.jpg"] and store.photos_root == second.resolve()


def write_bad_and_odd_files(folder: Path, photos: Path) -> tuple[dict[str, str], set[str]]:
    """Bad files (name -> expected reason) and good files with awkward names or formats."""
    folder.mkdir(parents=True, exist_ok=True)
    jpeg = (photos / "giraffe.jpg").read_bytes()
    (folder / "notes.jpg").write_text("this is not an image")
    (folder / "empty.png").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    Image.open(photos / "giraffe.jpg").save(folder / "corrupt.png")
    png = (folder / "corrupt.png").read_bytes()
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
        shutil.copy(photos / "pan.jpg", folder / name)
        good.add(name)
    raw_name = os.fsencode(folder) + b"/caf\xe9-latin1.jpg"  # not UTF-8
    with open(raw_name, "wb") as handle:
        handle.write((photos / "chair.jpg").read_bytes())
    good.add(os.fsdecode(b"caf\xe9-latin1.jpg"))
    base = Image.open(photos / "sea1.jpg").convert("RGB").resize((64, 48))
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
    tmp_path: Path, encoder: TorchImageEncoder, open_test_index, sample_photos: Path
) -> None:
    bad, good = write_bad_and_odd_files(tmp_path / "mixed", sample_photos)
    store = open_test_index()
    report = quiet_loader(store, encoder, max_pixels=4_000_000).index_folder(tmp_path / "mixed")
    failed = dict(report.failed)
    assert set(failed) == set(bad), report.summary()
    for name, reason in bad.items():
        assert reason in failed[name]
    stored = {row.path: row for _, row in store.scan(("path", "width", "height", "thumbnail"))}
    assert set(stored) == good
    assert (stored["rotated.jpg"].width, stored["rotated.jpg"].height) == (48, 64)
    assert Image.open(io.BytesIO(stored["alpha.png"].thumbnail)).format == "JPEG"
    assert report.indexed == len(good)


def test_a_file_gone_bad_does_not_touch_its_document(
    tmp_path: Path, encoder: TorchImageEncoder, open_test_index, copy_photos
) -> None:
    folder = copy_photos(tmp_path / "photos", ["chair.jpg"])
    store = open_test_index()
    quiet_loader(store, encoder).index_folder(folder)
    before = stored_vectors(store)["chair.jpg"]
    (folder / "chair.jpg").write_bytes(b"\xff\xd8\xff garbage")
    report = quiet_loader(store, encoder, prune=True).index_folder(folder)
    assert [path for path, _ in report.failed] == ["chair.jpg"] and report.pruned == 0
    np.testing.assert_array_equal(stored_vectors(store)["chair.jpg"], before)


class _PhotoServer(http.server.SimpleHTTPRequestHandler):
    """Serves a folder, plus /to-ftp (a redirect to another scheme) and /drip (a byte every 0.1 s, forever)."""

    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        if self.path == "/to-ftp":
            self.send_response(302)
            self.send_header("Location", "ftp://127.0.0.1/photo.jpg")
            self.end_headers()
        elif self.path == "/drip":
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            for _ in range(600):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        else:
            super().do_GET()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def photo_site(tmp_path: Path, copy_photos):
    """A local web server with two photos; its base URL."""
    served = copy_photos(tmp_path / "served", ["giraffe.jpg", "igloo.jpg"])
    handler = lambda *args: _PhotoServer(*args, directory=str(served))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def write_csv(path: Path, column: str, values: list[str]) -> Path:
    path.write_text("\n".join([f"id\t{column}", *(f"{i}\t{value}" for i, value in enumerate(values))]) + "\n")
    return path


def test_from_csv_downloads_urls_and_reads_paths(
    tmp_path: Path, encoder: TorchImageEncoder, open_test_index, copy_photos, photo_site: str
) -> None:
    copy_photos(tmp_path / "local", ["pan.jpg"])
    base = photo_site
    csv_path = write_csv(
        tmp_path / "photos.tsv",
        "photo_image_url",
        [f"{base}/giraffe.jpg", f"{base}/igloo.jpg", f"{base}/missing.jpg", "local/pan.jpg"],
    )
    store = open_test_index()
    report = quiet_loader(store, encoder, download_retries=2, allow_private_hosts=True).index_csv(csv_path)
    assert report.indexed == 3
    assert [(path, "HTTP 404" in reason) for path, reason in report.failed] == [(f"{base}/missing.jpg", True)]
    paths = {row.path: row for _, row in store.scan(("path", "name", "source"))}
    assert paths[f"{base}/giraffe.jpg"].name == "giraffe.jpg" and paths[f"{base}/giraffe.jpg"].source == "url"
    local = str((tmp_path / "local" / "pan.jpg").resolve())
    assert paths[local].source == "file" and paths[local].name == "pan.jpg"

    _PhotoServer.requests.clear()
    again = quiet_loader(store, encoder, allow_private_hosts=True).index_csv(csv_path)
    assert (again.indexed, again.unchanged) == (0, 3)
    assert _PhotoServer.requests == ["/missing.jpg"], "only the failed URL is fetched again, a 404 once"


def test_csv_downloads_refuse_this_machine_other_schemes_and_slow_drips(
    tmp_path: Path, encoder: TorchImageEncoder, open_test_index, photo_site: str
) -> None:
    store = open_test_index()
    csv_path = write_csv(tmp_path / "urls.tsv", "url", [f"{photo_site}/giraffe.jpg"])
    _PhotoServer.requests.clear()
    refused = quiet_loader(store, encoder).index_csv(csv_path)
    [(_, reason)] = refused.failed
    assert "127.0.0.1" in reason and "--allow-private-hosts" in reason and _PhotoServer.requests == []

    csv_path = write_csv(tmp_path / "odd.tsv", "url", [f"{photo_site}/to-ftp", f"{photo_site}/drip"])
    started = time.monotonic()
    options = {"allow_private_hosts": True, "download_deadline": 1.0, "download_retries": 1}
    report = quiet_loader(store, encoder, **options).index_csv(csv_path)
    failed = dict(report.failed)
    assert "only http and https" in failed[f"{photo_site}/to-ftp"]
    assert "too slow" in failed[f"{photo_site}/drip"]
    assert time.monotonic() - started < 30, "a slow drip must not hold the loader"
    assert store.count() == 0


def test_csv_rows_outside_its_folder_are_refused_unless_allowed(
    tmp_path: Path, encoder: TorchImageEncoder, open_test_index, copy_photos
) -> None:
    copy_photos(tmp_path, ["pan.jpg", "igloo.jpg"])
    copy_photos(tmp_path / "lists", ["chair.jpg"])
    outside = str((tmp_path / "igloo.jpg").resolve())
    csv_path = write_csv(tmp_path / "lists" / "one-column.csv", "path", [])  # a one-column CSV has no delimiter
    csv_path.write_text(f"path\nchair.jpg\n../pan.jpg\n{outside}\n")
    store = open_test_index()
    report = quiet_loader(store, encoder).index_csv(csv_path)
    assert report.indexed == 1 and len(report.failed) == 2
    assert all("--allow-any-path" in reason for _, reason in report.failed)
    allowed = quiet_loader(store, encoder, allow_any_path=True).index_csv(csv_path)
    assert (allowed.indexed, allowed.unchanged, allowed.failed) == (2, 1, [])
    assert store.count() == 3


def test_a_csv_path_and_a_folder_file_of_the_same_name_are_two_photos(
    tmp_path: Path, encoder: TorchImageEncoder, open_test_index, copy_photos
) -> None:
    folder = copy_photos(tmp_path / "folder", ["pan.jpg"])
    copy_photos(tmp_path / "listed", ["chair.jpg"])
    (tmp_path / "listed" / "chair.jpg").rename(tmp_path / "listed" / "pan.jpg")
    store = open_test_index()
    quiet_loader(store, encoder).index_folder(folder)
    quiet_loader(store, encoder).index_csv(write_csv(tmp_path / "listed" / "list.tsv", "path", ["pan.jpg"]))
    vectors = stored_vectors(store)
    assert len(vectors) == 2 and not np.allclose(*vectors.values())


def test_pipes_devices_and_oversized_files_are_skipped_not_read(
    tmp_path: Path, encoder: TorchImageEncoder, open_test_index, copy_photos
) -> None:
    folder = copy_photos(tmp_path / "photos", ["pan.jpg", "chair.jpg"])
    os.mkfifo(folder / "pipe.jpg")
    (folder / "zero.jpg").symlink_to("/dev/zero")
    store = open_test_index()
    max_bytes = (folder / "pan.jpg").stat().st_size - 1  # chair.jpg is smaller and stays in
    assert (folder / "chair.jpg").stat().st_size <= max_bytes
    report = quiet_loader(store, encoder, max_bytes=max_bytes).index_folder(folder)
    failed = dict(report.failed)
    assert set(failed) == {"pipe.jpg", "zero.jpg", "pan.jpg"}, report.summary()
    assert "not a regular file" in failed["pipe.jpg"] and "not a regular file" in failed["zero.jpg"]
    assert "over the limit" in failed["pan.jpg"]
    assert sorted(stored_vectors(store)) == ["chair.jpg"]


# --- the command line ----------------------------------------------------------------------


def test_heic_and_avif_photos_are_indexed_upright_and_other_files_counted(
    tmp_path: Path, encoder: TorchImageEncoder, open_test_index, sample_photos: Path
) -> None:
    """A phone's HEIC and an AVIF, both saved with EXIF orientation 6 (turn 90° to show): upright once read."""
    folder = tmp_path / "phone"
    folder.mkdir()
    landscape = Image.open(sample_photos / "sea1.jpg").convert("RGB").resize((64, 48))
    exif = Image.Exif()
    exif[0x0112] = 6
    for name, kind in (("IMG_0001.HEIC", "HEIF"), ("photo.avif", "AVIF")):
        landscape.save(folder / name, format=kind, exif=exif.tobytes(), quality=90)
    for name in ("clip.MOV", "clip2.mov", "raw.dng", "notes.txt", "README"):
        (folder / name).write_bytes(b"not a photo")
    store = open_test_index()
    report = quiet_loader(store, encoder).index_folder(folder)
    assert (report.indexed, report.failed) == (2, [])
    assert "skipped (not photos): 2 .mov, 1 (no suffix), 1 .dng, 1 .txt" in report.summary()
    sizes = {row.path: (row.width, row.height) for _, row in store.scan(("path", "width", "height"))}
    assert sizes == {"IMG_0001.HEIC": (48, 64), "photo.avif": (48, 64)}, "portrait, as the orientation says"
    thumbnails = {row.path: Image.open(io.BytesIO(row.thumbnail)) for _, row in store.scan(("path", "thumbnail"))}
    assert all(thumbnail.size == (48, 64) for thumbnail in thumbnails.values())


def never_loaded():
    """An encoder function for a run that must not load the model."""
    pytest.fail("the model was loaded for a run with nothing to encode")


def test_a_rerun_with_nothing_to_encode_never_loads_the_model(
    tmp_path: Path, encoder: TorchImageEncoder, open_test_index, copy_photos
) -> None:
    folder = copy_photos(tmp_path / "photos", SOME_PHOTOS)
    store = open_test_index()
    loads: list[int] = []

    def load() -> TorchImageEncoder:
        loads.append(1)
        return encoder

    assert lazy_loader(store, load).index_folder(folder).indexed == len(SOME_PHOTOS)
    assert loads == [1]
    os.utime(folder / SOME_PHOTOS[0], (1_000_000_000, 1_000_000_000))  # touched, content unchanged
    (folder / SOME_PHOTOS[1]).unlink()
    report = quiet_loader(store, never_loaded, prune=True).index_folder(folder)
    assert (report.indexed, report.unchanged, report.pruned, report.failed) == (0, len(SOME_PHOTOS) - 1, 1, [])


def test_moved_renamed_or_copied_photos_take_their_stored_vector(
    tmp_path: Path, encoder: TorchImageEncoder, open_test_index, copy_photos
) -> None:
    folder = copy_photos(tmp_path / "photos", SOME_PHOTOS)
    store = open_test_index()
    quiet_loader(store, encoder).index_folder(folder)
    before = {row.path: row for _, row in store.scan(("path", "vector", "thumbnail", "width", "height"))}
    (folder / "2021" / "japan").mkdir(parents=True)
    (folder / "chair.jpg").rename(folder / "2021" / "japan" / "chair.jpg")  # moved
    (folder / "giraffe.jpg").rename(folder / "tall animal.jpg")  # renamed
    shutil.copy2(folder / "pan.jpg", folder / "pan copy.jpg")  # copied

    report = quiet_loader(store, never_loaded, prune=True).index_folder(folder)
    assert (report.indexed, report.reused, report.pruned, report.failed) == (3, 3, 2, [])
    assert "3 moved or copied, not encoded again" in report.summary()
    after = {row.path: row for _, row in store.scan(("path", "vector", "thumbnail", "width", "height"))}
    assert set(after) == set(before) - {"chair.jpg", "giraffe.jpg"} | {
        "2021/japan/chair.jpg", "tall animal.jpg", "pan copy.jpg"
    }  # fmt: skip
    for new, old in (
        ("2021/japan/chair.jpg", "chair.jpg"),
        ("tall animal.jpg", "giraffe.jpg"),
        ("pan copy.jpg", "pan.jpg"),
    ):
        assert np.array_equal(after[new].vector, before[old].vector)
        assert after[new].thumbnail == before[old].thumbnail and after[new].width == before[old].width
    hits = store.nearest(before["giraffe.jpg"].vector, k=1)
    assert hits[0].path == "tall animal.jpg" and hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_full_size_photos_are_decoded_scaled_but_recorded_at_full_size(
    tmp_path: Path, encoder: TorchImageEncoder, open_test_index, camera_jpeg
) -> None:
    folder = tmp_path / "camera"
    folder.mkdir()
    (folder / "turned.jpg").write_bytes(camera_jpeg(4032, 3024, orientation=6))
    store = open_test_index()
    assert quiet_loader(store, encoder).index_folder(folder).indexed == 1
    [(_, row)] = store.scan(("width", "height", "thumbnail", "vector"))
    assert (row.width, row.height) == (3024, 4032)  # the photo's own size, upright
    assert Image.open(io.BytesIO(row.thumbnail)).size == (192, 256)
    whole = encoder.encode_images([decode_photo((folder / "turned.jpg").read_bytes())])[0]  # every pixel decoded
    # Measured with these random weights: 0.999997 against full decoding, and 0.946 for the photo left
    # unrotated; 0.9999 tells them apart. (This smooth scene barely changes with scale: the thumbnail's
    # size checks that.)
    assert float(row.vector @ whole) > 0.9999


def test_the_loader_stores_when_what_camera_and_which_folders(
    dated_library: Path, encoder: TorchImageEncoder, open_test_index
) -> None:
    store = open_test_index()
    quiet_loader(store, encoder).index_folder(dated_library)
    rows = {row.path: row for _, row in store.scan(("path", "taken", "taken_from", "offset", "camera", "folders"))}
    japan = next(row for path, row in rows.items() if path.startswith("2021/japan/"))
    assert (japan.taken_from, japan.offset, japan.camera) == ("exif", "+09:00", "Apple iPhone 12")
    assert japan.folders == "2021|2021/japan"
    canon = next(row for path, row in rows.items() if path.count("/") == 1 and path.startswith("2021/"))
    assert canon.camera == "Canon EOS R6"  # not "Canon Canon EOS R6"
    plain = next(row for path, row in rows.items() if path.startswith("2022/"))
    assert plain.taken_from == "file" and plain.camera == ""


def test_an_index_of_the_previous_version_is_upgraded_by_the_loader_without_encoding(
    dated_library: Path, encoder: TorchImageEncoder, open_test_index, client, downgrade_to_version_1
) -> None:
    store = open_test_index()
    quiet_loader(store, encoder).index_folder(dated_library)
    before = stored_vectors(store)
    downgrade_to_version_1(client, store)
    upgraded = open_test_index()
    assert upgraded.needs_upgrade
    report = quiet_loader(upgraded, never_loaded).index_folder(dated_library)  # the model is never loaded
    assert (report.upgraded, report.indexed, report.unchanged) == (len(before), 0, len(before))
    assert report.summary().startswith(f"upgraded the index to key schema v{SCHEMA_VERSION} without encoding anything")
    after = stored_vectors(upgraded)
    assert all(np.array_equal(after[path], vector) for path, vector in before.items())
    hits = upgraded.nearest(before[next(iter(before))], k=50, where=SearchFilter(cameras=("apple iphone 12",)))
    assert hits and all(hit.path.startswith("2021/japan/") for hit in hits)
