"""Finding photo files, decoding them to RGB, and path safety: no server, no model."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipsearch.ingest.decoding import decode_photo, decode_photo_scaled
from clipsearch.ingest.facts import read_facts
from clipsearch.ingest.files import BadPhoto, file_under, folders_of, read_file, walk_photos


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


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
    assert decode_photo(png_bytes(rgba)).getpixel((0, 0)) == (255, 255, 255)  # transparent over white
    half = Image.new("RGBA", (4, 4), (0, 0, 0, 128))
    assert decode_photo(png_bytes(half)).getpixel((0, 0)) == (127, 127, 127)
    sixteen = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert decode_photo(png_bytes(sixteen)).getpixel((0, 0)) == (255, 255, 255)
    dim16 = Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16))
    assert decode_photo(png_bytes(dim16)).getpixel((0, 0)) == (127, 127, 127)


def test_decode_refuses_with_reasons() -> None:
    with pytest.raises(BadPhoto, match="empty file"):
        decode_photo(b"")
    with pytest.raises(BadPhoto, match="not an image"):
        decode_photo(b"plain text")
    with pytest.raises(BadPhoto, match="decompression bomb"):
        decode_photo(png_bytes(Image.new("L", (300, 300))), max_pixels=10_000)


def test_walk_gives_one_record_per_photo_and_per_problem(tmp_path: Path) -> None:
    (tmp_path / "b" / ".hidden").mkdir(parents=True)
    for name in ("b/two.JPG", "a.png", "notes.txt", ".dot.jpg", "b/.hidden/three.jpg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    found = {entry.relpath: entry for entry in walk_photos(tmp_path)}
    assert set(found) == {"a.png", "b/two.JPG", "gone.jpg"}
    assert found["a.png"].problem is None and found["a.png"].size == 1
    assert found["gone.jpg"].problem is not None and "cannot stat" in found["gone.jpg"].problem


def test_max_pixels_is_the_limit_in_both_directions() -> None:
    """Pillow's own bomb check warns at 89 Mpx and refuses at 179 Mpx whatever the caller asked for."""
    big = png_bytes(Image.new("1", (11_000, 8_700)))  # 95.7 Mpx in a few KiB
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert decode_photo(big, max_pixels=100_000_000).size == (11_000, 8_700)
    with pytest.raises(BadPhoto, match=r"11000x8700 = 95,700,000 pixels \(limit 50,000,000\)"):
        decode_photo(big, max_pixels=50_000_000)


def test_sixteen_bit_photos_convert_without_float64_copies(tmp_path: Path) -> None:
    """Measured on 12 Mpx: 300 MB above the process's peak through float64 (main before this change),
    150 MB now. A fresh process, so that the peak is this decode's alone."""
    ramp = np.add.outer(np.arange(3000), np.arange(4000)) * 7 % 65536
    Image.fromarray(ramp.astype(np.uint16)).save(tmp_path / "sixteen.png")
    script = (
        "import resource, sys; from clipsearch.ingest.decoding import decode_photo; "
        "data = open(sys.argv[1], 'rb').read(); before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
        "image = decode_photo(data); "
        "print(image.mode, image.size, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)"
    )
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "sixteen.png")], capture_output=True, text=True)
    mode, *size, rise_mb = run.stdout.replace("(", "").replace(")", "").replace(",", "").split()
    assert (mode, size) == ("RGB", ["4000", "3000"]), run.stderr
    assert int(rise_mb) < 200, f"decoding 12 Mpx of 16-bit grey raised the peak by {rise_mb} MB"


def test_symlinks_that_leave_the_photo_folder_are_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    (tmp_path / "secret.jpg").write_bytes(b"x")
    (root / "inside.jpg").write_bytes(b"x")
    (root / "leak.jpg").symlink_to(tmp_path / "secret.jpg")
    (root / "alias.jpg").symlink_to(root / "inside.jpg")
    assert file_under(root, "leak.jpg") is None
    assert file_under(root, "alias.jpg") == (root / "inside.jpg").resolve()


