"""A pipeline's calls wait for a vendor's places with their stage's index as priority: a brief's later stages go
before new briefs' first stages (see ``providers._limits.Places``)."""

from __future__ import annotations

from pathlib import Path

from image_gen.config import load_config
from image_gen.pipeline.runner import Brief, Runner
from image_gen.providers import _limits, register_provider
from image_gen.providers.base import ImageRequest, ImageResult
from image_gen.providers.sim import SimProvider
from image_gen.workspace import Workspace


class Recording(SimProvider):
    name = "recording-priority"
    seen: list[tuple[str, int]] = []

    def is_configured(self) -> bool:
        return True

    def generate(self, request: ImageRequest) -> ImageResult:
        Recording.seen.append((request.operation, _limits.current_priority()))
        return super().generate(ImageRequest(**{**request.__dict__, "model": "sd3.5-medium"}))


def test_each_stage_calls_with_its_index_as_priority(tmp_path: Path) -> None:
    register_provider(Recording.name, Recording)
    Recording.seen = []
    cfg = load_config({
        "models": {"vendor-x": {"provider": Recording.name, "vendor_model": "X-1", "price_per_image": 0.01,
                                "capabilities": ["txt2img", "img2img"]}},
        "pipeline": {"stages": ["draft:vendor-x", "layout:vendor-x", "final:vendor-x"], "width": 128,
                     "height": 128, "qa": {"enabled": False}},
    })
    out = Runner(Workspace(tmp_path / "ws"), cfg, simulate=False).start(Brief("a tin of tea"))
    assert out.status == "completed", out.reason
    assert Recording.seen == [("generate", 0), ("img2img", 1), ("img2img", 2)]
    assert _limits.current_priority() == 0  # nothing leaks out of the run
