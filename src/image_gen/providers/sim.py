"""The offline simulator: a stand-in for every catalog model, with the model's price and latency profile.

It renders a deterministic product shot (seeded by model, prompt and seed): a studio backdrop, a bottle, and a
label carrying the prompt's quoted text typeset in Pillow's bundled font. Documented defect rates per model
(``sim_soft_rate``, ``sim_typo_rate``, ``sim_fail_rate`` in the catalog, overridable under ``[sim]``) make some
renders soft (Gaussian blur), some labels wrong (a swapped, dropped or substituted letter) and some calls fail
(``Transient``). Image-to-image keeps the init image's colour and lighting at low frequencies in proportion to
``1 - strength`` and draws its own details, so a handoff between stages is visible; below a strength of 0.35 it
refines the init image instead (keeps its content, sharpens, drifts its tone a little, as tile-by-tile refiners
do). Everything it returns is marked simulated, and its latency is the simulated one (it sleeps
``latency_scale`` of it, 0 by default).
"""

from __future__ import annotations

import hashlib
import io
import time
from typing import TYPE_CHECKING, Any

from image_gen.imaging.labels import label_texts as quoted_texts  # one definition of the label text
from image_gen.providers.base import (
    BadRequest,
    GeneratedImage,
    ImageRequest,
    ImageResult,
    ProviderSettings,
    Transient,
)

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from image_gen.catalog import Catalog, ModelEntry

REFINE_BELOW = 0.35
"""Image-to-image below this strength refines the init image; at or above it, the model draws its own details."""

