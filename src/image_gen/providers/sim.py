"""The offline simulator: a stand-in for every catalog model, with the model's price and latency profile.

It renders a deterministic product shot of what the brief names (see :mod:`image_gen.providers._sim_scene`): the
product (bottle, can, bag, box, tube, tin, jar, bar, cup, ...), in the brief's colour words, on the named surface,
with the prompt's quoted text typeset on its label. The composition follows the brief alone, so every stage of a
pipeline draws the same scene; how finished it looks follows the model (:func:`model_quality`: the catalog's
``fidelity``, less for turbo models, a little more or less with the step count): drafts are rough (rendered small,
aliased, banded, blotchy), finishers are clean (anti-aliased, smooth shading, surface detail, soft shadows).

Documented defect rates per model (``sim_soft_rate``, ``sim_typo_rate``, ``sim_fail_rate`` in the catalog,
overridable under ``[sim]``) make some renders soft (Gaussian blur), some labels wrong (a swapped, dropped or
substituted letter) and some calls fail (``Transient``). Soft and typo defects are decided by the request and its
seed; a failure is drawn per attempt (the provider counts how often it has seen the same request), so a retry can
succeed. Image-to-image keeps the init image's composition: an init image of the same scene (an earlier stage)
lends its colour and light at low frequencies in proportion to ``1 - strength`` while the model draws its own
details; an init image of another composition is refined instead (kept, cleaned and sharpened, its tone drifting
a little with the strength), never blended into a double exposure. Below a strength of 0.35 every init image is
refined. Everything it returns is marked simulated, and its latency is the simulated one (it sleeps
``latency_scale`` of it, 0 by default).
"""

from __future__ import annotations

import hashlib
import io
import math
import threading
import time
from typing import TYPE_CHECKING, Any

from image_gen.imaging.labels import label_texts as quoted_texts  # one definition of the label text
from image_gen.providers._sim_scene import draw_scene, parse_scene
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

SAME_SCENE_CORRELATION = 0.6
"""An init image whose coarse grey layout correlates at least this much with the model's own render of the brief
is taken to be the same scene (an earlier stage's output); below it, the init image is refined, not redrawn."""


def model_quality(entry: ModelEntry, steps: int | None = None) -> float:
    """How finished a model's renders look, 0 (rough draft) .. 1 (finished): the catalog's ``fidelity``, less
    for turbo models, a little more or less when the step count is above or below the model's default."""
    q = (entry.fidelity - 25) / 60
    if "turbo" in entry.id.lower() or "turbo" in entry.vendor_model.lower():
        q -= 0.15
    if steps and entry.default_steps:
        q += 0.08 * max(-1.0, min(1.0, math.log2(steps / entry.default_steps)))
    return max(0.02, min(1.0, q))


