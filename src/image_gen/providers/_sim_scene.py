"""The simulator's scenes: what a brief asks for (product, colours, surface, props) and how it is drawn.

:func:`parse_scene` reads a brief into a :class:`SceneSpec`: the product it names (bottle, dropper bottle, can,
bag or pouch, box or carton, shoe box, tube, tin, jar, bar, cup; a plain package when none is named), the colour
words of the product (``matte black``, ``amber glass``, ``red`` ...), the surface it stands on (marble, wood,
concrete, ice, sand, stone, fabric; a studio sweep otherwise), the light and a few props (citrus slices, ice,
coffee beans). :func:`draw_scene` renders it at a *quality* between 0 and 1 that comes from the model:

- rough (a turbo draft, quality near 0): rendered at half resolution and scaled up, aliased shapes, flat shading
  in a few bands, faint textures, blotchy noise (in brightness only);
- finished (quality near 1): anti-aliased shapes (masks drawn at 4x), smooth shading with a light dither (no
  banding), specular highlights, surface detail (grain, veins, speckle), a soft contact shadow, fine film grain.

The composition (where the product stands, its size, the palette) follows the brief only, so every stage of a
pipeline draws the same scene and image-to-image between them has nothing to ghost.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from PIL import Image, ImageFont

    Arr = npt.NDArray[Any]

RGB = tuple[int, int, int]

PRODUCTS: dict[str, tuple[str, ...]] = {
    # kind: the words that name it (whole words, case-insensitive)
    "bottle": ("bottle", "bottles", "flask", "flasks"),
    "can": ("can", "cans", "soda"),
    "bag": ("bag", "bags", "pouch", "pouches", "sachet", "sack"),
    "box": ("box", "boxes", "carton", "cartons", "packaging", "package"),
    "tube": ("tube", "tubes"),
    "tin": ("tin", "tins"),
    "jar": ("jar", "jars", "pot"),
    "bar": ("bar", "bars", "wrapper"),
    "cup": ("cup", "cups", "mug", "mugs", "tumbler"),
}
"""Product kinds and the words that name them; ``dropper`` (a serum bottle) and ``shoebox`` are variants."""

KINDS = (*PRODUCTS, "dropper", "shoebox", "package")

COLOURS: dict[str, tuple[RGB, str | None]] = {
    # word: (sRGB, finish it implies or None)
    "black": ((24, 24, 26), None), "white": ((238, 237, 232), None), "red": ((190, 28, 36), None),
    "crimson": ((160, 20, 40), None), "green": ((36, 128, 64), None), "emerald": ((20, 120, 80), None),
    "blue": ((32, 84, 180), None), "navy": ((22, 36, 84), None), "teal": ((18, 124, 124), None),
    "turquoise": ((40, 190, 190), None), "yellow": ((240, 198, 40), None), "orange": ((236, 118, 30), None),
    "purple": ((104, 48, 150), None), "violet": ((120, 70, 170), None), "lavender": ((180, 160, 215), None),
    "pink": ((232, 120, 160), None), "coral": ((240, 120, 100), None), "brown": ((110, 68, 40), None),
    "chocolate": ((78, 46, 30), None), "cream": ((240, 230, 204), None), "beige": ((220, 200, 168), None),
    "grey": ((128, 128, 130), None), "gray": ((128, 128, 130), None), "mint": ((150, 218, 190), None),
    "gold": ((212, 170, 62), "metal"), "golden": ((212, 170, 62), "metal"), "silver": ((192, 194, 198), "metal"),
    "steel": ((178, 182, 188), "metal"), "stainless": ((178, 182, 188), "metal"), "chrome": ((200, 204, 210), "metal"),
    "copper": ((184, 112, 60), "metal"), "bronze": ((160, 110, 50), "metal"), "amber": ((176, 96, 18), "glass"),
    "kraft": ((190, 150, 104), "matte"),
}
FINISHES: dict[str, str] = {"matte": "matte", "matt": "matte", "glossy": "glossy", "gloss": "glossy",
                            "shiny": "glossy", "metallic": "metal", "glass": "glass", "frosted": "matte",
                            "foil": "metal", "aluminium": "metal", "aluminum": "metal"}
SURFACES: dict[str, tuple[str, ...]] = {
    "marble": ("marble",),
    "wood": ("wood", "wooden", "oak", "walnut", "timber", "table", "counter", "desk", "shelf"),
    "concrete": ("concrete", "cement", "pavement"),
    "ice": ("ice", "icy"),
    "sand": ("sand", "sandy", "beach", "dune"),
    "stone": ("stone", "slate", "granite", "rock"),
    "fabric": ("linen", "fabric", "cloth", "silk", "velvet"),
}
DEFAULT_PALETTES: dict[str, tuple[RGB, ...]] = {
    "bottle": ((40, 110, 170), (200, 60, 50), (60, 140, 90), (230, 230, 226)),
    "dropper": ((176, 96, 18), (60, 100, 80), (40, 60, 120)),
    "can": ((210, 40, 40), (30, 90, 190), (240, 180, 30), (30, 150, 110), (120, 200, 60)),
    "bag": ((160, 50, 40), (40, 70, 60), (190, 150, 104)),
    "box": ((240, 180, 30), (220, 60, 40), (40, 120, 200), (250, 140, 30)),
    "shoebox": ((236, 236, 230), (200, 80, 40), (40, 40, 44)),
    "tube": ((245, 245, 240), (250, 200, 60), (60, 150, 210)),
    "tin": ((40, 90, 60), (150, 30, 30), (200, 160, 60)),
    "jar": ((230, 230, 225), (160, 40, 60), (60, 120, 60)),
    "bar": ((78, 46, 30), (150, 30, 40), (30, 50, 110)),
    "cup": ((245, 245, 240), (40, 40, 44), (190, 150, 104)),
    "package": ((200, 80, 40), (40, 120, 200), (236, 236, 230)),
}
DEFAULT_FINISH = {"bottle": "glossy", "dropper": "glass", "can": "metal", "bag": "matte", "box": "matte",
                  "shoebox": "matte", "tube": "glossy", "tin": "metal", "jar": "glass", "bar": "matte",
                  "cup": "matte", "package": "matte"}


@dataclass(frozen=True)
class SceneSpec:
    """What a brief asks to be drawn."""

    product: str
    """One of :data:`KINDS`."""
    body: RGB
    finish: str
    """matte, glossy, metal or glass."""
    colour_words: tuple[str, ...]
    """The colour and finish words read from the brief for the product (empty: a palette colour was chosen)."""
    surface: str
    """studio, marble, wood, concrete, ice, sand, stone or fabric."""
    light: str = "studio"
    """studio, window or sun."""
    props: tuple[str, ...] = ()
    serif: bool = False
    bold: bool = False
    vintage: bool = False
    seed: int = 0
    """The brief's digest: composition and palette choices."""

    def replace(self, **changes: Any) -> SceneSpec:
        return dataclasses.replace(self, **changes)


