"""Decoding photos safely into upright RGB (refused by pixel count and by the memory decoding would take, from
the header, before any pixel is decoded; decoded at a reduced scale where that is enough), and thumbnails."""

from __future__ import annotations

import io
import threading

from PIL import Image, UnidentifiedImageError

from clipsearch.ingest.files import BadPhoto

DEFAULT_MAX_PIXELS = 100_000_000
THUMBNAIL_QUALITY = 85
# A photo for the model is decoded at no less than twice its input side: enough for its resize and crop.
DECODE_MARGIN = 2
# Pillow keeps these modes in 1 or 2 bytes a pixel, every other mode in 4.
BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
UNAVERAGED_MODES = ("1", "P", "PA")  # bits and palette indexes: converted before they are shrunk
ALPHA_MODES = ("LA", "RGBA", "PA")  # shrunk through a full-size premultiplied copy (Image.reduce's way)
# Codecs that decode into a frame of their own, which Pillow then copies.
FRAME_COPYING_FORMATS = ("WEBP", "HEIF", "AVIF")
ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}  # EXIF orientation: what turns the stored pixels upright (ImageOps.exif_transpose's table)
ORIENTATION = 0x0112
# decode_photo refuses by pixel count before decoding, with the caller's limit; Pillow's own, fixed bomb
# check (a warning at 89 Mpx, an error at 179 Mpx) would make that limit wrong in both directions.
Image.MAX_IMAGE_PIXELS = None


def decode_photo(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, at_least: int | None = None, max_memory: int | None = None
) -> Image.Image:
    """Bytes to an upright RGB image, or BadPhoto with a reason a person understands.

    With `at_least`, the photo is decoded, or shrunk as soon as it is decoded, to no less than that many
    pixels a side: a JPEG at the smallest of its DCT scales (1/2, 1/4, 1/8) that is still large enough,
    other formats by a whole factor before anything else is done to them. With `max_memory` (bytes), a
    photo whose decoding would take more is refused from its header, before any pixel is decoded.
    """
    return decode_photo_scaled(data, max_pixels, at_least, max_memory)[0]


def decode_photo_scaled(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, at_least: int | None = None, max_memory: int | None = None
) -> tuple[Image.Image, tuple[int, int]]:
    """decode_photo, and the photo's full size (upright) whatever scale it was decoded at."""
    if not data:
        raise BadPhoto("empty file (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise BadPhoto("not an image (unrecognised format)") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise BadPhoto(f"unreadable image header: {error}") from None
    pixels = image.width * image.height
    if pixels > max_pixels:
        raise BadPhoto(
            f"refused as a decompression bomb: {image.width}x{image.height} = {pixels:,} pixels (limit {max_pixels:,})"
        )
    full_size = image.size
    try:
        image.seek(0)  # the first frame of an animation
        if at_least is not None and image.format == "JPEG":
            image.draft(image.mode, (at_least, at_least))
        if max_memory is not None and (needed := decoding_memory(image, full_size, at_least)) > max_memory:
            raise BadPhoto(
                f"decoding this {full_size[0]}x{full_size[1]} {image.format or 'image'} would take about "
                f"{needed / 2**20:,.0f} MiB, over the {max_memory / 2**20:,.0f} MiB a photo may use here; "
                "a smaller photo, or a JPEG, works"
            )
        orientation = image.getexif().get(ORIENTATION)
        image.load()
        upright = shrunk(image, at_least)
        del image  # the full-size pixels go as soon as the small copy is made
        if orientation in ORIENTATIONS:
            upright = upright.transpose(ORIENTATIONS[orientation])
            if orientation >= 5:  # turned a quarter: so is the full size
                full_size = full_size[::-1]
        return to_rgb(upright), full_size
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise BadPhoto(f"corrupt or truncated image: {error}") from None


def shrink_factor(size: tuple[int, int], at_least: int | None) -> int:
    """The whole factor by which an image of `size` can shrink with both sides still at least `at_least`."""
    return max(1, min(size) // at_least) if at_least else 1


def shrunk(image: Image.Image, at_least: int | None) -> Image.Image:
    """A decoded image made smaller by a whole factor (each pixel the mean of a block), sides >= at_least."""
    factor = shrink_factor(image.size, at_least)
    if factor < 2:
        return image
    if image.mode in UNAVERAGED_MODES:
        image = image.convert("L" if image.mode == "1" else "RGBA" if _transparent(image) else "RGB")
    if image.mode in BYTES_PER_PIXEL:  # 16-bit grey: reduce() does not take it, a box resize is the same mean
        size = (-(-image.width // factor), -(-image.height // factor))  # rounded up, as reduce() does
        return image.resize(size, Image.Resampling.BOX)
    return image.reduce(factor)


def _transparent(image: Image.Image) -> bool:
    return image.mode == "PA" or "transparency" in image.info


def decoding_memory(image: Image.Image, full_size: tuple[int, int], at_least: int | None) -> int:
    """About how many bytes decoding an opened image takes (at its draft scale, for a JPEG), and making it
    small enough to shrink: read from its header alone, so that a small file with a huge canvas is refused
    before it takes the memory."""
    pixels = image.width * image.height
    per_pixel = BYTES_PER_PIXEL.get(image.mode, 4)
    if shrink_factor(image.size, at_least) >= 2:
        if image.mode in UNAVERAGED_MODES:
            per_pixel += 4  # converted to 1 or 4 bytes a pixel before it is shrunk
        if image.mode in ALPHA_MODES or (image.mode == "P" and _transparent(image)):
            per_pixel += 4  # and premultiplied
    needed = pixels * per_pixel
    if image.format in FRAME_COPYING_FORMATS:
        needed += pixels * 4
    if image.format == "JPEG" and image.info.get("progressive"):
        # libjpeg keeps every DCT coefficient of a progressive JPEG, 2 bytes each, at full size whatever the
        # draft scale: per component, its share of the pixels by its sampling against the largest.
        layers = getattr(image, "layer", None) or [("", 1, 1, 0)] * 3
        most = max(h for _, h, _, _ in layers) * max(v for _, _, v, _ in layers)
        needed += sum(2 * full_size[0] * full_size[1] * h * v // most for _, h, v, _ in layers)
    return needed


# One photo query decodes at a time in a process: on a public page, uploads arriving together wait for
# each other rather than each taking its memory at once.
_DECODING_QUERY = threading.Lock()


def decode_query_photo(
    data: bytes, input_side: int, max_pixels: int = DEFAULT_MAX_PIXELS, max_memory: int | None = None
) -> Image.Image:
    """A photo to search with (an upload, or `search --image`), decoded for a model whose input is
    `input_side` pixels a side, within the given limits, one at a time in this process."""
    with _DECODING_QUERY:
        return decode_photo(data, max_pixels, at_least=DECODE_MARGIN * input_side, max_memory=max_memory)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB: transparency over white, CMYK, 16-bit and float greyscale scaled."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # Scaled by Pillow in C, 4 bytes a pixel at most: no float64 copies (8 bytes a pixel, several times over).
        wide = image.convert("F" if image.mode == "F" else "I")
        low_high = wide.getextrema()  # one band: (low, high)
        peak = float(low_high[1])  # type: ignore[arg-type]
        top = max(peak, 1.0) if image.mode == "F" else 255.0 if peak <= 255 else 65535.0
        grey = wide.point(lambda value: value * (255.0 / top))
        del wide
        return grey.convert("L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def make_thumbnail(image: Image.Image, long_side: int) -> bytes:
    """A JPEG whose longer side is at most long_side pixels."""
    thumbnail = image.copy()
    thumbnail.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    thumbnail.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return buffer.getvalue()
