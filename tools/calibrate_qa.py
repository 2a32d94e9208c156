"""Calibrate the QA thresholds on a generated, labelled set of SYNTHETIC images and write ``thresholds.json``.

    python tools/calibrate_qa.py [--text-images 160] [--seed 0] [--out PATH] [--dry-run] [--show-errors]
    python tools/calibrate_qa.py --assess --seed 7     # figures of the stored thresholds on a fresh set

A developer tool, run from a checkout: it is not part of the ``image_gen`` package. The set is built here, from
code, so anyone can rebuild it:

- product renders like the simulator's (a studio backdrop or a photograph, a bottle or box, a label)
  whose label carries correct text or text with one swapped, dropped, substituted or extra letter, an extra
  word (on the same line or a line of its own), or misses a string, in several fonts (Pillow's bundled font and
  the DejaVu faces matplotlib ships), sizes, colours and backgrounds; some correct labels are split over two
  lines, and some renders carry unrelated small text in a corner (a "SIMULATED" mark, small print), which must
  not count against the label;
- soft copies of renders (Gaussian blur) at sizes 512..2048, and sharp ones delivered by an upscale;
- the photographs scikit-image ships (astronaut, camera, coffee, chelsea, rocket, ...), as they are, upscaled
  and blurred.

Thresholds are fitted on one half of the set and precision/recall are measured on the other half (held out),
then the stored thresholds are refitted on the whole set. Both figures are written to the file.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import pickle
import random
import string
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image, ImageFont

SOFT_SIGMA_RANGE = (1.5, 5.0)
"""Gaussian blur (sigma in pixels at the normalised 512-pixel scale) of the soft examples. The simulator's
soft renders are about 2.0 at that scale (``max(2, 0.004 * short side)`` at full size)."""

PHOTOS = (
    "astronaut",
    "camera",
    "coffee",
    "chelsea",
    "rocket",
    "coins",
    "brick",
    "grass",
    "gravel",
    "clock",
    "immunohistochemistry",
)
"""scikit-image's photographs in focus as shipped (``cell``, ``moon`` and ``hubble_deep_field`` are not)."""

_WORDS = """
    AQUA PURE SPRING WATER MORNING BREW CITRUS GLOW NORDIC FROST GOLDEN HONEY WILD BERRY OCEAN
    BREEZE MOUNTAIN DEW VELVET ROAST LEMON ZEST MINT FRESH SUNSET CIDER ALPINE SPARK COCOA DREAM
    MAPLE CREST EMBER OAK SILVER LINE Organic Natural Premium Classic Sparkling Original Vanilla
    Ginger Harvest Bold Smooth Daily Energy Balance
"""
WORDS = tuple(_WORDS.split())
EXTRAS = ("500ml", "330ml", "1L", "No. 7", "EST 1984", "Since 1921", "250g", "12 oz")
ERROR_KINDS = ("swap", "drop", "substitute", "missing", "extra-char", "extra-word")
CORNER_TEXTS = ("SIMULATED", "Since 1921", "www.studio-shots.com", "LOT 4471", "(c) Studio 2024", "SAMPLE")
"""Small text drawn in a corner of some renders, far from the label."""


@dataclass
class LabelledImage:
    image: Image.Image
    soft: bool
    expected: list[str]
    broken: bool | None
    """True/False for renders whose label text was checked; None when the image carries no expected text."""
    kind: str
    meta: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- the set


def fonts() -> list[Callable[[int], ImageFont.FreeTypeFont | ImageFont.ImageFont]]:
    """Font factories: Pillow's bundled font (the simulator's) and DejaVu faces shipped with matplotlib."""
    import matplotlib
    from PIL import ImageFont

    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"

    def bundled(size: int) -> Any:
        return ImageFont.load_default(size=size)

    out: list[Callable[[int], Any]] = [bundled]
    for name in ("DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans.ttf"):
        path = ttf / name
        if path.exists():
            out.append(functools.partial(_truetype, str(path)))
    return out