def _digest(*parts: Any) -> int:
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "big")


def _words(text: str) -> list[tuple[int, str]]:
    return [(m.start(), m.group(0).lower()) for m in re.finditer(r"[A-Za-z]+", text)]


def parse_scene(prompt: str, texts: list[str] | None = None) -> SceneSpec:
    """Read the product, its colours, the surface, light and props from a brief (quoted label text ignored)."""
    plain = prompt
    for t in texts or []:
        plain = plain.replace(t, " ")
    words = _words(plain)
    names = [w for _, w in words]
    seed = _digest(prompt) % 2**32

    product, pos = "package", -1
    for p, w in words:
        kind = next((k for k, ws in PRODUCTS.items() if w in ws), None)
        if kind is not None:
            if kind == "tin" and "can" in names:
                continue
            product, pos = kind, p
            break
    has = set(names)
    if product == "bottle" and has & {"serum", "dropper", "tincture", "essential"}:
        product = "dropper"
    if product == "box" and has & {"sneaker", "sneakers", "shoe", "shoes", "trainer", "trainers"}:
        product = "shoebox"

    # colour: the colour words of the product's own clause, before its noun; else after it up to "on"/"with"
    clause_start = max(plain.rfind(c, 0, pos) for c in ",:;.") + 1 if pos >= 0 else 0
    before = [(p, w) for p, w in words if clause_start <= p < pos] if pos >= 0 else []
    after: list[tuple[int, str]] = []
    if pos >= 0:
        for p, w in words:
            if p <= pos:
                continue
            if w in ("on", "with", "against", "atop", "over", "beside", "in", "near", "and") or plain[pos:p].count(","):
                break
            after.append((p, w))
    chosen = [w for _, w in before if w in COLOURS or w in FINISHES] or \
             [w for _, w in after if w in COLOURS or w in FINISHES]
    if not chosen and pos < 0:
        chosen = [w for w in names if w in COLOURS]
    colour_words = [w for w in chosen if w in COLOURS]
    finish = next((FINISHES[w] for w in chosen if w in FINISHES), None)
    rng_i = _digest(prompt, "palette")
    if colour_words:
        body, implied = COLOURS[colour_words[-1]]
        if colour_words[-1] in ("stainless", "steel") or "stainless" in colour_words:
            body, implied = COLOURS["steel"]
        finish = finish or implied
    else:
        palette = DEFAULT_PALETTES[product]
        body = palette[rng_i % len(palette)]
    if "dark" in [w for _, w in before]:
        body = (int(body[0] * 0.7), int(body[1] * 0.7), int(body[2] * 0.7))
    if has & {"pastel", "pale"}:
        body = (int(body[0] * 0.5 + 120), int(body[1] * 0.5 + 120), int(body[2] * 0.5 + 120))
    finish = finish or DEFAULT_FINISH[product]

    surface = "studio"
    for w in names:
        hit = next((s for s, ws in SURFACES.items() if w in ws), None)
        if hit is not None:
            surface = hit
            break
    light = "window" if "window" in has else "sun" if has & {"beach", "sun", "sunlight", "outdoor"} else "studio"
    props: list[str] = []
    if has & {"citrus", "lime", "limes", "lemon", "lemons", "orange", "slices"} and has & {"slice", "slices",
                                                                                          "citrus", "wedges"}:
        props.append("citrus")
    if "ice" in has:
        props.append("ice")
    if product == "bag" and "coffee" in has:
        props.append("beans")
    return SceneSpec(
        product=product, body=tuple(int(c) for c in body), finish=finish,  # type: ignore[arg-type]
        colour_words=tuple(w for w in chosen), surface=surface, light=light, props=tuple(props),
        serif=bool(has & {"serif", "elegant", "vintage", "classic"}) and "sans" not in has,
        bold=bool(has & {"bold", "heavy", "chunky"}), vintage=bool(has & {"vintage", "retro", "classic"}), seed=seed,
    )


# -- geometry ---------------------------------------------------------------------------------------------------
@dataclass
class Part:
    shapes: list[tuple[Any, ...]]
    """("poly", [(x, y), ...]) | ("rrect", (x0, y0, x1, y1), r) | ("ellipse", (x0, y0, x1, y1)), in pixels."""
    colour: RGB
    shading: str = "cyl"
    """cyl (round across its width), flat, side (a box's side face), top (a lit top face)."""
    finish: str = "matte"
    span: tuple[float, float] | None = None
    """The x range the cylindrical shading spans (default: the part's bounding box)."""


@dataclass
class Layout:
    parts: list[Part]
    label: tuple[float, float, float, float]
    """Where the label text goes (x0, y0, x1, y1)."""
    label_span: tuple[float, float]
    footprint: tuple[float, float, float, float]
    """The contact shadow's ellipse."""
    bbox: tuple[float, float, float, float]
    label_panel: bool = True


def _lum(c: RGB) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _shade(c: RGB, k: float) -> RGB:
    return (min(255, int(c[0] * k)), min(255, int(c[1] * k)), min(255, int(c[2] * k)))


