"""Encoders for PNG, JPEG, WebP and AVIF (Pillow), with the sRGB ICC profile, DPI and provenance metadata embedded,
and a byte budget met by bisection on the quality setting.

:func:`encode_within` never guesses a quality: it encodes at the channel's quality first (the file is kept when it
fits), else bisects the integer quality range ``[min_quality, quality - 1]`` for the highest quality whose file
fits, counting every encode. File size is monotone in the quality for these encoders in practice; the search keeps
the best fitting file it has seen, so a non-monotone step can cost quality but never the budget. PNG is lossless:
it is written optimised, and when that is over the budget it is quantised to a palette, bisecting the number of
colours (256 down to 2); past that the budget cannot be met and :class:`BudgetError` says so.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}
MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "avif": "image/avif"}
XMP_PNG_KEY = "XML:com.adobe.xmp"
PNG_MIN_COLOURS = 2
WEBP_METHOD = 3
"""libwebp's effort (0-6, default 4): 3 is about a third faster than 4 for a percent or two more bytes."""


class BudgetError(ValueError):
    """The byte budget cannot be met with this format (at its lowest allowed quality)."""


@dataclass(frozen=True)
class Metadata:
    """What goes into every rendition's file besides the pixels."""

    xmp: bytes | None = None
    parameters: str | None = None
    """The AUTOMATIC1111 ``parameters`` text: a PNG text chunk; EXIF UserComment in JPEG, WebP and AVIF."""
    json_record: str | None = None
    """image-gen's JSON record (PNG ``image-gen`` chunk)."""
    dpi: int | None = None
    icc: bool = True


@dataclass
class Encoded:
    data: bytes
    quality: int | None
    """The quality used (JPEG/WebP/AVIF), the palette size of a quantised PNG, None for a lossless PNG."""
    encodes: int
    sizes: list[tuple[int | None, int]] = field(default_factory=list)
    """Every encode tried: (quality or colours, bytes), in order."""
    note: str | None = None


@lru_cache(maxsize=1)
def srgb_icc() -> bytes:
    """The sRGB ICC profile (LittleCMS's built-in sRGB), embedded in every rendition."""
    from PIL import ImageCms

    return bytes(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())


def _exif(meta: Metadata) -> bytes | None:
    from PIL import Image

    if not meta.parameters and not meta.dpi:
        return None
    exif = Image.Exif()
    if meta.dpi:
        exif[0x011A] = float(meta.dpi)  # XResolution
        exif[0x011B] = float(meta.dpi)  # YResolution
        exif[0x0128] = 2  # ResolutionUnit: inches
    if meta.parameters:
        exif[0x0131] = "image-gen"  # Software
        ifd = exif.get_ifd(0x8769)
        ifd[0x9286] = b"UNICODE\x00" + meta.parameters.encode("utf-16-be")  # UserComment, as A1111 writes it
    return bytes(exif.tobytes())


def encode(image: Image.Image, fmt: str, quality: int | None, meta: Metadata, *,
           colours: int | None = None) -> bytes:
    """One encode of ``image`` as ``fmt`` with the metadata; ``colours`` quantises a PNG to a palette."""
    from PIL.PngImagePlugin import PngInfo

    kwargs: dict[str, Any] = {}
    if meta.icc:
        kwargs["icc_profile"] = srgb_icc()
    buf = io.BytesIO()
    if fmt == "png":
        info = PngInfo()
        if meta.parameters:
            info.add_text("parameters", meta.parameters)
        if meta.json_record:
            info.add_text("image-gen", meta.json_record)
        if meta.xmp:
            info.add_itxt(XMP_PNG_KEY, meta.xmp.decode("utf-8"))
        if meta.dpi:
            kwargs["dpi"] = (meta.dpi, meta.dpi)
        img = image
        if colours is not None:
            from PIL import Image as PILImage

            img = image.quantize(colors=colours, method=PILImage.Quantize.MEDIANCUT, dither=PILImage.Dither.NONE)
        img.save(buf, format="PNG", pnginfo=info, optimize=True, **kwargs)
        return buf.getvalue()
    exif = _exif(meta)
    if exif:
        kwargs["exif"] = exif
    if meta.xmp:
        kwargs["xmp"] = meta.xmp
    q = 90 if quality is None else int(quality)
    if fmt == "jpeg":
        if meta.dpi:
            kwargs["dpi"] = (meta.dpi, meta.dpi)
        image.save(buf, format="JPEG", quality=q, optimize=True, progressive=True,
                   subsampling="4:4:4" if q >= 90 else "4:2:0", **kwargs)
    elif fmt == "webp":
        image.save(buf, format="WEBP", quality=q, method=WEBP_METHOD, **kwargs)
    elif fmt == "avif":
        image.save(buf, format="AVIF", quality=q, speed=8, **kwargs)
    else:
        raise ValueError(f"unknown format {fmt!r}; expected png, jpeg, webp or avif")
    return buf.getvalue()


