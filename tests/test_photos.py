"""Finding photo files, decoding them to RGB, and path safety: no server, no model."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipsearch.photos import BadPhoto, decode_photo, file_under, walk_photos


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