class SimProvider:
    name = "sim"

    def __init__(self, settings: ProviderSettings | None = None) -> None:
        self.settings = settings or ProviderSettings()
        opts = self.settings.options
        self.latency_scale = float(opts.get("latency_scale", 0.0))
        self.overrides = {k: opts[k] for k in ("soft_rate", "typo_rate", "fail_rate") if opts.get(k) is not None}
        self._catalog: Catalog | None = opts.get("catalog")
        self._attempts: dict[int, int] = {}
        self._lock = threading.Lock()

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
        attempt = self._attempt(entry.id, request, seed)
        fail_rng = np.random.default_rng(_digest(entry.id, request.prompt, seed, request.operation, "fail", attempt))
        if fail_rng.random() < rates["fail"]:
            raise Transient(f"simulated failure of {entry.id} (sim_fail_rate={rates['fail']}, attempt {attempt + 1})")
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
            metadata={"simulated": True, "defects": defects, "rates": rates, "attempt": attempt + 1,
                      "sampler": "sim", "quality": round(model_quality(entry, request.steps), 3)},
        )

    # -- helpers ------------------------------------------------------------------------------------------------
    def _entry(self, model: str) -> ModelEntry:
        if self._catalog is None:
            from image_gen.catalog import Catalog

            self._catalog = Catalog.load()
        return self._catalog.resolve(model)

    def _attempt(self, model_id: str, request: ImageRequest, seed: int) -> int:
        """How many times this provider has already been sent the same request (0 the first time)."""
        init = hashlib.sha256(request.init_image).hexdigest() if request.init_image else ""
        key = _digest(model_id, request.prompt, request.negative_prompt, seed, request.operation, request.width,
                      request.height, request.aspect_ratio, request.steps, request.guidance_scale, request.strength,
                      request.num_images, init)
        with self._lock:
            n = self._attempts.get(key, 0)
            self._attempts[key] = n + 1
        return n

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
        quality = model_quality(entry, request.steps)
        init = None
        if request.operation == "img2img" and request.init_image is not None:
            init = Image.open(io.BytesIO(request.init_image)).convert("RGB")
            if init.size != (width, height):
                init = init.resize((width, height), Image.Resampling.LANCZOS)
            if strength < REFINE_BELOW:
                return self._refine(init, rng, rates, strength, quality)
        texts = quoted_texts(request.prompt) or []
        if texts and rng.random() < rates["typo"]:
            texts = _misspell(texts, rng)
            defects.append("typo")
        spec = parse_scene(request.prompt, quoted_texts(request.prompt))
        scene = draw_scene(spec, width, height, texts, quality, _digest(entry.id, request.prompt, seed) % 2**32)
        if init is not None:
            if _correlation(init, scene) < SAME_SCENE_CORRELATION:
                return self._refine(init, rng, rates, strength, quality)
            keep = 1.0 - strength
            radius = max(2.0, 0.05 * min(width, height))
            low_new = np.asarray(scene.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
            low_init = np.asarray(init.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
            arr = np.asarray(scene, dtype=np.float32) + keep * (low_init - low_new)
            scene = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))
        if rng.random() < rates["soft"]:
            scene = scene.filter(ImageFilter.GaussianBlur(max(2.0, 0.004 * min(width, height))))
            defects.append("soft")
        return scene, defects

    def _refine(self, init: Image.Image, rng: np.random.Generator, rates: dict[str, float], strength: float,
                quality: float) -> tuple[Image.Image, list[str]]:
        """Image-to-image that keeps the init image: its content stays, noise is smoothed and edges are crisped
        (more so for a better model, never with halos), and its tone drifts a little with the strength."""
        import numpy as np
        from PIL import Image, ImageFilter

        width, height = init.size
        out = init.filter(ImageFilter.MedianFilter(3)) if quality >= 0.45 else init
        out = out.filter(ImageFilter.UnsharpMask(radius=1.2, percent=int(30 + 50 * quality), threshold=3))
        drift = rng.normal(0.0, 10.0 * strength, 3).astype(np.float32)
        arr = np.asarray(out, dtype=np.float32) + drift[None, None, :]
        out = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))
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
        out = init.resize((w, h), Image.Resampling.BICUBIC).filter(
            ImageFilter.UnsharpMask(radius=1.5 * max(1.0, factor / 2), percent=50, threshold=2)
        )
        defects = []
        if rng.random() < rates["soft"]:
            out = out.filter(ImageFilter.GaussianBlur(max(2.0, 0.004 * min(w, h))))
            defects.append("soft")
        return out, defects


def _digest(*parts: Any) -> int:
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "big")


def _correlation(a: Image.Image, b: Image.Image) -> float:
    """Correlation of the two images' coarse grey layouts (48x48): near 1 for the same composition."""
    import numpy as np
    from PIL import Image

    x = np.asarray(a.convert("L").resize((48, 48), Image.Resampling.BOX), dtype=np.float64).ravel()
    y = np.asarray(b.convert("L").resize((48, 48), Image.Resampling.BOX), dtype=np.float64).ravel()
    x, y = x - x.mean(), y - y.mean()
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 0 else 0.0


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