def _truetype(path: str, size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


def make_label(rng: random.Random) -> list[str]:
    n = rng.choice((1, 1, 2))
    pool = rng.sample(
        WORDS, 6
    )  # no word shared between strings, so a missing string cannot be read elsewhere
    out = []
    for _ in range(n):
        k = rng.choice((1, 2, 2, 3))
        phrase = " ".join(pool.pop() for _ in range(k))
        if rng.random() < 0.2:
            phrase += " " + rng.choice(EXTRAS)
        out.append(phrase)
    return out


def break_text(texts: list[str], kind: str, rng: random.Random) -> list[str]:
    """One typography error in one string: a swapped, dropped, substituted or extra letter, an extra word (on the
    string's line or on a line of its own), or the string missing. Returns the lines to draw."""
    idx = rng.randrange(len(texts))
    s = texts[idx]
    out = list(texts)
    if kind == "missing":
        del out[idx]
        return out
    if kind == "extra-word":
        used = {w.casefold() for t in texts for w in t.split()}
        word = rng.choice([w for w in WORDS if w.casefold() not in used])
        where = rng.choice(("after", "before", "line"))
        if where == "line":
            out.insert(idx + 1, word)
        else:
            out[idx] = f"{s} {word}" if where == "after" else f"{word} {s}"
        return out
    letters = [i for i, c in enumerate(s) if c.isalpha()]
    if kind == "extra-char":
        c = rng.choice(string.ascii_uppercase)
        if rng.random() < 0.5:  # a stray glyph after the string: STRIDE ONE E
            s = f"{s} {c}" if rng.random() < 0.7 else f"{c} {s}"
        else:  # a doubled or stray letter inside a word
            i = rng.choice(letters)
            extra = s[i] if rng.random() < 0.5 else (c if s[i].isupper() else c.lower())
            s = s[: i + 1] + extra + s[i + 1 :]
    elif kind == "swap":
        pairs = [
            i for i in letters if i + 1 < len(s) and s[i + 1].isalpha() and s[i + 1].lower() != s[i].lower()
        ]
        i = rng.choice(pairs)
        s = s[:i] + s[i + 1] + s[i] + s[i + 2 :]
    elif kind == "drop":
        i = rng.choice(letters)
        s = s[:i] + s[i + 1 :]
    else:
        i = rng.choice(letters)
        pool = [c for c in string.ascii_uppercase if c != s[i].upper()]
        c = rng.choice(pool)
        s = s[:i] + (c if s[i].isupper() else c.lower()) + s[i + 1 :]
    out[idx] = s
    return out


def split_line(texts: list[str], rng: random.Random) -> list[str]:
    """The same text with one multi-word string set over two lines (a correct label OCR reads as two boxes)."""
    multi = [i for i, t in enumerate(texts) if len(t.split()) >= 2]
    if not multi:
        return list(texts)
    idx = rng.choice(multi)
    parts = texts[idx].split()
    cut = rng.randint(1, len(parts) - 1)
    return texts[:idx] + [" ".join(parts[:cut]), " ".join(parts[cut:])] + texts[idx + 1 :]


def _photo(name: str) -> Image.Image:
    import numpy as np
    import skimage.data
    from PIL import Image

    arr = getattr(skimage.data, name)()
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    img = Image.fromarray(arr)
    return img.convert("RGB")


def _background(w: int, h: int, rng: random.Random, photos: Sequence[str]) -> Image.Image:
    import numpy as np
    from PIL import Image

    kind = rng.choice(("gradient", "gradient", "solid", "texture", "photo"))
    nrng = np.random.default_rng(rng.randrange(2**32))
    if kind == "photo" and photos:
        img = _photo(rng.choice(list(photos))).resize((w, h), Image.Resampling.LANCZOS)
        return img
    if kind == "texture":
        small = nrng.integers(40, 220, (rng.randint(3, 9), rng.randint(3, 9), 3)).astype(np.uint8)
        return Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)
    top = np.array([rng.randint(60, 235) for _ in range(3)], np.float32)
    bottom = top if kind == "solid" else np.array([rng.randint(30, 200) for _ in range(3)], np.float32)
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    bg = (top * (1 - t) + bottom * t) * np.ones((1, w, 1), np.float32)
    return Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))


