"""Opening images under a pixel limit: a decompression bomb never reaches memory.

``open_image`` raises ``ImageRejected`` (a ``ValueError``) for unreadable bytes and for images over
``MAX_PIXELS``; callers translate it into their own error (bad input from a user, a billed failure from a vendor).
``open_user_image`` is that translation for files a user gives: an ``InputError`` naming the file and field.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

MAX_PIXELS = int(os.environ.get("IMAGE_GEN_MAX_PIXELS", str(16384 * 16384)))
"""The largest image (width x height) image-gen opens: 268 MP by default (``IMAGE_GEN_MAX_PIXELS``)."""


class ImageRejected(ValueError):
    """The bytes are not an image image-gen will open (unreadable, or larger than ``MAX_PIXELS``)."""


def open_image(source: bytes | str | os.PathLike[str], *, max_pixels: int | None = None,
               lazy: bool = False) -> Image.Image:
    """Open and fully load an image from bytes or a path, refusing anything over ``max_pixels``.

    ``lazy``: PNG bytes are checked whole (``check_image``: every chunk's CRC, the size under the limit) and opened
    without decoding their pixels, which PIL decodes on first use; where nothing looks at the pixels (QA off, the
    size already right, the vendor's bytes stored as they came) they are never decoded. Other formats load."""
    from PIL import Image, UnidentifiedImageError

    if lazy and isinstance(source, bytes | bytearray) and source.startswith(b"\x89PNG\r\n\x1a\n"):
        check_image(bytes(source), max_pixels=max_pixels)
        return Image.open(io.BytesIO(source))
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    fp = io.BytesIO(source) if isinstance(source, bytes | bytearray) else Path(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp)
            if img.width * img.height > limit:
                raise ImageRejected(f"image is {img.width}x{img.height}, over the limit of {limit} pixels")
            img.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(f"image over the pixel limit ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(f"not a readable image ({exc})") from None
    return img


def check_image(data: bytes, *, max_pixels: int | None = None) -> tuple[int, int]:
    """The size of the encoded image ``data`` once it is known whole and readable, under ``max_pixels``; for a PNG
    without decoding its pixels (every chunk's CRC is checked through to ``IEND``, so a cut-off or garbled answer is
    caught), other formats are decoded. ``ImageRejected`` as ``open_image``."""
    from PIL import Image, UnidentifiedImageError

    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        with open_image(data, max_pixels=max_pixels) as img:
            return img.size
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                size = img.size
                if size[0] * size[1] > limit:
                    raise ImageRejected(f"image is {size[0]}x{size[1]}, over the limit of {limit} pixels")
                img.verify()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(f"image over the pixel limit ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected(f"not a readable image ({exc})") from None
    return size


def open_user_image(path: str | os.PathLike[str], field: str | None = None, *,
                    max_pixels: int | None = None) -> Image.Image:
    """Open an image file a user gave (a CLI argument, an API path) under the pixel limit, fully decoded.

    Anything unusable (missing, a folder, unreadable, truncated, not an image, over ``MAX_PIXELS``) raises
    :class:`~image_gen.errors.InputError` naming the file and ``field`` (exit code 2); nothing is changed.
    """
    from image_gen.errors import InputError

    p = Path(path)
    if not p.exists():
        raise InputError("image file not found", file=str(path), field=field)
    if not p.is_file():
        raise InputError("expected an image file, found a folder", file=str(path), field=field)
    try:
        return open_image(p, max_pixels=max_pixels)
    except ImageRejected as exc:
        raise InputError(str(exc), file=str(path), field=field) from None
