"""Delivery channels: the named presets and the schema of a user's ``[channels.NAME]`` (data, like the catalog).

A channel says what one rendition of a final asset looks like: its exact size, file format, byte budget, print
resolution and how the asset is fitted into its frame. ``image_gen.delivery`` makes the renditions; this module
only describes them, so the config schema can check ``pipeline.deliver`` and ``[channels.NAME]`` at load time.

Fit modes (``fit``):

- ``crop``: a text-aware smart crop. The window keeps every OCR'd label box (with ``margin``) and, of the windows
  that do, the one holding the most saliency. When no window of the channel's aspect ratio inside the image can
  hold the labels, the frame is widened just enough to hold them and the part outside the image is filled as
  ``extend`` says (``letterbox`` or ``outpaint``).
- ``letterbox``: the whole image, scaled to fit, on a plain background (``background``).
- ``outpaint``: the whole image, scaled to fit, the bands around it painted by the final stage's model
  (image-to-image through the pipeline's call path, so the budget and the ledger hold).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Format = Literal["png", "jpeg", "webp", "avif"]
FitMode = Literal["crop", "letterbox", "outpaint"]
EXTENSIONS: dict[str, str] = {"png": "png", "jpeg": "jpg", "webp": "webp", "avif": "avif"}
MAX_SIDE = 16384
_HEX = re.compile(r"^#?[0-9a-fA-F]{6}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ChannelSettings(BaseModel):
    """One channel: ``[channels.NAME]`` in a config, or a named preset."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    width: int = Field(gt=0, le=MAX_SIDE, description="Rendition width in pixels")
    height: int = Field(gt=0, le=MAX_SIDE, description="Rendition height in pixels")
    format: Format = Field(default="jpeg", description="png, jpeg, webp or avif (jpg is read as jpeg)")
    max_bytes: int | None = Field(
        default=None, gt=0, description="Byte budget of the file (metadata and any C2PA manifest included); the "
        "encoder's quality is found by bisection to meet it")
    dpi: int | None = Field(default=None, ge=1, le=4800, description="Print resolution written into the file")
    fit: FitMode = Field(default="crop", description="crop (text-aware smart crop), letterbox or outpaint")
    extend: Literal["letterbox", "outpaint"] = Field(
        default="letterbox", description="crop only: how the frame is filled when the labels cannot fit a crop")
    quality: int | None = Field(
        default=None, ge=1, le=100, description="Encoder quality without a byte budget (and the highest one tried "
        "with a budget); default 90 (JPEG, WebP), 80 (AVIF)")
    min_quality: int = Field(default=30, ge=1, le=100, description="The lowest quality the budget search may use")
    margin: float = Field(default=0.04, ge=0, le=0.25,
                          description="Space kept around the label boxes, as a fraction of the image's shorter side")
    background: str = Field(default="auto", description="Letterbox colour: auto (the image's border) or #RRGGBB")
    description: str | None = None

    @field_validator("format", mode="before")
    @classmethod
    def _format(cls, v: object) -> object:
        if isinstance(v, str):
            low = v.strip().lower()
            return {"jpg": "jpeg"}.get(low, low)
        return v

    @field_validator("background")
    @classmethod
    def _background(cls, v: str) -> str:
        if v != "auto" and not _HEX.match(v):
            raise ValueError("expected auto or a colour #RRGGBB")
        return v

    @model_validator(mode="after")
    def _checks(self) -> ChannelSettings:
        if self.width * self.height > MAX_SIDE * MAX_SIDE:
            raise ValueError(f"{self.width}x{self.height} is over 268 megapixels")
        if max(self.width, self.height) > 64 * min(self.width, self.height):
            raise ValueError(f"{self.width}x{self.height} is more elongated than 64:1")
        if self.quality is not None and self.quality < self.min_quality:
            raise ValueError(f"quality {self.quality} is below min_quality {self.min_quality}")
        return self

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]

    @property
    def encoder_quality(self) -> int:
        """The quality used without a budget, and the first one tried with one."""
        if self.quality is not None:
            return self.quality
        return 80 if self.format == "avif" else 90


def _a4(dpi: int) -> tuple[int, int]:
    """A4 (210 x 297 mm) in pixels at ``dpi``."""
    return round(210 / 25.4 * dpi), round(297 / 25.4 * dpi)


_A4_W, _A4_H = _a4(300)

PRESETS: dict[str, ChannelSettings] = {
    "web-hero": ChannelSettings(width=1920, height=1080, format="webp", max_bytes=400_000,
                                description="Website hero banner, 16:9"),
    "square": ChannelSettings(width=1080, height=1080, format="jpeg", max_bytes=300_000,
                              description="Social feed post, 1:1"),
    "portrait": ChannelSettings(width=1080, height=1350, format="jpeg", max_bytes=350_000,
                                description="Social feed portrait post, 4:5"),
    "story": ChannelSettings(width=1080, height=1920, format="jpeg", max_bytes=400_000, extend="outpaint",
                             description="Stories and reels, 9:16"),
    "og-image": ChannelSettings(width=1200, height=630, format="jpeg", max_bytes=250_000,
                                description="Link preview (Open Graph), 1.91:1"),
    "thumbnail": ChannelSettings(width=400, height=400, format="webp", max_bytes=40_000,
                                 description="Catalogue thumbnail"),
    "leaderboard": ChannelSettings(width=728, height=90, format="png", max_bytes=150_000,
                                   description="IAB leaderboard display ad (150 KB initial load)"),
    "billboard": ChannelSettings(width=970, height=250, format="jpeg", max_bytes=150_000,
                                 description="IAB billboard display ad (150 KB initial load)"),
    "print-a4": ChannelSettings(width=_A4_W, height=_A4_H, format="jpeg", dpi=300, quality=95, extend="outpaint",
                                description="A4 portrait print at 300 DPI (2480x3508)"),
    "print-a4-landscape": ChannelSettings(width=_A4_H, height=_A4_W, format="jpeg", dpi=300, quality=95,
                                          extend="outpaint", description="A4 landscape print at 300 DPI"),
}
"""The named presets. A ``[channels.NAME]`` of the same name replaces a preset."""


def check_channel_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"expected a channel name of letters, digits, '_', '.' or '-', got {name!r}")
    return name


def known_channels(user: dict[str, ChannelSettings] | None = None) -> dict[str, ChannelSettings]:
    """Every channel a config can name: the presets, then its own (which win)."""
    return {**PRESETS, **(user or {})}


def resolve_channels(names: list[str], user: dict[str, ChannelSettings] | None = None) -> list[tuple[str,
                                                                                                      ChannelSettings]]:
    """``(name, settings)`` of each named channel, in order, duplicates dropped; ``KeyError`` names an unknown one."""
    known = known_channels(user)
    out: list[tuple[str, ChannelSettings]] = []
    for name in names:
        if name not in known:
            raise KeyError(unknown_channel_message(name, user))
        if all(name != n for n, _ in out):
            out.append((name, known[name]))
    return out


def unknown_channel_message(name: str, user: dict[str, ChannelSettings] | None = None) -> str:
    return (f"unknown channel {name!r}; known channels: {', '.join(sorted(known_channels(user)))} "
            "(or define [channels.NAME] in the config)")