def layout(spec: SceneSpec, width: int, height: int) -> Layout:
    """Where the product and its label stand (deterministic in the brief and the size)."""
    s = min(width, height)
    jitter = ((spec.seed >> 8) % 1000) / 1000.0 - 0.5
    cx = width / 2 + jitter * width * 0.08
    base = height * 0.86
    body, fin = spec.body, spec.finish
    dark_cap = (28, 28, 30) if _lum(body) > 90 else (200, 200, 204)
    k = spec.product
    parts: list[Part] = []
    panel = True
    if k == "bottle":
        w, h = s * 0.30, s * 0.66
        x0, x1, top = cx - w / 2, cx + w / 2, base - h
        neck_w = w * 0.42
        shoulder = top + h * 0.2
        parts.append(Part([("rrect", (x0, shoulder, x1, base), w * 0.16),
                           ("poly", [(x0 + w * 0.04, shoulder + w * 0.2), (cx - neck_w / 2, top + h * 0.07),
                                     (cx + neck_w / 2, top + h * 0.07), (x1 - w * 0.04, shoulder + w * 0.2)])],
                          body, finish=fin, span=(x0, x1)))
        parts.append(Part([("rrect", (cx - neck_w * 0.62, top - h * 0.02, cx + neck_w * 0.62, top + h * 0.09),
                            neck_w * 0.12)], dark_cap, finish="glossy"))
        label = (x0 + w * 0.02, base - h * 0.6, x1 - w * 0.02, base - h * 0.2)
        span = (x0, x1)
        foot = (x0 - w * 0.1, base - s * 0.02, x1 + w * 0.1, base + s * 0.025)
    elif k == "dropper":
        w, h = s * 0.30, s * 0.44
        x0, x1, top = cx - w / 2, cx + w / 2, base - h
        parts.append(Part([("rrect", (x0, top + h * 0.12, x1, base), w * 0.18)], body, finish="glass", span=(x0, x1)))
        parts.append(Part([("rrect", (cx - w * 0.26, top - h * 0.02, cx + w * 0.26, top + h * 0.16), w * 0.05)],
                          (30, 30, 32), finish="glossy"))
        parts.append(Part([("rrect", (cx - w * 0.15, top - h * 0.38, cx + w * 0.15, top + h * 0.02), w * 0.14)],
                          (40, 40, 42), finish="matte"))
        label = (x0 + w * 0.04, top + h * 0.36, x1 - w * 0.04, top + h * 0.86)
        span = (x0, x1)
        foot = (x0 - w * 0.1, base - s * 0.02, x1 + w * 0.1, base + s * 0.025)
        body_box = (x0, top - h * 0.38, x1, base)
        return Layout(parts, label, span, foot, body_box)
    elif k == "can":
        w, h = s * 0.30, s * 0.54
        x0, x1, top = cx - w / 2, cx + w / 2, base - h
        ry = w * 0.09
        parts.append(Part([("rrect", (x0, top + ry, x1, base - ry * 0.5), w * 0.06),
                           ("ellipse", (x0, base - ry * 1.5, x1, base + ry * 0.5)),
                           ("poly", [(x0, top + ry * 2), (x0 + w * 0.08, top), (x1 - w * 0.08, top),
                                     (x1, top + ry * 2)])], body, finish="metal", span=(x0, x1)))
        parts.append(Part([("ellipse", (x0 + w * 0.08, top - ry, x1 - w * 0.08, top + ry))], (196, 198, 202),
                          shading="top", finish="metal"))
        parts.append(Part([("rrect", (x0, base - ry * 1.2, x1, base - ry * 0.2), 2)], (170, 172, 176),
                          finish="metal", span=(x0, x1)))
        label = (x0 + w * 0.03, top + h * 0.3, x1 - w * 0.03, top + h * 0.72)
        span = (x0, x1)
        foot = (x0 - w * 0.08, base - s * 0.02, x1 + w * 0.08, base + s * 0.02)
    elif k == "bag":
        w, h = s * 0.42, s * 0.62
        x0, x1, top = cx - w / 2, cx + w / 2, base - h
        teeth = 14
        zig = [(x0 + w * 0.02 + (w * 0.96) * i / teeth, top + (0 if i % 2 else h * 0.015)) for i in range(teeth + 1)]
        parts.append(Part([("poly", [(x0 + w * 0.02, top + h * 0.01), *zig, (x1 - w * 0.02, top + h * 0.01),
                                     (x1 - w * 0.01, top + h * 0.1), (x1 + w * 0.03, base - h * 0.04),
                                     (x1, base), (x0, base), (x0 - w * 0.03, base - h * 0.04),
                                     (x0 + w * 0.01, top + h * 0.1)])], body, shading="flat", finish=fin,
                          span=(x0, x1)))
        parts.append(Part([("rrect", (x0 + w * 0.01, top + h * 0.075, x1 - w * 0.01, top + h * 0.095), 2)],
                          _shade(body, 0.75), shading="flat", finish=fin))
        parts.append(Part([("ellipse", (cx - w * 0.05, top + h * 0.14, cx + w * 0.05, top + h * 0.14 + w * 0.1))],
                          _shade(body, 0.8) if _lum(body) > 60 else (60, 60, 62), shading="flat", finish="glossy"))
        label = (x0 + w * 0.1, top + h * 0.36, x1 - w * 0.1, top + h * 0.74)
        span = (x0, x1)
        foot = (x0 - w * 0.06, base - s * 0.02, x1 + w * 0.06, base + s * 0.02)
    elif k in ("box", "package"):
        w, h, d = s * 0.40, s * 0.62, s * 0.12
        x0, x1, top = cx - w / 2 - d / 3, cx + w / 2 - d / 3, base - h
        parts.append(Part([("poly", [(x0, top), (x1, top), (x1, base), (x0, base)])], body, shading="flat",
                          finish=fin))
        parts.append(Part([("poly", [(x1, top), (x1 + d * 0.7, top - d * 0.45), (x1 + d * 0.7, base - d * 0.45),
                                     (x1, base)])], body, shading="side", finish=fin))
        parts.append(Part([("poly", [(x0, top), (x0 + d * 0.7, top - d * 0.45), (x1 + d * 0.7, top - d * 0.45),
                                     (x1, top)])], body, shading="top", finish=fin))
        label = (x0 + w * 0.08, top + h * 0.1, x1 - w * 0.08, top + h * 0.46)
        span = (x0, x1)
        foot = (x0 - w * 0.05, base - s * 0.03, x1 + d, base + s * 0.02)
    elif k == "shoebox":
        w, h, d = s * 0.70, s * 0.28, s * 0.22
        x0, x1, top = cx - w / 2 - d / 4, cx + w / 2 - d / 4, base - h
        lid = h * 0.36
        parts.append(Part([("poly", [(x0 + 3, top + lid), (x1 - 3, top + lid), (x1 - 3, base), (x0 + 3, base)])],
                          _shade(body, 0.93), shading="flat", finish=fin))
        parts.append(Part([("poly", [(x1 - 3, top + lid), (x1 + d * 0.6, top + lid - d * 0.4),
                                     (x1 + d * 0.6, base - d * 0.4), (x1 - 3, base)])], body, shading="side",
                          finish=fin))
        parts.append(Part([("poly", [(x0, top), (x1, top), (x1, top + lid), (x0, top + lid)])], body,
                          shading="flat", finish=fin))
        parts.append(Part([("poly", [(x1, top), (x1 + d * 0.6, top - d * 0.4), (x1 + d * 0.6, top + lid - d * 0.4),
                                     (x1, top + lid)])], body, shading="side", finish=fin))
        parts.append(Part([("poly", [(x0, top), (x0 + d * 0.6, top - d * 0.4), (x1 + d * 0.6, top - d * 0.4),
                                     (x1, top)])], body, shading="top", finish=fin))
        label = (x0 + w * 0.08, top + lid * 0.06, x1 - w * 0.08, top + lid * 0.94)
        span = (x0, x1)
        foot = (x0 - w * 0.04, base - s * 0.03, x1 + d * 0.7, base + s * 0.02)
        panel = _lum(body) < 170
    elif k == "tube":
        w, h = s * 0.36, s * 0.62
        x0, x1, top = cx - w / 2, cx + w / 2, base - h
        cap_w = w * 0.4
        parts.append(Part([("poly", [(x0 - w * 0.04, top + h * 0.06), (x1 + w * 0.04, top + h * 0.06),
                                     (cx + cap_w / 2 + w * 0.04, base - h * 0.14),
                                     (cx - cap_w / 2 - w * 0.04, base - h * 0.14)]),
                           ("ellipse", (x0 - w * 0.04, top + h * 0.02, x1 + w * 0.04, top + h * 0.14))],
                          body, finish="glossy", span=(x0 - w * 0.04, x1 + w * 0.04)))
        parts.append(Part([("rrect", (x0 - w * 0.06, top, x1 + w * 0.06, top + h * 0.06), 3)],
                          _shade(body, 0.9), shading="flat", finish="matte"))
        parts.append(Part([("rrect", (cx - cap_w / 2, base - h * 0.15, cx + cap_w / 2, base), cap_w * 0.12)],
                          dark_cap if _lum(body) < 200 else (230, 110, 40), finish="glossy"))
        label = (x0 + w * 0.04, top + h * 0.22, x1 - w * 0.04, top + h * 0.56)
        span = (x0, x1)
        foot = (cx - cap_w, base - s * 0.02, cx + cap_w, base + s * 0.02)
    elif k == "tin":
        w, h = s * 0.38, s * 0.56
        x0, x1, top = cx - w / 2, cx + w / 2, base - h
        parts.append(Part([("rrect", (x0, top, x1, base), w * 0.04)], body, finish="metal", span=(x0, x1)))
        for yy in (top + h * 0.03, base - h * 0.05):
            parts.append(Part([("rrect", (x0 - 2, yy, x1 + 2, yy + h * 0.025), 2)], (196, 190, 170), finish="metal",
                              span=(x0, x1)))
        parts.append(Part([("rrect", (x0 + w * 0.62, top - h * 0.07, x0 + w * 0.82, top + 2), 3)],
                          (190, 180, 150), finish="metal"))
        label = (x0 + w * 0.08, top + h * 0.24, x1 - w * 0.08, top + h * 0.76)
        span = (x0, x1)
        foot = (x0 - w * 0.06, base - s * 0.02, x1 + w * 0.06, base + s * 0.02)
    elif k == "jar":
        w, h = s * 0.40, s * 0.40
        x0, x1, top = cx - w / 2, cx + w / 2, base - h
        parts.append(Part([("rrect", (x0, top + h * 0.16, x1, base), w * 0.12)], body, finish=fin, span=(x0, x1)))
        parts.append(Part([("rrect", (x0 + w * 0.04, top, x1 - w * 0.04, top + h * 0.2), w * 0.04)], dark_cap,
                          finish="metal", span=(x0, x1)))
        label = (x0 + w * 0.04, top + h * 0.36, x1 - w * 0.04, top + h * 0.84)
        span = (x0, x1)
        foot = (x0 - w * 0.06, base - s * 0.02, x1 + w * 0.06, base + s * 0.02)
    elif k == "bar":
        w, h = s * 0.74, s * 0.30
        x0, x1, top = cx - w / 2, cx + w / 2, base - h
        crimp = w * 0.07
        parts.append(Part([("rrect", (x0 + crimp, top, x1 - crimp, base), h * 0.04)], body, shading="flat",
                          finish=fin))
        for ex0, ex1 in ((x0, x0 + crimp + 2), (x1 - crimp - 2, x1)):
            teeth = 9
            pts = [(ex0 + (i % 2) * 4 if ex0 == x0 else ex1 - (i % 2) * 4, top + h * i / teeth) for i in
                   range(teeth + 1)]
            inner = ex1 if ex0 == x0 else ex0
            parts.append(Part([("poly", [*pts, (inner, base), (inner, top)])], (200, 196, 186), shading="flat",
                              finish="metal"))
        label = (x0 + w * 0.16, top + h * 0.18, x1 - w * 0.16, base - h * 0.18)
        span = (x0, x1)
        foot = (x0, base - s * 0.02, x1, base + s * 0.02)
    else:  # cup
        w, h = s * 0.34, s * 0.50
        x0, x1, top = cx - w / 2, cx + w / 2, base - h
        parts.append(Part([("poly", [(x0, top + h * 0.1), (x1, top + h * 0.1), (x1 - w * 0.12, base),
                                     (x0 + w * 0.12, base)])], body, finish=fin, span=(x0, x1)))
        parts.append(Part([("rrect", (x0 - w * 0.03, top, x1 + w * 0.03, top + h * 0.11), 4)], dark_cap,
                          finish="glossy", span=(x0, x1)))
        label = (x0 + w * 0.08, top + h * 0.34, x1 - w * 0.1, top + h * 0.72)
        span = (x0, x1)
        foot = (x0, base - s * 0.02, x1, base + s * 0.02)
    xs = [p for part in parts for shape in part.shapes for p in _shape_xs(shape)]
    ys = [p for part in parts for shape in part.shapes for p in _shape_ys(shape)]
    if k == "bottle":
        panel = True
    return Layout(parts, label, span, foot, (min(xs), min(ys), max(xs), max(ys)), panel)


