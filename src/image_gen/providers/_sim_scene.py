"""The simulator's drawing: renders a scene (:class:`SceneSpec`, laid out by :func:`layout`) as a product shot.

:func:`draw_scene` renders it at a *quality* between 0 and 1 that comes from the model:

- rough (a turbo draft, quality near 0): rendered at half resolution and scaled up, aliased shapes, flat shading
  in a few bands, faint textures, blotchy noise (in brightness only);
- finished (quality near 1): anti-aliased shapes (masks drawn at 4x), smooth shading with a light dither (no
  banding), specular highlights, surface detail (grain, veins, speckle), a soft contact shadow, fine film grain.

The composition (where the product stands, its size, the palette) follows the brief only, so every stage of a
pipeline draws the same scene and image-to-image between them has nothing to ghost. Reading the brief lives in
:mod:`image_gen.providers._sim_brief` and the composition in :mod:`image_gen.providers._sim_layout`; their public
names are re-exported here for the callers that import them from this module.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from image_gen.providers._sim_brief import (
    COLOURS,
    DEFAULT_FINISH,
    DEFAULT_PALETTES,
    FINISHES,
    KINDS,
    PRODUCTS,
    RGB,
    SURFACES,
    SceneSpec,
    parse_scene,
)
from image_gen.providers._sim_layout import Layout, Part, _lum, _shape_xs, _shape_ys, layout

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from PIL import Image, ImageFont

    Arr = npt.NDArray[Any]

__all__ = [
    "COLOURS", "DEFAULT_FINISH", "DEFAULT_PALETTES", "FINISHES", "KINDS", "PRODUCTS", "RGB", "SURFACES",
    "Layout", "Part", "SceneSpec", "draw_scene", "layout", "parse_scene",
]


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
