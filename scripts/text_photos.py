"""Photos with words written into them, for the tests and the benchmark of reading text: words drawn onto real
photos (several fonts, sizes, colours, a rotation), a screenshot-like image and a receipt-like one. Each
case knows the words it carries. Fonts: Debian's fonts-dejavu-core (.ci/run installs it)."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONTS = Path("/usr/share/fonts/truetype/dejavu")


def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONTS / name), size)


@dataclass(frozen=True)
class TextPhoto:
    """A photo to write: its file name, the words it carries (as typed), and how to make its JPEG bytes from
    the sample photos' folder."""

    name: str
    words: str
    make: Callable[[Path], bytes]


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def _on_photo(
    source: str, words: str, face: str, size: int, colour: tuple[int, int, int], angle: float = 0.0, band: bool = True
) -> Callable[[Path], bytes]:
    """The words drawn on a sample photo (scaled to 1600 px wide), on a darkened band or straight on it,
    turned by `angle` degrees."""

    def make(photos: Path) -> bytes:
        photo = Image.open(photos / source).convert("RGB")
        photo = photo.resize((1600, round(1600 * photo.height / photo.width)))
        lettering = font(face, size)
        left, top, right, bottom = (round(edge) for edge in lettering.getbbox(words))
        layer = Image.new("RGBA", (right - left + 40, bottom - top + 40), (0, 0, 0, 150 if band else 0))
        ImageDraw.Draw(layer).text((20 - left, 20 - top), words, font=lettering, fill=(*colour, 255))
        layer = layer.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
        photo.paste(layer, (photo.width // 8, photo.height // 3), layer)
        return _jpeg(photo)

    return make


def _screenshot(lines: list[str]) -> Callable[[Path], bytes]:
    """A settings window: a title bar, then lines of dark text on white."""

    def make(photos: Path) -> bytes:
        image = Image.new("RGB", (1280, 800), (250, 250, 252))
        draw = ImageDraw.Draw(image)
        draw.rectangle((0, 0, 1280, 56), fill=(40, 44, 52))
        draw.text((24, 14), lines[0], font=font("DejaVuSans-Bold.ttf", 26), fill=(255, 255, 255))
        for row, line in enumerate(lines[1:]):
            draw.text((48, 110 + 64 * row), line, font=font("DejaVuSans.ttf", 28), fill=(30, 30, 30))
            draw.rectangle((1100, 112 + 64 * row, 1180, 142 + 64 * row), outline=(120, 120, 120), width=2)
        return _jpeg(image)

    return make


def _receipt(lines: list[str]) -> Callable[[Path], bytes]:
    """A till receipt in a monospaced face on off-white paper, photographed slightly askew on a dark table."""

    def make(photos: Path) -> bytes:
        paper = Image.new("RGB", (560, 120 + 52 * len(lines)), (246, 242, 232))
        draw = ImageDraw.Draw(paper)
        for row, line in enumerate(lines):
            draw.text((36, 50 + 52 * row), line, font=font("DejaVuSansMono.ttf", 30), fill=(40, 40, 40))
        table = Image.new("RGB", (1200, 1200), (58, 46, 38))
        turned = paper.rotate(4, expand=True, fillcolor=(58, 46, 38), resample=Image.Resampling.BICUBIC)
        table.paste(turned, ((1200 - turned.width) // 2, (1200 - turned.height) // 2))
        return _jpeg(table)

    return make


# The sample photos the words are drawn on are ones CLIP would not rank first for these words.
TEXT_PHOTOS = [
    TextPhoto("sign-exit.jpg", "EXIT 12",
              _on_photo("giraffe.jpg", "EXIT 12", "DejaVuSans-Bold.ttf", 96, (255, 220, 0))),
    TextPhoto("bakery.jpg", "Zanzibar Bakery",
              _on_photo("cathedral.jpg", "Zanzibar Bakery", "DejaVuSerif.ttf", 72, (255, 255, 255))),
    TextPhoto("turned.jpg", "Harbour Ferry",
              _on_photo("farm-animals-cat.jpg", "Harbour Ferry", "DejaVuSans.ttf", 80, (255, 255, 255), angle=8)),
    TextPhoto("plain.jpg", "Quantum Noodles",
              _on_photo("monuments-berlincathedral.jpg", "Quantum Noodles", "DejaVuSansCondensed-Bold.ttf", 64,
                        (20, 20, 20), band=False)),
    TextPhoto("small.jpg", "Platform Nine",
              _on_photo("cathedral.jpg", "Platform Nine", "DejaVuSans-Bold.ttf", 40, (120, 255, 255))),
    TextPhoto("screenshot.jpg", "Preferences Wireless Bluetooth Notifications Battery",
              _screenshot(["Preferences", "Wireless", "Bluetooth", "Notifications", "Battery"])),
    TextPhoto("receipt.jpg", "Corner Grocery Oranges Coffee Total 17.40",
              _receipt(["Corner Grocery", "Oranges   3.20", "Coffee    14.20", "Total     17.40"])),
]  # fmt: skip


def write_text_photos(photos: Path, folder: Path) -> dict[str, str]:
    """Writes every TEXT_PHOTOS case into `folder`; returns each file's name and the words it carries."""
    folder.mkdir(parents=True, exist_ok=True)
    for case in TEXT_PHOTOS:
        (folder / case.name).write_bytes(case.make(photos))
    return {case.name: case.words for case in TEXT_PHOTOS}
