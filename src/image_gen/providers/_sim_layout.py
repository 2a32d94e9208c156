"""The simulator's composition: where a scene's product parts, label and contact shadow stand in the frame.

:func:`layout` places the product a :class:`SceneSpec` names (deterministic in the brief and the image size), as
:class:`Part` shapes with their colours and shading; :mod:`image_gen.providers._sim_scene` draws them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from image_gen.providers._sim_brief import RGB, SceneSpec


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
