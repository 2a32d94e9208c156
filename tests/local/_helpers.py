"""Helpers of the local-provider tests: a CPU provider, a request for a pipeline folder, pixels, a loaded engine."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from image_gen.providers.base import ImageRequest, ProviderSettings
from image_gen.providers.diffusers_local import DiffusersLocalProvider
from tests.local._oom import OomInjectingProvider


def provider(**options: Any) -> DiffusersLocalProvider:
    """A CPU local provider; with ``oom_inject`` the test-only subclass that injects out-of-memory errors."""
    cls = OomInjectingProvider if "oom_inject" in options else DiffusersLocalProvider
    return cls(ProviderSettings(options={"device": "cpu", **options}))


def local_request(folder: Path, **kw: Any) -> ImageRequest:
    """A 96x64, two-step request for the pipeline in ``folder``; ``kw`` (``prompt`` and ``seed`` too) wins."""
    base: dict[str, Any] = {
        "model": f"local:{folder}",
        "vendor_model": str(folder),
        "width": 96,
        "height": 64,
        "steps": 2,
    }
    base.update(kw)
    return ImageRequest(**base)


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int16)


def loaded(folder: Path) -> Any:
    import torch

    from image_gen.providers import _local_engine

    return _local_engine.load(str(folder), torch.device("cpu"), torch.float32)
