"""The adapter name table (a leaf, data only): adapter name -> ``"module:function"``.

Config validation reads the names here without importing the pipeline; :mod:`image_gen.pipeline.adapters`
imports the function a name points at only when a stage runs it.
"""

from __future__ import annotations

ADAPTERS: dict[str, str] = {
    "color-match": "image_gen.pipeline.finishing:color_match",
    "typography-preserve": "image_gen.pipeline.finishing:typography_preserve",
}


def adapter_names() -> set[str]:
    """The names a stage's ``adapters`` list may use."""
    return set(ADAPTERS)


def register_adapter(name: str, target: str) -> None:
    """Add an adapter by name: ``target`` is ``"module:function"``, called as ``fn(image, ctx)``."""
    ADAPTERS[name] = target