def _shape_xs(shape: tuple[Any, ...]) -> list[float]:
    if shape[0] == "poly":
        return [p[0] for p in shape[1]]
    return [shape[1][0], shape[1][2]]


def _shape_ys(shape: tuple[Any, ...]) -> list[float]:
    if shape[0] == "poly":
        return [p[1] for p in shape[1]]
    return [shape[1][1], shape[1][3]]


# -- drawing ----------------------------------------------------------------------------------------------------
def _mask(width: int, height: int, shapes: list[tuple[Any, ...]], aa: int) -> Arr:
    """Coverage (0..1) of ``shapes``, drawn at ``aa`` times the size and averaged down (anti-aliasing); only the
    shapes' bounding box is drawn."""
    import numpy as np
    from PIL import Image, ImageDraw

    out = np.zeros((height, width), np.float32)
    xs = [x for shape in shapes for x in _shape_xs(shape)]
    ys = [y for shape in shapes for y in _shape_ys(shape)]
    bx0, by0 = max(0, int(min(xs)) - 2), max(0, int(min(ys)) - 2)
    bx1, by1 = min(width, int(max(xs)) + 3), min(height, int(max(ys)) + 3)
    if bx1 <= bx0 or by1 <= by0:
        return out
    m = Image.new("L", ((bx1 - bx0) * aa, (by1 - by0) * aa), 0)
    d = ImageDraw.Draw(m)

    def pt(x: float, y: float) -> tuple[float, float]:
        return (x - bx0) * aa, (y - by0) * aa

    for shape in shapes:
        if shape[0] == "poly":
            d.polygon([pt(x, y) for x, y in shape[1]], fill=255)
            continue
        x0, y0 = pt(shape[1][0], shape[1][1])
        x1, y1 = pt(shape[1][2], shape[1][3])
        if x1 <= x0 or y1 <= y0:
            continue
        if shape[0] == "rrect":
            d.rounded_rectangle((x0, y0, x1, y1), radius=max(0, min(shape[2] * aa, (x1 - x0) / 2, (y1 - y0) / 2)),
                                fill=255)
        else:
            d.ellipse((x0, y0, x1, y1), fill=255)
    if aa > 1:
        m = m.resize((bx1 - bx0, by1 - by0), Image.Resampling.BOX)
    out[by0:by1, bx0:bx1] = np.asarray(m, dtype=np.float32) / 255.0
    return out


