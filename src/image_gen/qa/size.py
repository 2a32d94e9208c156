"""Size, aspect ratio, format and provider safety flags of a delivered image, against what the stage asked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ASPECT_TOLERANCE = 0.01
"""Relative aspect-ratio difference tolerated when only the ratio is compared (rounding to whole pixels)."""

_FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF"}


def size_reasons(delivered: tuple[int, int], asked: tuple[int, int] | None) -> list[str]:
    """Reasons the delivered size differs from the asked one (the asked size is always delivered exactly)."""
    if asked is None:
        return []
    (w, h), (aw, ah) = delivered, asked
    reasons = []
    if (w, h) != (aw, ah):
        reasons.append(f"size {w}x{h} differs from the asked {aw}x{ah}")
    err = aspect_error(delivered, asked)
    if err > ASPECT_TOLERANCE:
        reasons.append(f"aspect ratio {w / h:.3f} differs from the asked {aw / ah:.3f} ({err:.1%})")
    return reasons


def aspect_error(delivered: tuple[int, int], asked: tuple[int, int]) -> float:
    (w, h), (aw, ah) = delivered, asked
    return abs((w / h) / (aw / ah) - 1.0)


def format_reasons(delivered: str | None, asked: str | None) -> list[str]:
    if asked is None or delivered is None:
        return []
    d = _FORMAT_ALIASES.get(delivered.upper(), delivered.upper())
    a = _FORMAT_ALIASES.get(asked.upper().lstrip("."), asked.upper().lstrip("."))
    return [] if d == a else [f"format {d} differs from the asked {a}"]


def safety_reasons(flags: Mapping[str, Any] | None) -> list[str]:
    """Provider safety flags: a flag is raised when its value is True, a non-empty string or a score >= 0.5.

    ``{"nsfw": True}``, ``{"rai_reason": "violence"}`` and ``{"nsfw_score": 0.93}`` all fail;
    ``{"nsfw": False}`` and ``{"rai_reason": ""}`` pass.
    """
    reasons = []
    for name, value in (flags or {}).items():
        if isinstance(value, bool):
            raised = value
        elif isinstance(value, int | float):
            raised = value >= 0.5
        elif isinstance(value, str):
            raised = bool(value.strip())
        else:
            raised = bool(value)
        if raised:
            shown = "" if isinstance(value, bool) else f": {value}"
            reasons.append(f"provider safety flag {name}{shown}")
    return reasons
