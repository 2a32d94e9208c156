"""Opening images under a pixel limit: a decompression bomb never reaches memory.

``open_image`` raises ``ImageRejected`` (a ``ValueError``) for unreadable bytes and for images over
``MAX_PIXELS``; callers translate it into their own error (bad input from a user, a billed failure from a vendor).
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


def open_image(source: bytes | str | os.PathLike[str], *, max_pixels: int | None = None) -> Image.Image:
    """Open and fully load an image from bytes or a path, refusing anything over ``max_pixels``."""
    from PIL import Image, UnidentifiedImageError

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
