"""Outpainting the bands of a widened frame with the final stage's model (image-to-image), through the run's calls.

The call goes through the pipeline's ``CallMaker`` (``pipeline/calls.py``) under the run's id and its final stage's
row, so it is reserved against the budget caps before it is sent, settled with what it cost, and reused (never
sent again) when the same rendition is delivered again. It is made after the run completed, so the lease check is
off (``owner=None``); the caps still hold. The original pixels are kept as they are: only the bands (and a thin
feather inside the seam) come from the model.
"""

from __future__ import annotations

import dataclasses
import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

    from image_gen.pipeline.runner import Runner
    from image_gen.store.models import StageRun

OUTPAINT_STRENGTH = 0.85
MAX_OUTPAINT_PIXELS = 1024 * 1024
"""The canvas is sent at most this large (models render about a megapixel); the bands are resampled back."""


class OutpaintUnavailable(RuntimeError):
    """No call could be made (the model has no image-to-image, the budget refused it, the call failed)."""


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def prefill(canvas: Image.Image, inner: tuple[int, int, int, int]) -> Image.Image:
    """The canvas with its bands filled by the image's edges stretched outwards and blurred (the init image)."""
    import cv2
    import numpy as np
    from PIL import Image as PILImage

    arr = np.asarray(canvas.convert("RGB"))
    x0, y0, x1, y1 = inner
    core = np.ascontiguousarray(arr[y0:y1, x0:x1])
    h, w = arr.shape[:2]
    filled = cv2.copyMakeBorder(core, y0, h - y1, x0, w - x1, cv2.BORDER_REPLICATE)
    sigma = max(2.0, 0.03 * min(w, h))
    blurred = cv2.GaussianBlur(filled, (0, 0), sigmaX=sigma)
    out = blurred.copy()
    out[y0:y1, x0:x1] = core
    return PILImage.fromarray(out)


def band_mask(size: tuple[int, int], inner: tuple[int, int, int, int], feather: int = 0) -> Image.Image:
    """L-mode mask: 255 where the model paints (the bands), 0 on the image; ``feather`` px ramp inside the seam."""
    import numpy as np
    from PIL import Image as PILImage

    w, h = size
    x0, y0, x1, y1 = inner
    yy, xx = np.mgrid[0:h, 0:w]
    outside = (xx < x0) | (xx >= x1) | (yy < y0) | (yy >= y1)
    # distance inside the image to the nearest side that faces a band (a side on the canvas edge is not a seam)
    sides = [d for d, faces in ((xx - x0, x0 > 0), (x1 - 1 - xx, x1 < w), (yy - y0, y0 > 0), (y1 - 1 - yy, y1 < h))
             if faces]
    alpha = outside.astype(np.float32)
    if feather > 0 and sides:
        d = np.minimum.reduce(sides).astype(np.float32)
        alpha = np.where(outside, 1.0, np.clip(1.0 - (d + 1) / feather, 0.0, 1.0)).astype(np.float32)
    return PILImage.fromarray((alpha * 255 + 0.5).astype(np.uint8), "L")


def final_stage(runner: Runner, run_id: str) -> StageRun:
    rows = [s for s in runner.registry.stage_runs(run_id) if s.status == "done" and s.artifact_sha]
    if not rows:
        raise OutpaintUnavailable(f"run {run_id} has no finished stage")
    return rows[-1]


def outpaint(runner: Runner, run_id: str, canvas: Image.Image, inner: tuple[int, int, int, int], prompt: str,
             negative_prompt: str | None = None) -> tuple[Image.Image, dict[str, Any]]:
    """Paint the bands of ``canvas`` around ``inner`` (where the image lies) with the final stage's model."""
    import numpy as np
    from PIL import Image as PILImage

    from image_gen.pipeline.calls import StageStop
    from image_gen.pipeline.stage import derived_seed
    from image_gen.providers.base import ImageRequest, ProviderError

    row = final_stage(runner, run_id)
    plans = {p.name: p for p in runner.plan()}
    plan = plans.get(row.name)
    if plan is None:
        raise OutpaintUnavailable(f"stage {row.name} is not in the run's pipeline")
    route = plan.route
    if row.model_id != route.entry.id and "escalation" in plan.routes \
            and plan.routes["escalation"].entry.id == row.model_id:
        route = plan.routes["escalation"]
    if not route.entry.can("img2img"):
        raise OutpaintUnavailable(f"{route.entry.id} (stage {row.name}) has no image-to-image")
    w, h = canvas.size
    scale = min(1.0, (MAX_OUTPAINT_PIXELS / (w * h)) ** 0.5)
    sw, sh = max(64, round(w * scale / 8) * 8), max(64, round(h * scale / 8) * 8)
    init = prefill(canvas, inner)
    mask = band_mask(canvas.size, inner)
    request = ImageRequest(
        model=route.entry.id, vendor_model=route.entry.vendor_model, prompt=prompt, operation="img2img",
        negative_prompt=negative_prompt, width=sw, height=sh, seed=derived_seed(prompt, f"outpaint:{w}x{h}"),
        init_image=_png(init.resize((sw, sh), PILImage.Resampling.LANCZOS)),
        mask=_png(mask.resize((sw, sh), PILImage.Resampling.NEAREST)), strength=OUTPAINT_STRENGTH,
        options=dict(route.entry.options))
    calls = dataclasses.replace(runner.calls, owner=None)
    try:
        result = calls.call(run_id=run_id, stage_run_id=row.id, route=route, request=request, purpose="outpaint",
                            retries=2)
    except StageStop as stop:
        raise OutpaintUnavailable(stop.reason) from None
    except ProviderError as exc:
        raise OutpaintUnavailable(f"{type(exc).__name__}: {exc}") from None
    painted = result.images[0].to_pil().convert("RGB").resize((w, h), PILImage.Resampling.LANCZOS)
    feather = max(2, round(0.01 * min(w, h)))
    alpha = np.asarray(band_mask(canvas.size, inner, feather), dtype=np.float32)[..., None] / 255.0
    out = np.asarray(painted, dtype=np.float32) * alpha + np.asarray(init, dtype=np.float32) * (1 - alpha)
    with runner.registry.session() as s:  # the run's cost includes the calls made for its renditions
        from sqlalchemy import func, select, update

        from image_gen.store.models import Call, Run

        total = s.scalar(select(func.coalesce(func.sum(Call.cost_usd), 0.0)).where(Call.run_id == run_id))
        s.execute(update(Run).where(Run.id == run_id).values(cost_usd=round(float(total or 0.0), 6)))
    record = {"model": route.entry.id, "provider": route.provider, "stage": row.name, "sent_size": [sw, sh],
              "cost_usd": result.cost_usd, "strength": OUTPAINT_STRENGTH}
    return PILImage.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8)), record