def bisect_quality(size_at: Callable[[int], int], lo: int, hi: int, budget: int) -> tuple[int | None, int]:
    """The highest quality in ``[lo, hi]`` whose size is within ``budget`` and how many sizes were asked for;
    None when even ``lo`` is over. Asks ``size_at`` at most ``ceil(log2(hi - lo + 2))`` times."""
    best: int | None = None
    asked = 0
    while lo <= hi:
        mid = (lo + hi + 1) // 2
        asked += 1
        if size_at(mid) <= budget:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best, asked


def encode_within(image: Image.Image, fmt: str, meta: Metadata, *, quality: int, min_quality: int,
                  max_bytes: int | None) -> Encoded:
    """Encode within ``max_bytes`` (see the module); raises :class:`BudgetError` when it cannot be met."""
    if fmt == "png":
        return _png_within(image, meta, max_bytes)
    cache: dict[int, bytes] = {}
    sizes: list[tuple[int | None, int]] = []

    def at(q: int) -> bytes:
        if q not in cache:
            cache[q] = encode(image, fmt, q, meta)
            sizes.append((q, len(cache[q])))
        return cache[q]

    first = at(quality)
    if max_bytes is None or len(first) <= max_bytes:
        return Encoded(first, quality, len(sizes), sizes)
    best, _ = bisect_quality(lambda q: len(at(q)), min_quality, quality - 1, max_bytes)
    if best is None:
        raise BudgetError(f"{fmt.upper()} at the lowest allowed quality {min_quality} is {len(at(min_quality))} "
                          f"bytes, over the budget of {max_bytes} bytes (lower min_quality, raise max_bytes or "
                          "choose another format)")
    return Encoded(at(best), best, len(sizes), sizes, note=f"quality {best} found by bisection")


def _png_within(image: Image.Image, meta: Metadata, max_bytes: int | None) -> Encoded:
    sizes: list[tuple[int | None, int]] = []
    lossless = encode(image, "png", None, meta)
    sizes.append((None, len(lossless)))
    if max_bytes is None or len(lossless) <= max_bytes:
        return Encoded(lossless, None, 1, sizes, note="lossless")
    cache: dict[int, bytes] = {}

    def at(colours: int) -> int:
        if colours not in cache:
            cache[colours] = encode(image, "png", None, meta, colours=colours)
            sizes.append((colours, len(cache[colours])))
        return len(cache[colours])

    best, _ = bisect_quality(at, PNG_MIN_COLOURS, 256, max_bytes)
    if best is None:
        raise BudgetError(f"PNG is {len(lossless)} bytes lossless and {len(cache[PNG_MIN_COLOURS])} bytes quantised to "
                          f"{PNG_MIN_COLOURS} colours, over the budget of {max_bytes} bytes (raise max_bytes or "
                          "choose a lossy format)")
    return Encoded(cache[best], best, len(sizes), sizes,
                   note=f"lossless was {len(lossless)} bytes; quantised to {best} colours (bisection)")
