"""Named adapters a stage runs on its output (``adapters = ["color-match", "typography-preserve"]``).

The name table (:mod:`image_gen.adapter_table`) maps a name to ``"module:function"`` so listing names imports
nothing heavy. An adapter is called as
``fn(image, ctx) -> AdapterResult``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any, Protocol

from image_gen.adapter_table import ADAPTERS, adapter_names, register_adapter

if TYPE_CHECKING:
    from PIL import Image


@dataclass
class AdapterContext:
    prompt: str
    expected_texts: list[str]
    stage_name: str
    previous_image: Image.Image | None = None
    """The image this stage started from (the previous stage's output), if any."""
    layout_image: Image.Image | None = None
    """The output of the latest earlier stage whose model is typography-strong (else the previous image)."""
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class AdapterResult:
    image: Image.Image
    record: dict[str, Any] = field(default_factory=dict)
    """What the adapter did, for the registry (e.g. which text regions were restored)."""


__all__ = [
    "ADAPTERS",
    "Adapter",
    "AdapterContext",
    "AdapterResult",
    "adapter_names",
    "get_adapter",
    "register_adapter",
]


class Adapter(Protocol):
    def __call__(self, image: Image.Image, ctx: AdapterContext) -> AdapterResult: ...


def get_adapter(name: str) -> Adapter:
    module, _, attr = ADAPTERS[name].partition(":")
    fn: Adapter = getattr(import_module(module), attr)
    return fn
