"""A vendor's PNG opened lazily: checked whole first (every chunk's CRC, the pixel limit), its pixels decoded only
when something looks at them; anything cut off, garbled or too large is refused as at a full decode."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from image_gen.imaging.images import ImageRejected, open_image
from image_gen.providers.base import GeneratedImage


def _png(size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 60)).save(buf, format="PNG")
    return buf.getvalue()


def test_lazy_png_is_not_decoded_until_used_and_then_has_its_pixels() -> None:
    img = GeneratedImage(_png()).to_pil(lazy=True)
    assert (img.size, img.mode, img.format) == ((64, 48), "RGB", "PNG")
    assert img._im is None  # nothing decoded yet (PIL makes its core image when it loads)
    assert img.getpixel((3, 3)) == (200, 30, 60)
    assert img._im is not None


@pytest.mark.parametrize("damage", ["cut", "crc", "not-an-image"])
def test_lazy_open_refuses_what_a_full_decode_refuses(damage: str) -> None:
    png = _png()
    if damage == "cut":
        bad = png[: len(png) * 2 // 3]
    elif damage == "crc":  # one byte of the pixel data changed: its chunk's CRC no longer matches
        at = png.index(b"IDAT") + 10
        bad = png[:at] + bytes([png[at] ^ 0xFF]) + png[at + 1:]
    else:
        bad = b"\x89PNG\r\n\x1a\n" + b"garbage" * 20
    with pytest.raises(ImageRejected):
        open_image(bad, lazy=True)
    with pytest.raises(ImageRejected):
        open_image(bad)


def test_lazy_open_keeps_the_pixel_limit() -> None:
    with pytest.raises(ImageRejected, match="over the limit"):
        open_image(_png((300, 300)), lazy=True, max_pixels=200 * 200)


def test_other_formats_are_decoded_at_once() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (20, 10), "white").save(buf, format="JPEG")
    img = open_image(buf.getvalue(), lazy=True)
    assert img._im is not None and img.size == (20, 10)