def test_read_file_refuses_pipes_devices_and_oversized_files(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(BadPhoto, match="not a regular file"):
        read_file(tmp_path / "pipe.jpg")  # returns at once: no writer is waited for
    with pytest.raises(BadPhoto, match="not a regular file"):
        read_file(Path("/dev/zero"))
    (tmp_path / "big.jpg").write_bytes(b"x" * 1001)
    with pytest.raises(BadPhoto, match="over the limit of 1,000"):
        read_file(tmp_path / "big.jpg", max_bytes=1000)
    assert read_file(tmp_path / "big.jpg", max_bytes=1001) == b"x" * 1001


def test_a_large_jpeg_decodes_at_the_smallest_scale_that_is_large_enough(camera_jpeg) -> None:
    data = camera_jpeg(4032, 3024)
    image, full = decode_photo_scaled(data, at_least=448)
    assert full == (4032, 3024)
    assert image.size == (1008, 756)  # a quarter: an eighth (504x378) would be under 448
    assert decode_photo(data).size == (4032, 3024)  # without at_least: every pixel
    turned, full = decode_photo_scaled(camera_jpeg(4032, 3024, orientation=6), at_least=448)
    assert turned.size == (756, 1008) and full == (3024, 4032)  # upright, and so is the full size
    image, full = decode_photo_scaled(camera_jpeg(400, 300), at_least=448)
    assert image.size == full == (400, 300)  # already small: decoded whole


def test_png_and_others_shrink_by_a_whole_factor_as_soon_as_decoded() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (2000, 1000), "red").save(buffer, "PNG")
    image, full = decode_photo_scaled(buffer.getvalue(), at_least=224)
    assert full == (2000, 1000) and image.size == (500, 250)  # a fifth would leave 200 < 224
    assert decode_photo(buffer.getvalue()).size == (2000, 1000)  # without at_least: every pixel


def test_shrinking_before_compositing_gives_the_same_pixels() -> None:
    """A transparent photo shrunk (premultiplied box means) then put on white equals the photo put on white,
    then shrunk: the order saves the full-size copies, not the pixels."""
    rng = np.random.default_rng(4)
    rgba = Image.fromarray(rng.integers(0, 256, (900, 1200, 4), dtype=np.uint8), "RGBA")
    shrunk = np.asarray(decode_photo(png_bytes(rgba), at_least=224), dtype=np.int16)
    on_white = np.asarray(decode_photo(png_bytes(rgba)).reduce(4), dtype=np.int16)
    assert shrunk.shape == on_white.shape == (225, 300, 3)
    assert np.abs(shrunk - on_white).max() <= 2


@pytest.mark.parametrize("mode", ["P", "1", "I;16", "LA", "RGBA", "L"])
def test_every_mode_shrinks_to_rgb(mode: str) -> None:
    image = decode_photo(png_bytes(Image.new(mode, (1000, 700))), at_least=224)
    assert image.mode == "RGB" and image.size == (334, 234)  # a third, rounded up