class SimProvider:
    name = "sim"

    def __init__(self, settings: ProviderSettings | None = None) -> None:
        self.settings = settings or ProviderSettings()
        opts = self.settings.options
        self.latency_scale = float(opts.get("latency_scale", 0.0))
        self.overrides = {k: opts[k] for k in ("soft_rate", "typo_rate", "fail_rate") if opts.get(k) is not None}
        self._catalog: Catalog | None = opts.get("catalog")

    def is_configured(self) -> bool:
        return True

    # -- the contract -----------------------------------------------------------------------------------------
    def generate(self, request: ImageRequest) -> ImageResult:
        import numpy as np

        entry = self._entry(request.model)
        seed = request.seed if request.seed is not None else self._pick_seed(request)
        rng = np.random.default_rng(_digest(entry.id, request.prompt, seed, request.operation))
        rates = {
            "soft": self.overrides.get("soft_rate", entry.sim_soft_rate),
            "typo": self.overrides.get("typo_rate", entry.sim_typo_rate),
            "fail": self.overrides.get("fail_rate", entry.sim_fail_rate),
        }
        latency = self._latency(entry, request, rng)
        if self.latency_scale:
            time.sleep(latency * self.latency_scale)
        if rng.random() < rates["fail"]:
            raise Transient(f"simulated failure of {entry.id} (sim_fail_rate={rates['fail']})")
        if request.operation in ("img2img", "upscale") and request.init_image is None:
            raise BadRequest(f"{request.operation} needs an init image")

        images = []
        defects: list[str] = []
        for i in range(request.num_images):
            img_seed = seed + i
            img_rng = np.random.default_rng(_digest(entry.id, request.prompt, img_seed, request.operation, "img"))
            if request.operation == "upscale":
                img, d = self._upscale(request, img_rng, rates)
            else:
                img, d = self._render(entry, request, img_rng, rates, img_seed)
            defects.extend(d)
            buf = io.BytesIO()
            img.save(buf, format="PNG", compress_level=1)  # speed over size: it is a stand-in
            images.append(
                GeneratedImage(buf.getvalue(), seed=img_seed, width=img.width, height=img.height,
                               metadata={"defects": d, "simulated": True})
            )
        return ImageResult(
            images=images,
            seed=seed,
            request_id=f"sim-{_digest(entry.id, request.prompt, seed) % 16**12:012x}",
            cost_usd=None,
            latency_s=latency,
            simulated=True,
            metadata={"simulated": True, "defects": defects, "rates": rates},
        )

    # -- helpers ------------------------------------------------------------------------------------------------
    def _entry(self, model: str) -> ModelEntry:
        if self._catalog is None:
            from image_gen.catalog import Catalog

            self._catalog = Catalog.load()
        return self._catalog.resolve(model)

    @staticmethod
    def _pick_seed(request: ImageRequest) -> int:
        return _digest(request.model, request.prompt, "seed") % 2**31

    @staticmethod
    def _latency(entry: ModelEntry, request: ImageRequest, rng: np.random.Generator) -> float:
        base = entry.latency_s
        if request.steps and entry.default_steps:
            base *= request.steps / entry.default_steps
        elif request.steps:
            base *= max(0.5, request.steps / 50)
        base *= max(1, request.num_images) ** 0.5
        return round(float(base * rng.lognormal(0.0, 0.15)), 4)

    def _render(self, entry: ModelEntry, request: ImageRequest, rng: np.random.Generator, rates: dict[str, float],
                seed: int) -> tuple[Image.Image, list[str]]:
        import numpy as np
        from PIL import Image, ImageFilter

        width, height = _size(request, entry.native_megapixels)
        defects: list[str] = []
        strength = request.strength if request.strength is not None else 0.5
        if request.operation == "img2img" and request.init_image is not None and strength < REFINE_BELOW:
            return self._refine(request, rng, rates, width, height, strength)
        texts = quoted_texts(request.prompt) or []
        if texts and rng.random() < rates["typo"]:
            texts = _misspell(texts, rng)
            defects.append("typo")
        scene = draw_scene(width, height, texts, _digest(request.prompt, entry.id) % 2**32, seed)
        if request.operation == "img2img" and request.init_image is not None:
            init = Image.open(io.BytesIO(request.init_image)).convert("RGB").resize((width, height),
                                                                                   Image.Resampling.LANCZOS)
            keep = 1.0 - strength
            radius = max(2.0, 0.02 * min(width, height))
            low_new = np.asarray(scene.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
            low_init = np.asarray(init.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
            arr = np.asarray(scene, dtype=np.float32) + keep * (low_init - low_new)
            scene = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        if rng.random() < rates["soft"]:
            scene = scene.filter(ImageFilter.GaussianBlur(max(2.0, 0.004 * min(width, height))))
            defects.append("soft")
        return scene, defects

    def _refine(self, request: ImageRequest, rng: np.random.Generator, rates: dict[str, float], width: int,
                height: int, strength: float) -> tuple[Image.Image, list[str]]:
        """Low-strength image-to-image: keep the init image's content, sharpen it a little and drift its tone
        (as real models do tile by tile); the label text is kept as it was."""
        import numpy as np
        from PIL import Image, ImageFilter

        assert request.init_image is not None
        init = Image.open(io.BytesIO(request.init_image)).convert("RGB").resize((width, height),
                                                                               Image.Resampling.LANCZOS)
        out = init.filter(ImageFilter.UnsharpMask(radius=2, percent=int(40 + 200 * strength), threshold=2))
        drift = rng.normal(0.0, 40.0 * strength, 3).astype(np.float32)
        arr = np.asarray(out, dtype=np.float32) + drift[None, None, :]
        out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        defects = []
        if rng.random() < rates["soft"] * strength:
            out = out.filter(ImageFilter.GaussianBlur(max(1.5, 0.003 * min(width, height))))
            defects.append("soft")
        return out, defects

    def _upscale(self, request: ImageRequest, rng: np.random.Generator,
                 rates: dict[str, float]) -> tuple[Image.Image, list[str]]:
        from PIL import Image, ImageFilter

        assert request.init_image is not None
        init = Image.open(io.BytesIO(request.init_image)).convert("RGB")
        factor = float(request.options.get("factor", 4 if request.width is None else request.width / init.width))
        w = request.width or round(init.width * factor)
        h = request.height or round(init.height * factor)
        out = init.resize((w, h), Image.Resampling.LANCZOS).filter(
            ImageFilter.UnsharpMask(radius=2, percent=60, threshold=2)
        )
        defects = []
        if rng.random() < rates["soft"]:
            out = out.filter(ImageFilter.GaussianBlur(max(2.0, 0.004 * min(w, h))))
            defects.append("soft")
        return out, defects


def _digest(*parts: Any) -> int:
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "big")


def _size(request: ImageRequest, native_megapixels: float | None = None) -> tuple[int, int]:
    """The size the twin renders: the asked one, at most the model's native area (as the real model would)."""
    if request.width and request.height:
        w, h = request.width, request.height
    elif request.aspect_ratio:
        a, b = (int(x) for x in request.aspect_ratio.split(":"))
        scale = (1024 * 1024 / (a * b)) ** 0.5
        w, h = int(round(a * scale / 16) * 16), int(round(b * scale / 16) * 16)
    else:
        w, h = 1024, 1024
    if native_megapixels and w * h > native_megapixels * 1e6 * 1.1:
        scale = (native_megapixels * 1e6 / (w * h)) ** 0.5
        w, h = max(16, int(w * scale) // 16 * 16), max(16, int(h * scale) // 16 * 16)
    return w, h


def _misspell(texts: list[str], rng: np.random.Generator) -> list[str]:
    """Introduce one letter error in one label string: swap, drop or substitute."""
    idx = int(rng.integers(len(texts)))
    s = texts[idx]
    letters = [i for i, c in enumerate(s) if c.isalnum()]
    if len(letters) < 2:
        return texts
    kind = rng.choice(["swap", "drop", "substitute"])
    i = letters[int(rng.integers(len(letters) - 1))]
    if kind == "swap" and i + 1 < len(s) and s[i + 1] != s[i] and s[i + 1].isalnum():
        s = s[:i] + s[i + 1] + s[i] + s[i + 2 :]
    elif kind == "drop":
        s = s[:i] + s[i + 1 :]
    else:
        pool = "AEIOURSTLNKXZQ" if s[i].isupper() else "aeiourstlnkxzq"
        choices = [c for c in pool if c.lower() != s[i].lower()]
        s = s[:i] + choices[int(rng.integers(len(choices)))] + s[i + 1 :]
    out = list(texts)
    out[idx] = s
    return out


def draw_scene(width: int, height: int, texts: list[str], scene_seed: int, detail_seed: int) -> Image.Image:
    """A studio product shot: gradient backdrop, floor, bottle, label with ``texts`` (one line each).

    The composition and palette follow ``scene_seed`` (the prompt); ``detail_seed`` varies grain and highlights.
    """
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(scene_seed)
    drng = np.random.default_rng(detail_seed)
    top = rng.integers(120, 230, 3)
    bottom = rng.integers(40, 140, 3)
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    bg = (top[None, None, :] * (1 - t) + bottom[None, None, :] * t) * np.ones((1, width, 1), np.float32)
    horizon = int(height * 0.72)
    bg[horizon:] *= 0.8
    grain = drng.normal(0, 3.0, (height, width, 1)).astype(np.float32)
    img = Image.fromarray(np.clip(bg + grain, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    s = min(width, height)
    cx = width // 2 + int(rng.integers(-width // 12, width // 12 + 1))
    bw, bh = int(s * 0.46), int(s * 0.62)
    x0, y0 = cx - bw // 2, horizon - bh
    d.ellipse((x0 - s // 20, horizon - s // 40, x0 + bw + s // 20, horizon + s // 30), fill=(30, 30, 30))
    body = tuple(int(c) for c in rng.integers(90, 200, 3))
    d.rounded_rectangle((x0, y0, x0 + bw, horizon), radius=bw // 5, fill=body)
    # metallic highlight stripes
    for k, alpha in ((0.18, 60), (0.26, 35)):
        hx = x0 + int(bw * k)
        d.rectangle((hx, y0 + bw // 6, hx + max(2, bw // 30), horizon - bw // 8),
                    fill=tuple(min(255, c + alpha) for c in body))
    cap_w = int(bw * 0.45)
    d.rounded_rectangle((cx - cap_w // 2, y0 - int(s * 0.08), cx + cap_w // 2, y0 + 4), radius=cap_w // 6,
                        fill=tuple(int(c) for c in rng.integers(20, 80, 3)))
    lx0, lx1 = x0 + int(bw * 0.06), x0 + bw - int(bw * 0.06)
    ly0, ly1 = y0 + int(bh * 0.30), y0 + int(bh * 0.78)
    d.rectangle((lx0, ly0, lx1, ly1), fill=(246, 244, 236))
    ink = tuple(int(c) for c in rng.integers(10, 60, 3))
    lines = texts or []
    if not lines:
        r = (ly1 - ly0) // 4
        d.ellipse(((lx0 + lx1) // 2 - r, (ly0 + ly1) // 2 - r, (lx0 + lx1) // 2 + r, (ly0 + ly1) // 2 + r),
                  outline=ink, width=max(2, r // 6))
        return img
    avail_w = (lx1 - lx0) * 0.86
    avail_h = (ly1 - ly0) * 0.8 / len(lines)
    size = int(min(avail_h * 0.8, s * 0.09))
    longest = max(lines, key=len)
    while size > 8:
        font = ImageFont.load_default(size=size)
        if d.textlength(longest, font=font) <= avail_w:
            break
        size -= 2
    font = ImageFont.load_default(size=size)
    total_h = len(lines) * size * 1.25
    y = (ly0 + ly1) / 2 - total_h / 2
    for line in lines:
        w = d.textlength(line, font=font)
        d.text(((lx0 + lx1) / 2 - w / 2, y), line, font=font, fill=ink)
        y += size * 1.25
    return img
