"""Local engine: diffusers pipelines on the user's own GPU (CUDA), Apple MPS or CPU, with a memory ladder.

Model ids are ``local:<hub id or folder>``; a catalog model (``sd3.5-medium``) is routed here by config
(``provider = "local"``), the runner then passing the model's ``local_repo`` as ``vendor_model``.
Pipelines load with diffusers' auto classes (text-to-image; image-to-image built with ``from_pipe`` so both
share one set of weights), stay in a process cache, and seed one CPU generator per image (image ``i`` uses
``seed + i``), so the same seed gives the same pixels whatever the batching, device offload or ladder rung.

Memory ladder. When a forward pass runs out of memory (``torch.OutOfMemoryError``, the MPS and CPU allocators'
errors), the call is tried again one rung further down, each rung keeping the
ones above it::

    base            as asked (tiled only when the request sets tile_size)
    vae_tiling      VAE tiled encode/decode and one image at a time through the VAE
    cpu_offload     accelerate model CPU offload (CUDA and MPS; skipped on CPU, where weights already live)
    tiled           MultiDiffusion tiled denoising + tiled decode (half the tile when already tiled)
    smaller_batch   half the images per forward pass, down to one, then half the tiles per pass

Every rung tried is recorded in the result's ``metadata["memory_ladder"]``; the rung that worked is remembered
for that model, device and size, and later calls start there. When the ladder is exhausted the provider raises
:class:`LocalOutOfMemory` (an :class:`~image_gen.providers.base.OutOfMemory`) carrying the rungs tried; the
runner's last rung, the stage's lighter ``fallback_model``, lives above providers.

Cost of a call = device seconds x a price per hour: wall-clock seconds of every attempt on CUDA/MPS at
``price_per_gpu_hour`` (default 2.0 USD), or process CPU seconds (all cores) at ``price_per_cpu_hour``
(default 0.05 USD per core-hour) on CPU.

Settings options (``[providers.local.options]``): ``device`` (auto|cuda|mps|cpu), ``dtype``
(auto|float16|bfloat16|float32), ``price_per_gpu_hour``, ``price_per_cpu_hour``, ``local_files_only``,
``variant``, ``blend`` (cosine|linear|gaussian), ``overlap`` (default tile overlap, pixels), ``tile_batch``
(latent tiles per forward pass, default 4), ``models`` (catalog id -> hub id or folder: where a catalog model
routed here by ``provider = "local"`` finds its weights).
Request options: ``tile_size`` and ``overlap`` (pixels; force tiled generation), ``blend``, ``tile_batch``,
``memory_ladder_start`` (a rung name).

torch and diffusers are imported only when a call is made (``pip install torch==2.13.0 && pip install
'image-gen[local]'``).
"""

from __future__ import annotations

import importlib.util
import math
import random
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from image_gen.providers.base import (
    BadRequest,
    GeneratedImage,
    ImageRequest,
    ImageResult,
    NotConfigured,
    OutOfMemory,
    ProviderError,
    ProviderSettings,
    encode_png,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from PIL import Image

    from image_gen.providers._local_engine import AttemptPlan, ForwardHook, GenerationJob, LoadedModel

INSTALL_HINT = "pip install torch==2.13.0 && pip install 'image-gen[local]'"
LADDER: tuple[str, ...] = ("base", "vae_tiling", "cpu_offload", "tiled", "smaller_batch")
LadderStep = Literal["base", "vae_tiling", "cpu_offload", "tiled", "smaller_batch"]
BlendKind = Literal["cosine", "linear", "gaussian"]
DEFAULT_STEPS = 28


class LocalSettings(BaseModel):
    """Options of the local provider (``ProviderSettings.options``)."""

    model_config = ConfigDict(extra="forbid")

    device: Literal["auto", "cuda", "mps", "cpu"] = Field(default="auto", description="Where to run")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        default="auto", description="auto: bfloat16 (or float16) on CUDA, float16 on MPS, float32 on CPU"
    )
    price_per_gpu_hour: float = Field(default=2.0, ge=0, description="USD per GPU hour (CUDA, MPS)")
    price_per_cpu_hour: float = Field(default=0.05, ge=0, description="USD per CPU core-hour (CPU runs)")
    local_files_only: bool = Field(default=False, description="Never download; use the local hub cache only")
    variant: str | None = Field(default=None, description="Weights variant, e.g. fp16")
    blend: BlendKind = Field(default="cosine", description="Tile blend weights")
    overlap: int = Field(default=64, ge=0, description="Default tile overlap in pixels")
    tile_batch: int = Field(default=4, ge=1, description="Latent tiles per denoiser forward pass")
    models: dict[str, str] = Field(
        default_factory=dict,
        description="Catalog model id -> hub id or weights folder, for catalog models routed here by config",
    )