def test_an_orientation_turns_the_shrunk_photo(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side: turn it a quarter clockwise
    picture = Image.new("RGB", (1200, 900), "blue")
    picture.paste("white", (0, 0, 100, 100))  # the stored top left corner
    buffer = io.BytesIO()
    picture.save(buffer, "PNG", exif=exif)
    image, full = decode_photo_scaled(buffer.getvalue(), at_least=224)
    assert image.size == (225, 300) and full == (900, 1200)
    assert image.getpixel((224, 0)) == (255, 255, 255), "the stored top left is now the top right"


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The issue's small uploads that decode to a gigabyte: a 7071x7071 RGBA PNG, the same canvas in 16-bit
    grey, a progressive JPEG of it, and a 4000x3000 RGBA PNG that is in bounds."""
    folder = tmp_path_factory.mktemp("hostile")
    side = 7071
    files = {name: folder / name for name in ("rgba.png", "grey16.png", "progressive.jpg", "rgba-12mpx.png")}
    Image.new("RGBA", (side, side), (10, 200, 30, 128)).save(files["rgba.png"])
    Image.new("I;16", (side, side), 300).save(files["grey16.png"])
    Image.new("RGB", (side, side), (10, 200, 30)).save(files["progressive.jpg"], "JPEG", progressive=True, quality=50)
    Image.new("RGBA", (4000, 3000), (10, 200, 30, 128)).save(files["rgba-12mpx.png"])
    return files


# Decodes the files named in argv as the page decodes uploads (its default limits, one thread per file, all
# at once), in a process of its own; prints the peak's rise over the RSS before, the CPU seconds, and each
# outcome. The peak is VmHWM, this address space's own: ru_maxrss keeps the forking parent's size across exec.
DECODE_UPLOADS = """
import sys, threading, time
from clipsearch.ingest.decoding import decode_query_photo
from clipsearch.ingest.files import BadPhoto
from clipsearch.settings import Settings
limits = Settings()
files = [open(path, "rb").read() for path in sys.argv[1:]]
outcomes = []
def decode(data):
    try:
        image = decode_query_photo(data, 224, limits.upload_max_pixels, limits.upload_max_memory_mb << 20)
        outcomes.append(str(image.size))
    except BadPhoto as error:
        outcomes.append("refused: " + str(error))
rss = int(open("/proc/self/statm").read().split()[1]) * 4096
started = time.process_time()
threads = [threading.Thread(target=decode, args=(data,)) for data in files]
[thread.start() for thread in threads]
[thread.join() for thread in threads]
peak = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
rise = peak - rss
print(rise >> 20, round(time.process_time() - started, 2), "|".join(outcomes))
"""


def decode_uploads(*paths: Path) -> tuple[int, float, list[str]]:
    run = subprocess.run([sys.executable, "-c", DECODE_UPLOADS, *map(str, paths)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    rise_mb, cpu_s, outcomes = run.stdout.strip().split(" ", 2)
    return int(rise_mb), float(cpu_s), outcomes.split("|")


def test_a_small_upload_never_decodes_to_a_gigabyte(hostile_files: dict[str, Path]) -> None:
    """On main the first three raised the peak by 1,146, 622 and 148 MB (2.8 s of CPU for the first)."""
    files = hostile_files
    for name in ("rgba.png", "grey16.png", "progressive.jpg", "rgba-12mpx.png"):
        rise_mb, cpu_s, [outcome] = decode_uploads(files[name])
        assert rise_mb < 200 and cpu_s < 1.0, (name, rise_mb, cpu_s, outcome)
        if name in ("rgba.png", "progressive.jpg"):
            assert outcome.startswith("refused: decoding this 7071x7071") and "MiB" in outcome, outcome
        else:
            assert outcome.startswith("("), outcome  # decoded: a size


def test_uploads_that_arrive_together_decode_one_at_a_time(hostile_files: dict[str, Path]) -> None:
    """Four 16-bit uploads at once take the memory of one: each would take about 100 MB."""
    files = hostile_files
    one, _, _ = decode_uploads(files["grey16.png"])
    four, _, outcomes = decode_uploads(*[files["grey16.png"]] * 4)
    assert outcomes == ["(472, 472)"] * 4  # 7071 / 15, rounded up: the last block is part of a block
    assert one > 50 and four < 1.5 * one, (one, four)


def jpeg_with_exif(exif: Image.Exif | bytes | None) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", (64, 48), "green")
    image.save(buffer, "JPEG", **({} if exif is None else {"exif": exif}))
    return buffer.getvalue()


def camera_exif(taken: str, offset: str | None = None, gps: bool = False) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Apple", "iPhone 12"
    details = exif.get_ifd(0x8769)
    details[0x9003] = taken
    if offset is not None:
        details[0x9011] = offset
    if gps:
        exif.get_ifd(0x8825).update({1: "N", 2: (35.0, 39.0, 29.16), 3: "E", 4: (139.0, 42.0, 3.6)})
    return exif


def test_facts_from_exif_with_an_offset_without_one_and_without_exif() -> None:
    facts = read_facts(jpeg_with_exif(camera_exif("2021:07:14 18:30:05", "+09:00", gps=True)), 0.0)
    assert (facts.taken_from, facts.taken_iso(), facts.camera) == (
        "exif",
        "2021-07-14T18:30:05+09:00",
        "Apple iPhone 12",
    )
    assert facts.latitude == pytest.approx(35.6581, abs=1e-4) and facts.longitude == pytest.approx(139.701, abs=1e-3)
    facts = read_facts(jpeg_with_exif(camera_exif("2019:12:31 23:59:59")), 0.0)
    assert (facts.taken_iso(), facts.offset, facts.latitude) == ("2019-12-31T23:59:59", "", None)
    mtime = datetime(2020, 2, 3, 4, 5, 6).timestamp()  # the file's time, on this machine's clock
    facts = read_facts(jpeg_with_exif(None), mtime)
    assert (facts.taken_from, facts.taken_iso(), facts.camera) == ("file", "2020-02-03T04:05:06", "")


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow's; clipsearch.ingest.facts silences it outside pytest
def test_a_broken_exif_block_gives_the_file_time_and_no_error() -> None:
    mtime = datetime(2020, 2, 3, 4, 5, 6).timestamp()
    for broken in (b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff", b"Exif\x00\x00garbage" * 10):
        facts = read_facts(jpeg_with_exif(broken), mtime)
        assert facts.taken_from == "file" and facts.taken_iso() == "2020-02-03T04:05:06"
    assert read_facts(jpeg_with_exif(camera_exif("not a date", "+9")), mtime).taken_from == "file"


def test_folders_of_a_photo_take_in_every_parent() -> None:
    assert folders_of("2021/japan/kyoto/x.jpg") == ["2021", "2021/japan", "2021/japan/kyoto"]
    assert folders_of("x.jpg") == []
