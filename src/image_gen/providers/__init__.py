"""Provider registry: built-in and third-party providers register through the ``image_gen.providers`` entry point.

A provider class is constructed as ``cls(settings: ProviderSettings)``. Adding a vendor is one module plus one
line in ``pyproject.toml`` (``[project.entry-points."image_gen.providers"]``).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from image_gen.providers.base import (
    AuthenticationFailed,
    BadRequest,
    ContentFiltered,
    GeneratedImage,
    ImageRequest,
    ImageResult,
    NotConfigured,
    OutOfMemory,
    Provider,
    ProviderError,
    ProviderSettings,
    RateLimited,
    Transient,
)

__all__ = [
    "AuthenticationFailed",
    "BadRequest",
    "ContentFiltered",
    "GeneratedImage",
    "ImageRequest",
    "ImageResult",
    "NotConfigured",
    "OutOfMemory",
    "Provider",
    "ProviderError",
    "ProviderSettings",
    "RateLimited",
    "Transient",
    "available_providers",
    "load_provider_class",
    "register_provider",
]

_EXTRA: dict[str, Any] = {}


@cache
def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group="image_gen.providers")}


def available_providers() -> list[str]:
    return sorted(set(_entry_points()) | set(_EXTRA))


def register_provider(name: str, cls: Any) -> None:
    """Register a provider class at run time (tests, notebooks), consulted before entry points; ``None`` removes
    the registration. Entry points are the normal way."""
    if cls is None:
        _EXTRA.pop(name, None)
    else:
        _EXTRA[name] = cls


def load_provider_class(name: str) -> Any:
    if name in _EXTRA:
        return _EXTRA[name]
    eps = _entry_points()
    if name not in eps:
        raise NotConfigured(
            f"no provider named {name!r} is installed (installed: {', '.join(available_providers())})"
        )
    return eps[name].load()
