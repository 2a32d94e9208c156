"""image-gen: staged, QA-checked, budgeted image generation with an experiment registry.

The public API lives in :mod:`image_gen.api` (``from image_gen import api``); its main functions are also
reachable here. Imports are lazy so that ``image-gen --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

__all__ = ["api", "generate", "generate_pipeline", "load_config", "run_pipeline", "upscale_image"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    from importlib import import_module

    if name == "api":
        return import_module("image_gen.api")
    if name in ("generate", "generate_pipeline", "load_config", "run_pipeline", "upscale_image"):
        return getattr(import_module("image_gen.api"), name)
    raise AttributeError(name)
