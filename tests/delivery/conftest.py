"""Shared, module-scoped runs of the simulator's staged pipeline at a small final size (384 px): delivery tests
deliver from them instead of rendering again."""

from __future__ import annotations

from typing import Any

SIZE = 384
FOUR = ["web-hero", "square", "portrait", "story"]


def scaled_presets(names: list[str] = FOUR, side: int = SIZE) -> dict[str, dict[str, Any]]:
    """``[channels.NAME]`` replacing presets by the same aspect ratio, format and bytes per pixel, sized to the
    preset's crop window of a ``side`` px final (so each rendition is that window at 1:1, as a 2048 px final reduced
    into the full-size presets is near 1:1; a 384 px final blown up 5x into 1920x1080 is soft, and QA says so)."""
    from image_gen.channels import PRESETS
    from image_gen.delivery.crop import aspect_window

    out = {}
    for name in names:
        p = PRESETS[name]
        w, h = aspect_window(side, side, p.width / p.height)
        budget = None if p.max_bytes is None else max(4000, round(p.max_bytes * w * h / (p.width * p.height)))
        out[name] = {"width": w, "height": h, "format": p.format, "max_bytes": budget, "fit": p.fit,
                     "extend": p.extend}
    return out


def pipeline_config(*, deliver: list[str] | None = None, channels: dict[str, Any] | None = None,
                    gate: bool = False, provenance: dict[str, Any] | None = None,
                    budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """A two-stage simulated pipeline (draft -> final) at ``SIZE`` px with defects off (the sim's typo and soft rates
    are 0, so every final's label is legible and the renditions' QA tests the crop, not the simulator's dice)."""
    final: dict[str, Any] = {"strength": 0.35}
    if gate:
        final["gate"] = "approval"
    cfg: dict[str, Any] = {
        "name": "delivery-test", "simulate": True,
        "pipeline": {"model": "staged-selection", "stages": ["draft:ideogram-v1-turbo", "final:sd3.5-medium"],
                     "width": SIZE, "height": SIZE, "deliver": list(deliver or [])},
        "stage": {"draft": {"seed": 42, "qa": {"enabled": False}}, "final": final},
        "sim": {"typo_rate": 0.0, "soft_rate": 0.0, "fail_rate": 0.0},
        "retry": {"initial_s": 0.0, "max_s": 0.0},
    }
    if channels:
        cfg["channels"] = channels
    if provenance:
        cfg["provenance"] = provenance
    if budget:
        cfg["budget"] = budget
    return cfg