def render(
    w: int,
    h: int,
    texts: list[str],
    rng: random.Random,
    photos: Sequence[str] = PHOTOS,
    corner: str | None = None,
) -> Image.Image:
    """A product shot: backdrop, a bottle or box, a label with ``texts`` (one line each), film grain.

    ``corner`` is small text set in a corner of the image, on a light patch, far from the label (a corner mark or
    small print that is no part of the label).
    """
    import numpy as np
    from PIL import Image, ImageDraw

    img = _background(w, h, rng, photos)
    d = ImageDraw.Draw(img)
    s = min(w, h)
    bw = int(s * rng.uniform(0.45, 0.7))
    bh = int(s * rng.uniform(0.55, 0.8))
    cx = w // 2 + rng.randint(-w // 12, w // 12)
    base = int(h * rng.uniform(0.82, 0.95))
    x0, y0 = cx - bw // 2, base - bh
    body = tuple(rng.randint(40, 210) for _ in range(3))
    d.rounded_rectangle((x0, y0, x0 + bw, base), radius=rng.randint(2, max(3, bw // 5)), fill=body)
    lx0, lx1 = x0 + int(bw * 0.06), x0 + bw - int(bw * 0.06)
    ly0, ly1 = y0 + int(bh * 0.25), y0 + int(bh * 0.8)
    dark_label = rng.random() < 0.2
    if dark_label:
        label = tuple(rng.randint(10, 70) for _ in range(3))
        ink = tuple(rng.randint(200, 255) for _ in range(3))
    else:
        label = tuple(rng.randint(215, 255) for _ in range(3))
        ink = tuple(rng.randint(0, 90) for _ in range(3))
        if rng.random() < 0.4:  # a coloured ink
            ink = rng.choice(((150, 20, 30), (20, 60, 140), (20, 100, 40), (90, 30, 110)))
    d.rectangle((lx0, ly0, lx1, ly1), fill=label)
    size = int(s * 0.05)
    if texts:
        font_factory = rng.choice(fonts())
        avail_w = (lx1 - lx0) * 0.88
        avail_h = (ly1 - ly0) * 0.8 / len(texts)
        size = int(min(avail_h * 0.8, s * rng.uniform(0.05, 0.09)))
        longest = max(texts, key=len)
        font = font_factory(size)
        while size > 10 and d.textlength(longest, font=font) > avail_w:
            size -= 2
            font = font_factory(size)
        y = (ly0 + ly1) / 2 - len(texts) * size * 1.3 / 2
        for line in texts:
            tw = d.textlength(line, font=font)
            d.text(((lx0 + lx1) / 2 - tw / 2, y), line, font=font, fill=ink)
            y += size * 1.3
    if corner:
        _corner_mark(d, w, h, corner, (lx0, ly0, lx1, ly1), size, rng)
    grain = rng.uniform(0.0, 4.0)
    if grain > 0.5:
        arr = np.asarray(img, np.float32)
        arr += np.random.default_rng(rng.randrange(2**32)).normal(0, grain, (h, w, 1)).astype(np.float32)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return img


def _corner_mark(
    d: Any, w: int, h: int, text: str, label: tuple[int, int, int, int], label_size: int, rng: random.Random
) -> None:
    """``text`` in a corner at least three label text heights away from the label box (skipped where none is)."""
    from PIL import ImageFont

    s = min(w, h)
    size = max(11, int(s * rng.uniform(0.022, 0.035)))
    font = ImageFont.load_default(size=size)
    tw, pad = d.textlength(text, font=font), max(3, size // 3)
    corners = ["top-left", "top-right", "bottom-left", "bottom-right"]
    rng.shuffle(corners)
    for where in corners:
        x = pad * 2 if where.endswith("left") else w - pad * 2 - tw
        y = pad * 2 if where.startswith("top") else h - pad * 2 - size * 1.2
        box = (x - pad, y - pad, x + tw + pad, y + size * 1.2 + pad)
        gap_x = max(label[0] - box[2], box[0] - label[2], 0)
        gap_y = max(label[1] - box[3], box[1] - label[3], 0)
        if max(gap_x, gap_y) >= 3 * label_size:
            d.rectangle(box, fill=(235, 235, 235))
            d.text((x, y), text, font=font, fill=(rng.randint(20, 90), rng.randint(20, 90), rng.randint(20, 90)))
            return


def blur(img: Image.Image, sigma_at_512: float) -> Image.Image:
    from PIL import ImageFilter

    scale = max(1.0, min(img.size) / 512)
    return img.filter(ImageFilter.GaussianBlur(sigma_at_512 * scale))


def _aspect(rng: random.Random, short: int) -> tuple[int, int]:
    a, b = rng.choice(((1, 1), (1, 1), (4, 3), (3, 4), (3, 2), (16, 9), (9, 16)))
    if a >= b:
        return round(short * a / b / 16) * 16, short
    return short, round(short * b / a / 16) * 16


def _text_render(i: int, rng: random.Random, sizes: Sequence[int]) -> LabelledImage:
    """The ``i``-th sharp render with label text: odd ones broken, cycling through ``ERROR_KINDS`` in pairs."""
    w, h = _aspect(rng, rng.choice(list(sizes)))
    texts = make_label(rng)
    broken = i % 2 == 1
    kind = ERROR_KINDS[(i // 4) % len(ERROR_KINDS)] if broken else "correct"
    if kind == "missing" and len(texts) == 1 and rng.random() < 0.5:
        texts = texts + [" ".join(w for w in rng.sample(WORDS, 4) if w not in texts[0].split())]
    drawn = break_text(texts, kind, rng) if broken else texts
    if not broken and rng.random() < 0.2:
        drawn = split_line(texts, rng)
    corner = rng.choice(CORNER_TEXTS) if rng.random() < 1 / 3 else None
    img = render(w, h, drawn, rng, corner=corner)
    meta = {"drawn": drawn, "size": [w, h], **({"corner": corner} if corner else {})}
    return LabelledImage(img, False, texts, broken, f"text-{kind}", meta)


def text_set(n: int, seed: int, sizes: Sequence[int] = (512, 576, 640)) -> list[LabelledImage]:
    """Only sharp renders with label text, half correct and half broken (every error kind): the "typography
    broken" verdict's own test set."""
    rng = random.Random(seed)
    return [_text_render(i, rng, sizes) for i in range(n)]


def generate_set(
    n_text: int = 160,
    n_extra: int = 60,
    seed: int = 0,
    text_sizes: Sequence[int] = (512, 576, 640, 704, 768),
    large_sizes: Sequence[int] = (512, 768, 1024, 1536, 2048),
) -> list[LabelledImage]:
    """The labelled calibration set.

    ``n_text`` sharp renders with label text (half correct, half broken, spread over the error kinds so that
    each half of :func:`calibrate`'s split sees every kind), at ``text_sizes`` (kept small because OCR time grows
    with area), a third of them with small text in a corner and a fifth of the correct ones with a string split
    over two lines; as many soft copies of them; ``n_extra``
    renders at ``large_sizes``, each sharp, soft, or sharp-after-upscale; and the scikit-image photographs
    as they are, upscaled 2x and blurred.
    """
    from PIL import Image, ImageFilter

    rng = random.Random(seed)
    items: list[LabelledImage] = []
    for i in range(n_text):
        item = _text_render(i, rng, text_sizes)
        items.append(item)
        img, texts, (w, h) = item.image, item.expected, item.image.size
        sigma = rng.uniform(*SOFT_SIGMA_RANGE)
        items.append(
            LabelledImage(
                blur(img, sigma),
                True,
                texts,
                None,
                "render-soft",
                {"sigma_at_512": round(sigma, 2), "size": [w, h]},
            )
        )
    for i in range(n_extra):
        w, h = _aspect(rng, rng.choice(list(large_sizes)))
        texts = make_label(rng) if rng.random() < 0.8 else []
        variant = ("sharp", "soft", "upscaled")[i % 3]
        if variant == "upscaled" and min(w, h) < 1024:
            # An upscale is sharp only where the normalised 512-pixel view undoes it.
            w, h = w * 2, h * 2
        if variant == "upscaled":
            img = render(w // 2, h // 2, texts, rng).resize((w, h), Image.Resampling.LANCZOS)
            if rng.random() < 0.5:
                img = img.filter(ImageFilter.UnsharpMask(radius=2, percent=60, threshold=2))
        else:
            img = render(w, h, texts, rng)
        meta: dict[str, Any] = {"size": [w, h]}
        if variant == "soft":
            meta["sigma_at_512"] = round(rng.uniform(*SOFT_SIGMA_RANGE), 2)
            img = blur(img, meta["sigma_at_512"])
        items.append(LabelledImage(img, variant == "soft", texts, None, f"render-{variant}", meta))
    for name in PHOTOS:
        photo = _photo(name)
        items.append(LabelledImage(photo, False, [], None, f"photo-{name}"))
        for sigma in (rng.uniform(*SOFT_SIGMA_RANGE), rng.uniform(*SOFT_SIGMA_RANGE)):
            items.append(
                LabelledImage(
                    blur(photo, sigma),
                    True,
                    [],
                    None,
                    f"photo-{name}-soft",
                    {"sigma_at_512": round(sigma, 2)},
                )
            )
    return items


# ------------------------------------------------------------------------------------------- features


@dataclass
class Features:
    laplacian_var: float
    hf_energy: float
    text_similarity: float | None
    """Lowest similarity over the expected strings; None when the label text was not checked."""
    read_text: str = ""
    text_precision: float | None = None
    """Precision of the text read at the label; None when the label text was not checked."""
    near_text: str = ""
    lines: list[Any] = field(default_factory=list)
    """What OCR read (``OcrLine``), kept so the scores can be recomputed without OCR."""


def rescore(items: Sequence[LabelledImage], feats: Sequence[Features]) -> list[Features]:
    """The features with the text scores recomputed from the stored OCR lines (after a change to the scoring)."""
    from image_gen.qa.text import score_text

    out = []
    for it, f in zip(items, feats, strict=True):
        if it.broken is None:
            out.append(f)
            continue
        ts = score_text(it.expected, f.lines)
        out.append(
            Features(f.laplacian_var, f.hf_energy, ts.min_similarity, ts.read_text, ts.precision, ts.near_text,
                     f.lines)
        )
    return out


def features(
    items: Sequence[LabelledImage],
    engine: str = "rapidocr",
    progress: Callable[[int, int], None] | None = None,
) -> list[Features]:
    """Measure every image; OCR only the renders whose label text is labelled (``broken`` is not None)."""
    from image_gen.qa.sharpness import measure
    from image_gen.qa.text import read_for_qa, score_text

    out = []
    for n, it in enumerate(items):
        m = measure(it.image)
        f = Features(m["laplacian_var"], m["hf_energy"], None)
        if it.broken is not None:
            lines = read_for_qa(it.image, engine)
            ts = score_text(it.expected, lines)
            f = Features(f.laplacian_var, f.hf_energy, ts.min_similarity, ts.read_text, ts.precision, ts.near_text,
                         lines)
        out.append(f)
        if progress:
            progress(n + 1, len(items))
    return out


# ------------------------------------------------------------------------------------------ fitting


@dataclass(frozen=True)
class Confusion:
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    def as_dict(self) -> dict[str, float]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
        }


def confusion(predicted: Iterable[bool], actual: Iterable[bool]) -> Confusion:
    tp = fp = fn = tn = 0
    for p, a in zip(predicted, actual, strict=True):
        tp += p and a
        fp += p and not a
        fn += a and not p
        tn += not p and not a
    return Confusion(tp, fp, fn, tn)


def _cuts(values: Sequence[float], log: bool = False) -> list[float]:
    """Candidate thresholds: midpoints between consecutive distinct values (geometric when ``log``)."""
    vs = sorted(set(values))
    cuts = []
    for a, b in zip(vs, vs[1:], strict=False):
        cuts.append(math.sqrt(max(a, 1e-12) * b) if log else (a + b) / 2)
    if vs:
        cuts += [vs[0] * 0.5 if log else vs[0] - 1e-6, vs[-1] * 2 if log else vs[-1] + 1e-6]
    return sorted(cuts)


def _objective(c: Confusion) -> tuple[float, float]:
    # The weaker of precision and recall first, then their sum.
    return (min(c.precision, c.recall), c.precision + c.recall)


def _middle(best: list[Any]) -> Any:
    """Of equally good thresholds, the middle one: the widest margin on both sides."""
    return best[len(best) // 2]


def text_broken(f: Features, text_th: dict[str, Any]) -> bool:
    """The "typography broken" verdict: a string's similarity or the precision at the label is too low."""
    return (f.text_similarity or 0.0) < text_th["min_similarity"] or (f.text_precision or 0.0) < text_th.get(
        "min_precision", 0.0
    )


def fit_text(sims: Sequence[float], precs: Sequence[float], broken: Sequence[bool]) -> dict[str, float]:
    """Minimum similarity and minimum precision: a label is broken when either is below its threshold.

    Searched jointly over the candidate cuts of both. Of equally good thresholds each is placed in the middle of
    its range (similarity first, then precision given it): the widest margin on both sides.
    """

    def objective(ts: float, tp: float) -> tuple[float, float]:
        return _objective(confusion((s < ts or p < tp for s, p in zip(sims, precs, strict=True)), broken))

    sim_cuts, prec_cuts = _cuts(sims), _cuts(precs)
    scored = [(objective(ts, tp), ts, tp) for ts in sim_cuts for tp in prec_cuts]
    top = max(o for o, _, _ in scored)
    best = [(ts, tp) for o, ts, tp in scored if o == top]
    t_sim = (min(ts for ts, _ in best) + max(ts for ts, _ in best)) / 2
    good_tp = [tp for tp in prec_cuts if objective(t_sim, tp) == top]
    if not good_tp:  # the middle of the range is not optimal (the best pairs are not contiguous)
        t_sim = _middle(sorted({ts for ts, _ in best}))
        good_tp = [tp for ts, tp in best if ts == t_sim]
    t_prec = (min(good_tp) + max(good_tp)) / 2
    if objective(t_sim, t_prec) != top:
        t_prec = _middle(sorted(good_tp))
    return {"min_similarity": float(t_sim), "min_precision": float(t_prec)}


def _soft_predict(
    lap: Sequence[float], hf: Sequence[float], t_lap: float, t_hf: float, rule: str
) -> list[bool]:
    out = []
    for a, b in zip(lap, hf, strict=True):
        lo_a, lo_b = a < t_lap, b < t_hf
        out.append({"laplacian": lo_a, "hf": lo_b, "any": lo_a or lo_b, "all": lo_a and lo_b}[rule])
    return out


def fit_sharpness(
    lap: Sequence[float], hf: Sequence[float], soft: Sequence[bool], grid: int = 40
) -> dict[str, Any]:
    """Both thresholds and the rule combining them, by search over a grid of candidate cuts."""
    all_lap, all_hf = _cuts(lap, log=True), _cuts(hf, log=True)
    lap_cuts, hf_cuts = _subsample(all_lap, grid), _subsample(all_hf, grid)
    results: list[tuple[tuple[float, float], int, str, float, float]] = []
    # Simpler rules first: on a tie the single measure wins over a combination. A single measure is searched
    # over every cut, a combination over a grid.
    for order, rule in enumerate(("laplacian", "hf", "any", "all")):
        lap_iter = {"laplacian": all_lap, "hf": [all_lap[0]]}.get(rule, lap_cuts)
        hf_iter = {"hf": all_hf, "laplacian": [all_hf[0]]}.get(rule, hf_cuts)
        for t_lap in lap_iter:
            for t_hf in hf_iter:
                c = confusion(_soft_predict(lap, hf, t_lap, t_hf, rule), soft)
                results.append((_objective(c), -order, rule, t_lap, t_hf))
    top = max(r[:2] for r in results)
    best = [r for r in results if r[:2] == top]
    _, _, rule, t_lap, t_hf = _middle(best)
    # A measure the rule ignores keeps its own best single threshold, to be reported and overridden.
    if rule == "hf":
        t_lap = _best_single(lap, soft, all_lap)
    if rule == "laplacian":
        t_hf = _best_single(hf, soft, all_hf)
    return {"rule": rule, "laplacian_var_min": float(t_lap), "hf_energy_min": float(t_hf)}


def _best_single(values: Sequence[float], labels: Sequence[bool], cuts: Sequence[float]) -> float:
    scored = [(_objective(confusion((v < t for v in values), labels)), t) for t in cuts]
    top = max(o for o, _ in scored)
    return float(_middle([t for o, t in scored if o == top]))


def _subsample(cuts: list[float], n: int) -> list[float]:
    if len(cuts) <= n:
        return cuts
    step = (len(cuts) - 1) / (n - 1)
    return sorted({cuts[round(i * step)] for i in range(n)})


def fit(items: Sequence[LabelledImage], feats: Sequence[Features]) -> dict[str, Any]:
    text_idx = [i for i, it in enumerate(items) if it.broken is not None]
    sims = [feats[i].text_similarity or 0.0 for i in text_idx]
    precs = [feats[i].text_precision or 0.0 for i in text_idx]
    broken = [bool(items[i].broken) for i in text_idx]
    sharp = fit_sharpness(
        [f.laplacian_var for f in feats], [f.hf_energy for f in feats], [it.soft for it in items]
    )
    return {"sharpness": sharp, "text": fit_text(sims, precs, broken)}


def assess(
    items: Sequence[LabelledImage], feats: Sequence[Features], thresholds: dict[str, Any]
) -> dict[str, Any]:
    """Precision and recall of the "soft" and "typography broken" verdicts under ``thresholds``."""
    sh = thresholds["sharpness"]
    soft_pred = _soft_predict(
        [f.laplacian_var for f in feats],
        [f.hf_energy for f in feats],
        sh["laplacian_var_min"],
        sh["hf_energy_min"],
        sh["rule"],
    )
    text_idx = [i for i, it in enumerate(items) if it.broken is not None]
    text_pred = [text_broken(feats[i], thresholds["text"]) for i in text_idx]
    by_kind: dict[str, list[int]] = {}
    for i, p in zip(text_idx, text_pred, strict=True):
        row = by_kind.setdefault(items[i].kind, [0, 0])
        row[0] += 1
        row[1] += p
    return {
        "soft": confusion(soft_pred, [it.soft for it in items]).as_dict(),
        "typography_broken": confusion(text_pred, [bool(items[i].broken) for i in text_idx]).as_dict(),
        "typography_broken_by_kind": {k: {"images": n, "failed": f} for k, (n, f) in sorted(by_kind.items())},
        "images": len(items),
        "text_images": len(text_idx),
    }


def calibrate(items: Sequence[LabelledImage], feats: Sequence[Features]) -> dict[str, Any]:
    """Fit on even-numbered images, assess on the odd-numbered ones (held out), then refit on all."""
    # A text render and its soft copy are adjacent and correct/broken renders alternate, so split by runs of
    # four: each side keeps whole pairs and both labels.
    fit_idx = [i for i in range(len(items)) if (i // 4) % 2 == 0]
    held_idx = [i for i in range(len(items)) if (i // 4) % 2 == 1]
    half = fit([items[i] for i in fit_idx], [feats[i] for i in fit_idx])
    held = assess([items[i] for i in held_idx], [feats[i] for i in held_idx], half)
    final = fit(items, feats)
    return {
        **final,
        "calibration": {
            "held_out": held,
            "held_out_thresholds": half,
            "in_sample": assess(items, feats, final),
            "kinds": _count(
                "photo-" + it.kind.split("-")[-1] if it.kind.startswith("photo-") else it.kind for it in items
            ),
        },
    }


def _count(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))


def misclassified(
    items: Sequence[LabelledImage], feats: Sequence[Features], thresholds: dict[str, Any]
) -> list[dict[str, Any]]:
    """The images the thresholds get wrong, for inspection."""
    sh = thresholds["sharpness"]
    out = []
    for i, (it, f) in enumerate(zip(items, feats, strict=True)):
        soft = _soft_predict(
            [f.laplacian_var], [f.hf_energy], sh["laplacian_var_min"], sh["hf_energy_min"], sh["rule"]
        )[0]
        if soft != it.soft:
            out.append(
                {
                    "index": i,
                    "kind": it.kind,
                    "soft": it.soft,
                    "laplacian_var": f.laplacian_var,
                    "hf_energy": f.hf_energy,
                    **it.meta,
                }
            )
        if it.broken is not None and text_broken(f, thresholds["text"]) != it.broken:
            out.append(
                {
                    "index": i,
                    "kind": it.kind,
                    "expected": it.expected,
                    "read": f.read_text,
                    "near_label": f.near_text,
                    "similarity": f.text_similarity,
                    "precision": f.text_precision,
                    **it.meta,
                }
            )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from image_gen.qa.thresholds import THRESHOLDS_PATH, clear_cache, load_thresholds

    p = argparse.ArgumentParser(prog="python tools/calibrate_qa.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--text-images", type=int, default=160, help="sharp renders with label text (default 160)")
    p.add_argument("--extra-images", type=int, default=60, help="renders at 512..2048 (default 60)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=THRESHOLDS_PATH)
    p.add_argument("--dry-run", action="store_true", help="print the thresholds, do not write them")
    p.add_argument("--assess", action="store_true", help="only measure the stored thresholds on the set")
    p.add_argument("--show-errors", action="store_true", help="list the misclassified images")
    p.add_argument("--cache", type=Path, help="pickle of the measured features: read if present, else written")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    items = generate_set(args.text_images, args.extra_images, args.seed)
    print(f"generated {len(items)} labelled images in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    t0 = time.perf_counter()
    if args.cache is not None and args.cache.exists():
        with args.cache.open("rb") as fh:
            feats = rescore(items, pickle.load(fh))
    else:
        feats = features(items, progress=lambda n, total: print(f"\r{n}/{total}", end="", file=sys.stderr))
        if args.cache is not None:
            with args.cache.open("wb") as fh:
                pickle.dump(feats, fh)
    print(f"\nmeasured in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    if args.assess:
        stored = load_thresholds(args.out)
        print(json.dumps({"seed": args.seed, **assess(items, feats, stored)}, indent=2))
        if args.show_errors:
            for row in misclassified(items, feats, stored):
                print(row, file=sys.stderr)
        return 0
    result = calibrate(items, feats)
    result["calibration"]["generator"] = {
        "synthetic": True,
        "note": "fitted on images generated by tools/calibrate_qa.py, not on real model outputs",
        "text_images": args.text_images,
        "extra_images": args.extra_images,
        "seed": args.seed,
        "soft_sigma_at_512": list(SOFT_SIGMA_RANGE),
        "photos": list(PHOTOS),
        "error_kinds": list(ERROR_KINDS),
        "corner_texts": list(CORNER_TEXTS),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.show_errors:
        for row in misclassified(items, feats, result):
            print(row, file=sys.stderr)
    if not args.dry_run:
        args.out.write_text(text + "\n", encoding="utf-8")
        clear_cache()
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
