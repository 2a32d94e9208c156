"""Pixel measurements shared by the simulator tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from image_gen.providers._sim_scene import draw_scene, layout, parse_scene
from image_gen.providers.sim import quoted_texts

BRIEFS_FILE = Path(__file__).resolve().parents[2] / "examples" / "prompts.txt"


def example_briefs() -> list[str]:
    return [ln.strip() for ln in BRIEFS_FILE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def foreground(prompt: str, size: int = 384, quality: float = 0.8) -> tuple[Any, np.ndarray]:
    """(the render, the product's silhouette): pixels that differ from the same set drawn without the product."""
    spec = parse_scene(prompt, quoted_texts(prompt))
    img = draw_scene(spec, size, size, quoted_texts(prompt), quality, 1)
    bare = draw_scene(spec, size, size, [], quality, 1, with_product=False)
    diff = np.abs(np.asarray(img, np.float32) - np.asarray(bare, np.float32)).sum(axis=-1)
    return img, diff > 40


def body_colour(prompt: str, image: Any) -> np.ndarray:
    """Median colour of the product's body below its label (caps, foil ends and the label left out)."""
    spec = parse_scene(prompt, quoted_texts(prompt))
    w, h = image.size
    _, mask = foreground(prompt, size=w)
    _, y0, _, y1 = bbox(mask)
    label_bottom = round(layout(spec, w, h).label[3])
    keep = np.zeros_like(mask)
    keep[label_bottom + max(2, h // 60): y1 - max(2, (y1 - y0) // 12)] = True
    return np.median(np.asarray(image.convert("RGB"), np.float32)[mask & keep], axis=0)


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