class LocalRequestOptions(BaseModel):
    """Per-request options (``ImageRequest.options``)."""

    model_config = ConfigDict(extra="forbid")

    tile_size: int | None = Field(default=None, ge=16, description="Pixel tile side: forces tiled generation")
    overlap: int | None = Field(default=None, ge=0, description="Tile overlap in pixels")
    blend: BlendKind | None = None
    tile_batch: int | None = Field(default=None, ge=1, description="Latent tiles per denoiser forward pass")
    memory_ladder_start: LadderStep | None = Field(default=None, description="First ladder rung to try")


class LocalOutOfMemory(OutOfMemory):
    """Every rung of the memory ladder ran out of memory; ``memory_ladder`` lists the rungs tried."""

    def __init__(self, message: str, *, memory_ladder: list[dict[str, Any]], cost_usd: float = 0.0) -> None:
        super().__init__(message)
        self.memory_ladder = memory_ladder
        self.cost_usd = cost_usd


_REMEMBERED: dict[tuple[Any, ...], tuple[str, Any]] = {}
_REMEMBERED_LOCK = threading.Lock()


def forget_memory_ladder() -> None:
    """Forget which ladder rung worked for each model and size."""
    with _REMEMBERED_LOCK:
        _REMEMBERED.clear()


def _engine() -> Any:
    missing = [m for m in ("torch", "diffusers", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise NotConfigured(f"the local provider needs {', '.join(missing)}: {INSTALL_HINT}")
    from image_gen.providers import _local_engine

    return _local_engine


class DiffusersLocalProvider:
    """Runs diffusers pipelines locally; see the module docstring for the ladder, options and cost."""

    name = "local"

    def __init__(self, settings: ProviderSettings | None = None) -> None:
        self.settings = settings or ProviderSettings()
        try:
            self.options = LocalSettings.model_validate(self.settings.options or {})
        except ValidationError as exc:
            raise NotConfigured(f"invalid options for the local provider: {exc}") from exc

    def is_configured(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in ("torch", "diffusers", "transformers"))

    # -- the call -------------------------------------------------------------------------------------------

    def generate(self, request: ImageRequest) -> ImageResult:
        opts = self._request_options(request)
        engine = _engine()
        source = self.options.models.get(request.model, request.vendor_model)
        model = self._load(engine, source)
        job = self._job(engine, model, request)
        with model.lock:
            return self._run_ladder(engine, model, request, job, opts)

    def _request_options(self, request: ImageRequest) -> LocalRequestOptions:
        if request.operation not in ("generate", "img2img"):
            raise BadRequest(f"the local provider does not do {request.operation!r}; it does generate and img2img")
        if request.mask is not None:
            raise BadRequest("the local provider does not inpaint (mask given)")
        if request.operation == "img2img" and request.init_image is None:
            raise BadRequest("img2img needs an init image")
        try:
            return LocalRequestOptions.model_validate(dict(request.options))
        except ValidationError as exc:
            raise BadRequest(f"invalid options for the local provider: {exc}") from exc

    def _load(self, engine: Any, source: str) -> LoadedModel:
        if not source:
            raise BadRequest("no model given: use local:<hub id or folder>")
        path = Path(source).expanduser()
        looks_like_path = source.startswith((".", "/", "~")) or path.is_absolute() or "\\" in source
        if looks_like_path and not path.is_dir():
            raise NotConfigured(f"no weights folder at {source!r} (expected a diffusers save_pretrained folder)")
        if path.is_dir() and not (path / "model_index.json").is_file():
            raise NotConfigured(f"{source!r} is not a diffusers pipeline folder (no model_index.json)")
        try:
            device = engine.pick_device(self.options.device)
        except RuntimeError as exc:
            raise NotConfigured(str(exc)) from exc
        dtype = engine.pick_dtype(self.options.dtype, device)
        try:
            return engine.load(
                source,
                device,
                dtype,
                local_files_only=self.options.local_files_only,
                variant=self.options.variant,
            )
        except ImportError as exc:
            raise NotConfigured(f"the local provider is missing a dependency ({exc}): {INSTALL_HINT}") from exc
        except (OSError, ValueError) as exc:
            raise NotConfigured(
                f"could not load {source!r} with diffusers: {exc}. Download it first "
                f"(`hf download {source}`) or give a local folder as local:<folder>"
            ) from exc
        except Exception as exc:
            if engine.is_out_of_memory(exc):
                raise OutOfMemory(f"out of memory loading {source!r} on {device}: {exc}") from exc
            raise

    def _job(self, engine: Any, model: LoadedModel, request: ImageRequest) -> GenerationJob:
        init: Image.Image | None = None
        if request.operation == "img2img":
            from image_gen.imaging.images import ImageRejected, open_image

            try:
                init = open_image(request.init_image or b"").convert("RGB")
            except ImageRejected as exc:
                raise BadRequest(f"init image rejected: {exc}") from exc
        width, height = self._asked_size(model, request, init)
        mult = model.pixel_multiple
        render_w, render_h = engine.round_up(width, mult), engine.round_up(height, mult)
        if init is not None and init.size != (render_w, render_h):
            from PIL import Image

            init = init.resize((render_w, render_h), Image.Resampling.LANCZOS)
        if request.num_images < 1:
            raise BadRequest("num_images must be at least 1")
        seed = request.seed if request.seed is not None else random.randrange(2**32 - 1)
        return engine.GenerationJob(
            operation=request.operation,
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            width=render_w,
            height=render_h,
            seeds=[(seed + i) % 2**32 for i in range(request.num_images)],
            steps=request.steps or DEFAULT_STEPS,
            guidance_scale=request.guidance_scale,
            init_image=init,
            strength=request.strength,
            asked_width=width,
            asked_height=height,
        )

    @staticmethod
    def _asked_size(model: LoadedModel, request: ImageRequest, init: Image.Image | None) -> tuple[int, int]:
        if request.width and request.height:
            return request.width, request.height
        if init is not None:
            return init.size
        native = model.native_size
        if request.aspect_ratio:
            try:
                rw, rh = (float(p) for p in request.aspect_ratio.split(":"))
            except ValueError as exc:
                raise BadRequest(f"aspect ratio {request.aspect_ratio!r} is not W:H") from exc
            if not (rw > 0 and rh > 0 and math.isfinite(rw / rh)):
                raise BadRequest(f"aspect ratio {request.aspect_ratio!r}: expected W:H with both terms above 0")
            return round(native * math.sqrt(rw / rh)), round(native * math.sqrt(rh / rw))
        return native, native

    # -- the memory ladder ----------------------------------------------------------------------------------

    def _base_plan(self, engine: Any, model: LoadedModel, job: GenerationJob, opts: LocalRequestOptions) -> AttemptPlan:
        overlap = opts.overlap if opts.overlap is not None else self.options.overlap
        tile = opts.tile_size
        if tile is not None:
            tile = max(model.pixel_multiple, tile // model.pixel_multiple * model.pixel_multiple)
            if 2 * overlap >= tile:
                raise BadRequest(f"overlap {overlap} must be less than half of tile_size {tile}")
        return engine.AttemptPlan(
            tile_size=tile,
            overlap=overlap,
            batch=len(job.seeds),
            tile_batch=opts.tile_batch or self.options.tile_batch,
            blend=opts.blend or self.options.blend,
        )

    def _tiled_rung(self, model: LoadedModel, job: GenerationJob, plan: AttemptPlan) -> AttemptPlan | None:
        """The ``tiled`` rung: tile at the native size, or half the longer side, or half the current tile."""
        mult = model.pixel_multiple
        if plan.tile_size:
            tile = plan.tile_size // 2 // mult * mult
        else:
            longest = max(job.width, job.height)
            tile = min(model.native_size, math.ceil((longest / 2 + plan.overlap) / mult) * mult)
            if tile >= longest:
                tile = longest // 2 // mult * mult
        overlap = min(plan.overlap, max(0, (tile - 1) // 2 // mult * mult))
        if tile < mult or tile >= max(job.width, job.height):
            return None
        return replace(plan, tile_size=tile, overlap=overlap)

    def _rungs(
        self,
        model: LoadedModel,
        job: GenerationJob,
        plan: AttemptPlan,
        start: int,
        *,
        apply_above: bool = True,
    ) -> Iterator[tuple[str, AttemptPlan | None, str]]:
        """Each rung from ``start`` on, as (name, plan or None when skipped, why skipped).

        Rungs above ``start`` are applied to ``plan`` first unless ``apply_above`` is False (the plan already
        has them: a remembered rung).
        """
        accelerator = model.device.type in ("cuda", "mps")
        for i, step in enumerate(LADDER):
            if i < start and not apply_above:
                continue
            nxt: AttemptPlan | None
            why = ""
            if step == "base":
                nxt = plan
            elif step == "vae_tiling":
                nxt = replace(plan, vae_tiling=True)
            elif step == "cpu_offload":
                nxt = replace(plan, cpu_offload=True) if accelerator else None
                why = "" if accelerator else f"weights already in main memory on {model.device.type}"
            elif step == "tiled":
                nxt = self._tiled_rung(model, job, plan)
                why = "" if nxt else "image too small to tile further"
            else:
                # Images per pass first, then (tiled) latent tiles per pass, each halved down to one.
                smaller = []
                while plan.batch > 1:
                    plan = replace(plan, batch=math.ceil(plan.batch / 2))
                    smaller.append(plan)
                while plan.tile_size and plan.tile_batch > 1:
                    plan = replace(plan, tile_batch=math.ceil(plan.tile_batch / 2))
                    smaller.append(plan)
                if i >= start:
                    if not smaller:
                        yield step, None, "one image and one tile per forward pass already"
                    for p in smaller:
                        yield step, p, ""
                continue
            if nxt is not None:
                plan = nxt
            if i >= start:
                yield step, nxt, why

    def _before_forward(self, step: str) -> ForwardHook | None:
        """A callable run before each denoiser forward pass of an attempt at ladder rung ``step`` (None: nothing).

        An extension point for subclasses that observe passes or inject faults; raising from it ends the
        attempt as the denoiser's own error would (an out-of-memory error walks the ladder on).
        """
        return None

    def _run_ladder(
        self,
        engine: Any,
        model: LoadedModel,
        request: ImageRequest,
        job: GenerationJob,
        opts: LocalRequestOptions,
    ) -> ImageResult:
        base = self._base_plan(engine, model, job, opts)
        key = (
            model.source,
            str(model.device),
            str(model.dtype),
            job.width,
            job.height,
            base.tile_size,
            request.operation,
        )
        start = LADDER.index(opts.memory_ladder_start) if opts.memory_ladder_start else 0
        remembered: tuple[str, AttemptPlan] | None = None
        if opts.memory_ladder_start is None:
            with _REMEMBERED_LOCK:
                remembered = _REMEMBERED.get(key)
        log: list[dict[str, Any]] = []
        t0, c0 = time.perf_counter(), time.process_time()
        engine.peak_memory_start(model.device)

        def attempts() -> Iterator[tuple[str, AttemptPlan | None, str]]:
            if remembered is not None:
                step, plan = remembered
                plan = replace(plan, batch=min(plan.batch, len(job.seeds)))
                yield step, plan, "remembered"
                # If the remembered rung fails now, carry on below it.
                yield from self._rungs(model, job, plan, LADDER.index(step) + 1, apply_above=False)
            else:
                yield from self._rungs(model, job, base, start)

        images: list[Image.Image] | None = None
        used: AttemptPlan | None = None
        used_step = ""
        for step, plan, why in attempts():
            entry: dict[str, Any] = {"step": step}
            if plan is None:
                log.append({**entry, "outcome": "skipped", "detail": why})
                continue
            entry.update(batch=plan.batch, tile_size=plan.tile_size)
            if plan.tile_size:
                entry["tile_batch"] = plan.tile_batch
            if why:
                entry["detail"] = why
            a0 = time.perf_counter()
            out_of_memory = False
            try:
                images = engine.run_attempt(model, job, plan, self._before_forward(step))
            except Exception as exc:
                if not engine.is_out_of_memory(exc):
                    log.append({**entry, "outcome": "error", "detail": str(exc)[:300]})
                    raise self._translate(exc, log) from exc
                log.append(
                    {
                        **entry,
                        "outcome": "oom",
                        "detail": str(exc).splitlines()[0][:300],
                        "seconds": round(time.perf_counter() - a0, 3),
                    }
                )
                out_of_memory = True
            if out_of_memory:
                # Outside the except block: the traceback's frames (and the tensors they hold) are gone now.
                engine.free_memory(model.device)
                continue
            log.append({**entry, "outcome": "ok", "seconds": round(time.perf_counter() - a0, 3)})
            used, used_step = plan, step
            break
        cost, basis = self._cost(model, time.perf_counter() - t0, time.process_time() - c0)
        if images is None or used is None:
            tried = ", ".join(f"{e['step']}:{e['outcome']}" for e in log)
            raise LocalOutOfMemory(
                f"out of memory on {model.device} at every rung of the memory ladder for "
                f"{request.vendor_model} "
                f"at {job.width}x{job.height} ({tried})",
                memory_ladder=log,
                cost_usd=cost,
            )
        if any(e["outcome"] == "oom" for e in log):
            with _REMEMBERED_LOCK:
                _REMEMBERED[key] = (used_step, used)
        return self._result(engine, model, request, job, used, images, log, cost, basis, t0)

    @staticmethod
    def _translate(exc: Exception, log: list[dict[str, Any]]) -> ProviderError:
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, ValueError | TypeError):
            return BadRequest(f"the pipeline rejected the request: {exc}")
        return ProviderError(f"local generation failed: {type(exc).__name__}: {exc}")

    def _cost(self, model: LoadedModel, wall_s: float, cpu_s: float) -> tuple[float, dict[str, Any]]:
        if model.device.type == "cpu":
            price, seconds, clock = self.options.price_per_cpu_hour, cpu_s, "cpu"
        else:
            price, seconds, clock = self.options.price_per_gpu_hour, wall_s, "gpu"
        return seconds * price / 3600.0, {
            "clock": clock,
            "seconds": round(seconds, 3),
            "price_per_hour": price,
        }

    def _result(
        self,
        engine: Any,
        model: LoadedModel,
        request: ImageRequest,
        job: GenerationJob,
        plan: AttemptPlan,
        images: list[Image.Image],
        log: list[dict[str, Any]],
        cost: float,
        basis: dict[str, Any],
        t0: float,
    ) -> ImageResult:
        width, height = job.asked_width, job.asked_height
        out = []
        for img, seed in zip(images, job.seeds, strict=True):
            if img.size != (width, height):
                left, top = (img.width - width) // 2, (img.height - height) // 2
                img = img.crop((left, top, left + width, top + height))
            out.append(GeneratedImage(data=encode_png(img), seed=seed, width=width, height=height))
        tiled = bool(plan.tile_size)
        metadata: dict[str, Any] = {
            "device": str(model.device),
            "dtype": str(model.dtype).removeprefix("torch."),
            "pipeline": type(model.img2img if job.operation == "img2img" else model.text2img).__name__,
            "sampler": type(getattr(model.text2img, "scheduler", None)).__name__,
            "memory_ladder": log,
            "tiled": tiled,
            "tile_plan": None,
            "render_size": [job.width, job.height],
            "cost_basis": basis,
            "seeds": job.seeds,
        }
        if tiled:
            metadata["tile_plan"] = {
                "tile_size": plan.tile_size,
                "overlap": plan.overlap,
                "blend": plan.blend,
                "latent_scale": model.vae_scale_factor,
                "tiles": engine.tile_boxes(model, plan, job.width, job.height),
            }
        peak = engine.peak_memory_bytes(model.device)
        if peak is not None:
            metadata["peak_memory_bytes"] = peak
        return ImageResult(
            images=out,
            seed=job.seeds[0],
            cost_usd=cost,
            latency_s=time.perf_counter() - t0,
            metadata=metadata,
        )
