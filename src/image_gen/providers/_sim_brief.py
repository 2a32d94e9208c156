"""The simulator's brief reader: the product, colour words, finish, surface, light and props a brief asks for.

:func:`parse_scene` reads a brief into a :class:`SceneSpec`: the product it names (bottle, dropper bottle, can,
bag or pouch, box or carton, shoe box, tube, tin, jar, bar, cup; a plain package when none is named), the colour
words of the product (``matte black``, ``amber glass``, ``red`` ...), the surface it stands on (marble, wood,
concrete, ice, sand, stone, fabric; a studio sweep otherwise), the light and a few props (citrus slices, ice,
coffee beans). How it is laid out and drawn lives in :mod:`image_gen.providers._sim_layout` and
:mod:`image_gen.providers._sim_scene`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from typing import Any

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