def _noise(shape: tuple[int, int], cells: int, rng: np.random.Generator) -> Arr:
    """Smooth value noise in -1..1 with about ``cells`` blobs across the shorter side."""
    import numpy as np
    from PIL import Image

    h, w = shape
    gh, gw = max(2, round(cells * h / min(h, w))), max(2, round(cells * w / min(h, w)))
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((w, h), Image.Resampling.BICUBIC)
    out = np.asarray(img, dtype=np.float32)
    return out / (np.abs(out).max() + 1e-6)


def _backdrop(spec: SceneSpec, w: int, h: int, horizon: int, q: float, rng: np.random.Generator) -> Arr:
    import numpy as np

    yy = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    srf = spec.surface
    walls: dict[str, tuple[RGB, RGB]] = {
        "marble": ((232, 228, 224), (196, 192, 188)), "wood": ((214, 196, 176), (170, 150, 130)),
        "concrete": ((178, 180, 182), (140, 142, 146)), "ice": ((186, 214, 236), (130, 170, 205)),
        "sand": ((120, 182, 232), (198, 226, 246)), "stone": ((120, 122, 126), (80, 82, 86)),
        "fabric": ((222, 214, 204), (186, 176, 166)),
    }
    if srf in walls:
        top, bottom = walls[srf]
    else:
        # a studio sweep in a muted colour that sets the product off
        b = np.array(spec.body, dtype=np.float32)
        lum = _lum(spec.body)
        tone = 215.0 if lum < 110 else 92.0 if lum > 200 else 200.0
        hue = (spec.seed % 3)
        tint = np.array([[12, 4, -8], [-6, 4, 10], [4, -4, 6]][hue], dtype=np.float32)
        top_a = np.clip(tone + tint + (b - b.mean()) * -0.08, 30, 245)
        top = tuple(int(v) for v in top_a)  # type: ignore[assignment]
        bottom = tuple(int(v * 0.72) for v in top_a)  # type: ignore[assignment]
    t_ = np.array(top, np.float32)
    b_ = np.array(bottom, np.float32)
    wall = t_[None, None, :] * (1 - yy[..., None]) + b_[None, None, :] * yy[..., None]
    img = np.broadcast_to(wall, (h, w, 3)).copy()
    if srf == "sand":  # sea band at the horizon
        sea = (horizon - int(h * 0.06), horizon)
        img[sea[0]:sea[1]] = np.array((44, 110, 160), np.float32)
        img[sea[1] - max(2, h // 200): sea[1]] = np.array((226, 236, 240), np.float32)
    # light: a spot behind the product (studio) or a window patch (window) or sun glow
    if spec.light == "window":
        glow = np.exp(-(((xx + 0.55) / 0.5) ** 2 + ((yy - 0.2) / 0.35) ** 2))
        img *= (0.82 + 0.35 * glow)[..., None]
    elif spec.light == "sun":
        glow = np.exp(-(((xx - 0.6) / 0.5) ** 2 + ((yy - 0.05) / 0.3) ** 2))
        img += 40.0 * glow[..., None]
    else:
        glow = np.exp(-((xx / 0.75) ** 2 + ((yy - 0.45) / 0.5) ** 2))
        img *= (0.8 + 0.28 * glow)[..., None]
    img[horizon:] = _floor(spec, w, h, horizon, q, rng)
    return img


def _floor(spec: SceneSpec, w: int, h: int, horizon: int, q: float, rng: np.random.Generator) -> Arr:
    """The surface the product stands on, in perspective (texture in world coordinates u, v)."""
    import numpy as np

    fh = h - horizon
    d = (np.arange(fh, dtype=np.float32)[:, None] + 6.0) / fh  # 0 (far) .. 1 (near)
    xs = (np.arange(w, dtype=np.float32)[None, :] - w / 2) / w
    u = xs / d * 4.0
    v = 1.0 / d
    detail = 0.25 + 0.75 * q
    srng = np.random.default_rng(spec.seed)
    ph = srng.uniform(0, 6.28, 8).astype(np.float32)

    def turb(scale: float) -> Arr:
        return (np.sin(u * 1.3 * scale + v * 0.7 * scale + ph[0]) * 0.5
                + np.sin(u * 2.9 * scale - v * 1.9 * scale + ph[1]) * 0.3
                + np.sin(u * 6.1 * scale + v * 4.3 * scale + ph[2]) * 0.2)

    srf = spec.surface
    if srf == "marble":
        base = np.array((236, 234, 230), np.float32)
        vein = np.exp(-np.abs(np.sin(u * 1.7 + v * 0.9 + 2.6 * turb(1.0))) / (0.03 + 0.08 * (1 - q)))
        fine = np.exp(-np.abs(np.sin(u * 5.0 - v * 2.2 + 1.5 * turb(2.2))) / 0.02) * q
        shade = 1.0 - detail * (0.32 * vein + 0.14 * fine) + 0.03 * turb(0.5)
        out = base[None, None, :] * shade[..., None]
    elif srf == "wood":
        base = np.array((150, 100, 62), np.float32)
        plank = np.floor(v * 2.2 + 0.3 * np.sin(ph[3]))
        grain = np.sin(u * 9.0 + 3.0 * turb(0.8) + plank * 5.3) * 0.5 + 0.5
        fine = np.sin(u * 55.0 + 8.0 * turb(1.3) + plank * 2.0)
        seam = (np.abs(v * 2.2 - np.round(v * 2.2)) < 0.012 / d).astype(np.float32)
        shade = 0.86 + detail * (0.14 * grain + 0.05 * q * fine) + 0.06 * np.sin(plank * 1.7) - 0.35 * seam * detail
        out = base[None, None, :] * shade[..., None]
    elif srf == "concrete":
        base = np.array((150, 150, 148), np.float32)
        shade = 1.0 + 0.06 * turb(0.6) * detail
        out = base[None, None, :] * shade[..., None]
        out += rng.normal(0, 9.0 * q, (fh, w, 1)).astype(np.float32)
        pits = (rng.random((fh, w)) < 0.003 * q).astype(np.float32)
        out -= 50.0 * pits[..., None]
    elif srf == "sand":
        base = np.array((222, 196, 150), np.float32)
        ripple = np.sin(v * 14.0 + 1.2 * turb(0.9))
        shade = 1.0 + detail * 0.05 * ripple
        out = base[None, None, :] * shade[..., None]
        out += rng.normal(0, 10.0 * q, (fh, w, 1)).astype(np.float32)
    elif srf == "ice":
        base = np.array((214, 232, 244), np.float32)
        crack = np.exp(-np.abs(np.sin(u * 3.0 + 2.0 * turb(1.4))) / 0.04) + \
            np.exp(-np.abs(np.sin(v * 4.0 - u * 1.5 + 2.0 * turb(2.0))) / 0.04)
        shade = 0.9 + 0.1 * turb(0.7) + detail * 0.12 * crack
        out = base[None, None, :] * shade[..., None]
    elif srf == "stone":
        base = np.array((92, 94, 98), np.float32)
        out = base[None, None, :] * (1.0 + 0.1 * turb(0.8) * detail)[..., None]
        out += rng.normal(0, 6.0 * q, (fh, w, 1)).astype(np.float32)
    elif srf == "fabric":
        base = np.array((214, 204, 190), np.float32)
        weave = np.sin(u * 80.0) * np.sin(v * 60.0)
        fold = np.sin(u * 2.0 + turb(0.5))
        out = base[None, None, :] * (0.94 + 0.05 * fold + 0.04 * q * weave)[..., None]
    else:  # studio sweep: filled by the caller, continuing the wall
        return np.zeros((fh, w, 3), np.float32)
    return out * (0.78 + 0.22 * (1.0 - d))[..., None] if srf != "sand" else out


def draw_scene(spec: SceneSpec, width: int, height: int, texts: list[str], quality: float,
               detail_seed: int, *, with_product: bool = True) -> Image.Image:
    """Render ``spec`` at ``quality`` (0 rough .. 1 finished) with ``texts`` typeset on the label
    (``with_product=False``: the set alone, surface and props, as a reference for measuring the product)."""
    import numpy as np
    from PIL import Image, ImageFilter

    q = float(min(1.0, max(0.0, quality)))
    rng = np.random.default_rng(detail_seed)
    scale = 0.5 + 0.5 * min(1.0, q / 0.5)  # rough models render small and are scaled up
    w, h = max(16, round(width * scale)), max(16, round(height * scale))
    aa = 4 if q >= 0.45 else 2 if q >= 0.25 else 1
    lay = layout(spec, w, h)
    horizon = round(h * 0.64)
    img = _backdrop(spec, w, h, horizon, q, rng)
    if spec.surface == "studio":
        wall_at = img[horizon - 1].copy()
        t = np.linspace(0.0, 1.0, h - horizon, dtype=np.float32)[:, None, None]
        img[horizon:] = wall_at[None] * (1.0 - 0.25 * t)
    elif q >= 0.45:  # a soft edge where the wall meets the surface
        band = max(2, h // 120)
        blend = np.linspace(0, 1, 2 * band, dtype=np.float32)[:, None, None]
        img[horizon - band:horizon + band] = img[horizon - band][None] * (1 - blend) + \
            img[horizon + band][None] * blend

    if "ice" in spec.props or "citrus" in spec.props or "beans" in spec.props:
        _props(img, spec, lay, horizon, q, aa, rng)
    if not with_product:
        return _finish(img, q, rng, width, height)

    # contact shadow
    sh = _mask(w, h, [("ellipse", lay.footprint)], aa)
    blur = (0.004 + 0.02 * q) * min(w, h)
    sh_img = Image.fromarray((sh * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(blur))
    sh_a = np.asarray(sh_img, dtype=np.float32) / 255.0
    img *= (1.0 - 0.55 * sh_a)[..., None]

    for part in lay.parts:
        m = _mask(w, h, part.shapes, aa)
        colour = _part_colour(part, m, w, h, q, spec, img)
        img = img * (1.0 - m[..., None]) + colour * m[..., None]

    label_rgb, label_a = _label(spec, lay, w, h, texts, q, aa)
    img = img * (1.0 - label_a[..., None]) + label_rgb * label_a[..., None]
    return _finish(img, q, rng, width, height)


def _finish(img: Arr, q: float, rng: np.random.Generator, width: int, height: int) -> Image.Image:
    import numpy as np
    from PIL import Image

    h, w = img.shape[:2]
    # quality: rough models get blotchy noise and banded shading; finished ones a fine dithering grain
    if q < 0.5:
        # blotchy in brightness, not in hue: a colour cast that a later stage (or color-match) would carry on
        # is what makes colour blobs
        blotch = _noise((h, w), 6, rng)[..., None]
        img += blotch * (10.0 * (0.5 - q) / 0.5)
        img += rng.normal(0.0, 3.0 * (1 - q), (h, w, 1)).astype(np.float32)
    else:
        img += rng.normal(0.0, 1.1 + 1.6 * q, (h, w, 1)).astype(np.float32)
    out = Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8))
    if (w, h) != (width, height):
        out = out.resize((width, height), Image.Resampling.BILINEAR)
    return out


def _part_colour(part: Part, m: Arr, w: int, h: int, q: float, spec: SceneSpec, backdrop: Arr) -> Arr:
    """Shaded colour of one part: a cylindrical or flat lighting profile, specular highlights by finish."""
    import numpy as np

    ys, xs = np.nonzero(m > 0.01)
    if len(xs) == 0:
        return np.zeros((h, w, 3), np.float32)
    x0, x1 = part.span if part.span else (float(xs.min()), float(xs.max()))
    y0, y1 = float(ys.min()), float(ys.max())
    xx = np.arange(w, dtype=np.float32)[None, :]
    yy = np.arange(h, dtype=np.float32)[:, None]
    t = np.clip((xx - x0) / max(1.0, x1 - x0) * 2 - 1, -1, 1)  # -1 left edge .. 1 right edge
    v = np.clip((yy - y0) / max(1.0, y1 - y0), 0, 1)
    fin = part.finish
    c = np.array(part.colour, np.float32)
    if part.shading == "cyl":
        diffuse = np.sqrt(np.clip(1 - t**2, 0, 1))
        shade = 0.5 + 0.42 * diffuse + 0.1 * (-t)
    elif part.shading == "side":
        shade = 0.62 + 0.06 * (1 - v) + 0 * t
    elif part.shading == "top":
        shade = 1.08 + 0.0 * t + 0.04 * v
    else:
        shade = 0.9 + 0.08 * (1 - v) + 0.05 * (-t)
    if q < 0.3:  # rough: a few flat bands
        shade = np.round(shade * 5) / 5
    spec_amt = {"matte": 0.06, "glossy": 0.32, "metal": 0.45, "glass": 0.5}.get(fin, 0.1)
    width_ = {"matte": 0.5, "glossy": 0.12, "metal": 0.1, "glass": 0.08}.get(fin, 0.3)
    spec_amt *= min(1.0, 0.3 + q)
    hl = spec_amt * np.exp(-(((t + 0.45) / width_) ** 2)) if part.shading == "cyl" else \
        spec_amt * 0.4 * np.exp(-(((t + 0.6) / 0.4) ** 2)) * (1 - v) + 0 * yy
    if q >= 0.3 and fin in ("metal", "glass") and part.shading == "cyl":
        hl = hl + 0.5 * spec_amt * np.exp(-(((t - 0.62) / (width_ * 0.6)) ** 2))
        shade = shade - 0.18 * np.exp(-(((t - 0.2) / 0.16) ** 2)) * (1.0 if fin == "metal" else 0.5)
    if fin == "matte" and q >= 0.45 and part.shading == "flat" and spec.product == "bag":  # paper crinkles
        crinkle = np.sin(xx / max(1.0, x1 - x0) * 19.0 + np.sin(yy / h * 7.0) * 2.0) * 0.03
        shade = shade + crinkle * np.exp(-((v - 0.05) / 0.25) ** 2)
    col = c[None, None, :] * np.asarray(shade, np.float32)[..., None] + 255.0 * np.asarray(hl, np.float32)[..., None]
    if fin == "glass":
        # a little of the backdrop through the glass, and a warm inner glow
        col = 0.8 * col + 0.12 * backdrop + 0.08 * np.array((255, 200, 120), np.float32)[None, None, :] * \
            np.exp(-(t / 0.5) ** 2)[..., None]
    return np.broadcast_to(col, (h, w, 3)).astype(np.float32)


@lru_cache(maxsize=64)
def _font(size: int, serif: bool, bold: bool) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    from PIL import ImageFont

    names = (["DejaVuSerif-Bold.ttf", "DejaVuSerif.ttf"] if serif else ["DejaVuSans-Bold.ttf", "DejaVuSans.ttf"])
    if not bold and not serif:
        names = ["DejaVuSans-Bold.ttf"]  # labels read best in a heavier weight
    for folder in ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/usr/share/fonts/TTF"):
        for n in names:
            p = Path(folder) / n
            if p.exists():
                return ImageFont.truetype(str(p), size)
    return ImageFont.load_default(size=size)


def _label(spec: SceneSpec, lay: Layout, w: int, h: int, texts: list[str], q: float,
           aa: int) -> tuple[Arr, Arr]:
    """The label panel and its text as colour and alpha layers (the panel follows the product's shading)."""
    import numpy as np
    from PIL import Image, ImageDraw

    lx0, ly0, lx1, ly1 = lay.label
    body = spec.body
    light_body = _lum(body) > 185
    if lay.label_panel and not light_body:
        panel = (244, 240, 228) if not spec.vintage else (236, 222, 186)
        if spec.product == "bag" and _lum(body) < 60:
            panel = (226, 214, 186)  # a kraft-paper label on a black bag
    else:
        panel = body
    ink = (24, 24, 28) if _lum(panel) > 140 else (246, 244, 236)
    if spec.vintage:
        ink = (70, 30, 20)
    alpha = _mask(w, h, [("rrect", (lx0, ly0, lx1, ly1), min(lx1 - lx0, ly1 - ly0) * 0.05)], aa) \
        if panel != body else np.zeros((h, w), np.float32)
    layer = Image.new("RGB", (w, h), panel)
    text_a = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(layer)
    ta = ImageDraw.Draw(text_a)
    if spec.vintage and panel != body:
        inset = (ly1 - ly0) * 0.06
        ta.rectangle((lx0 + inset, ly0 + inset, lx1 - inset, ly1 - inset), outline=255,
                     width=max(1, round((ly1 - ly0) / 60)))
    lines = texts or []
    if lines:
        avail_w = (lx1 - lx0) * 0.84
        avail_h = (ly1 - ly0) * 0.78 / len(lines)
        size = int(min(avail_h * 0.78, min(w, h) * 0.085))
        longest = max(lines, key=len)
        while size > 8:
            if d.textlength(longest, font=_font(size, spec.serif, spec.bold)) <= avail_w:
                break
            size -= 1
        font = _font(size, spec.serif, spec.bold)
        total_h = len(lines) * size * 1.25
        y = (ly0 + ly1) / 2 - total_h / 2
        for line in lines:
            tw = d.textlength(line, font=font)
            ta.text(((lx0 + lx1) / 2 - tw / 2, y), line, font=font, fill=255)
            y += size * 1.25
    else:
        r = (ly1 - ly0) / 4
        cx_, cy_ = (lx0 + lx1) / 2, (ly0 + ly1) / 2
        ta.ellipse((cx_ - r, cy_ - r, cx_ + r, cy_ + r), outline=255, width=max(2, round(r / 6)))
    t_a = np.asarray(text_a, np.float32)[..., None] / 255.0
    rgb = np.asarray(layer, np.float32) * (1 - t_a) + np.array(ink, np.float32)[None, None, :] * t_a
    # wrap the panel round the product: mild shading only, so the ink keeps its contrast
    xx = np.arange(w, dtype=np.float32)[None, :]
    s0, s1 = lay.label_span
    tt = np.clip((xx - s0) / max(1.0, s1 - s0) * 2 - 1, -1, 1)
    shade = 0.9 + 0.1 * np.sqrt(np.clip(1 - tt**2, 0, 1))
    if spec.product in ("box", "shoebox", "bar", "bag", "package"):
        shade = np.ones_like(tt)
    rgb = rgb * shade[..., None]
    a = np.maximum(alpha, np.asarray(text_a, np.float32) / 255.0 * _mask(w, h, [("rrect", (lx0, ly0, lx1, ly1), 0)],
                                                                            1))
    return rgb, a


def _paint(img: Arr, shapes: list[tuple[Any, ...]], colour: Any, aa: int, opacity: float = 1.0) -> None:
    """Paint ``shapes`` onto ``img`` in place, touching only their bounding box."""
    import numpy as np

    h, w = img.shape[:2]
    xs = [x for shape in shapes for x in _shape_xs(shape)]
    ys = [y for shape in shapes for y in _shape_ys(shape)]
    bx0, by0 = max(0, int(min(xs)) - 2), max(0, int(min(ys)) - 2)
    bx1, by1 = min(w, int(max(xs)) + 3), min(h, int(max(ys)) + 3)
    if bx1 <= bx0 or by1 <= by0:
        return
    local = [_shift(shape, bx0, by0) for shape in shapes]
    m = _mask(bx1 - bx0, by1 - by0, local, aa)[..., None] * opacity
    region = img[by0:by1, bx0:bx1]
    c = np.asarray(colour, np.float32)
    if c.ndim == 3:
        c = c[by0:by1, bx0:bx1]
    img[by0:by1, bx0:bx1] = region * (1 - m) + c * m


def _shift(shape: tuple[Any, ...], dx: float, dy: float) -> tuple[Any, ...]:
    if shape[0] == "poly":
        return ("poly", [(x - dx, y - dy) for x, y in shape[1]])
    x0, y0, x1, y1 = shape[1]
    return (shape[0], (x0 - dx, y0 - dy, x1 - dx, y1 - dy), *shape[2:])


def _props(img: Arr, spec: SceneSpec, lay: Layout, horizon: int, q: float, aa: int, rng: np.random.Generator) -> None:
    """Citrus slices, ice cubes or coffee beans on the surface beside the product (in place)."""
    import numpy as np

    h, w = img.shape[:2]
    s = min(w, h)
    bx0, _, bx1, _ = lay.bbox
    prng = np.random.default_rng(spec.seed + 7)
    spots = []
    for side in (-1, 1):
        for j in range(2):
            x = (bx0 - s * (0.08 + 0.13 * j)) if side < 0 else (bx1 + s * (0.08 + 0.13 * j))
            y = horizon + (h - horizon) * (0.45 + 0.35 * prng.random())
            spots.append((x, y))
    for x, y in spots:
        if "citrus" in spec.props:
            r = s * 0.055
            _paint(img, [("ellipse", (x - r, y - r * 0.55, x + r, y + r * 0.55))], (110, 160, 40), aa)
            inner = ("ellipse", (x - r * 0.85, y - r * 0.47, x + r * 0.85, y + r * 0.47))
            _paint(img, [inner], (196, 222, 110), aa)
            if q >= 0.3:
                for k in range(4):
                    a = k * np.pi / 4
                    dx, dy = np.cos(a) * r * 0.8, np.sin(a) * r * 0.44
                    nx, ny = -np.sin(a) * r * 0.03, np.cos(a) * r * 0.03
                    _paint(img, [("poly", [(x - dx - nx, y - dy - ny), (x - dx + nx, y - dy + ny),
                                           (x + dx + nx, y + dy + ny), (x + dx - nx, y + dy - ny)])],
                           (240, 248, 220), aa, 0.6)
        elif "ice" in spec.props:
            r = s * 0.05
            _paint(img, [("rrect", (x - r, y - r * 0.8, x + r, y + r * 0.8), r * 0.25)], (232, 244, 252), aa, 0.7)
            if q >= 0.3:
                _paint(img, [("rrect", (x - r * 0.7, y - r * 0.6, x - r * 0.2, y - r * 0.3), r * 0.1)],
                       (255, 255, 255), aa)
        else:  # coffee beans
            for _k in range(5):
                bx, by = x + (prng.random() - 0.5) * s * 0.08, y + (prng.random() - 0.5) * s * 0.03
                r = s * 0.014
                _paint(img, [("ellipse", (bx - r, by - r * 0.7, bx + r, by + r * 0.7))], (70, 42, 24), aa)
