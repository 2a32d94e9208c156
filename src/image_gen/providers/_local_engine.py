"""Torch side of the local diffusers engine: device and dtype, the pipeline cache, one generation attempt.

Imported only when the local provider runs (torch and diffusers load with it). One attempt follows an
:class:`AttemptPlan` (the memory-ladder rung being tried): VAE tiling and slicing, model CPU offload, tiled
generation and images per forward pass.

Tiled generation is MultiDiffusion / Mixture of Diffusers: the pipeline runs its own loop (prompt encoding,
scheduler, image-to-image noising, guidance) on the full latent canvas, but the denoiser's forward pass
is replaced for the duration of the call by one that runs the real denoiser on overlapping latent tiles and
blends their noise predictions with the shared tile plan's normalised weights (``image_gen.imaging.tiling``).
The scheduler then steps the blended prediction, so every tile sees the same consistent canvas at every step.
The latents are decoded tile by tile with feathered blending in pixel space. Memory then follows the tile, not
the image: only the latent canvas (1/64 of the pixels, a few channels) and the output image grow with the
area.
"""

from __future__ import annotations

import gc
import inspect
import json
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

from image_gen.imaging.tiling import Tile, TileAccumulator, TilePlan, axis_profile, to_uint8

OOM_MARKERS = ("out of memory", "can't allocate memory", "not enough memory", "failed to allocate")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA's ``OutOfMemoryError``, MPS's and the CPU allocator's out-of-memory errors."""
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in OOM_MARKERS)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA device")
    if name == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("device 'mps' was asked for but torch sees no Apple MPS device")
    return torch.device(name)


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    if name != "auto":
        return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[name]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


@dataclass(frozen=True)
class AttemptPlan:
    """One rung of the memory ladder, as settings for one generation attempt."""

    vae_tiling: bool = False
    cpu_offload: bool = False
    tile_size: int | None = None
    """Pixel tile side for tiled generation; None renders the whole canvas in one pass."""
    overlap: int = 64
    batch: int = 1
    """Images per denoiser forward pass."""
    tile_batch: int = 1
    """Latent tiles per denoiser forward pass (tiled generation)."""
    blend: str = "cosine"


@dataclass
class LoadedModel:
    """A pipeline held in the process cache, with its image-to-image twin sharing the same weights."""

    source: str
    device: torch.device
    dtype: torch.dtype
    text2img: Any
    lock: threading.Lock = field(default_factory=threading.Lock)
    _img2img: Any = None
    _offloaded_by: Any = None

    @property
    def img2img(self) -> Any:
        if self._img2img is None:
            from diffusers import AutoPipelineForImage2Image

            self._img2img = AutoPipelineForImage2Image.from_pipe(self.text2img)
            self._img2img.set_progress_bar_config(disable=True)
        return self._img2img

    @property
    def denoiser(self) -> torch.nn.Module:
        pipe = self.text2img
        module = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
        if module is None:
            raise ValueError(f"{type(pipe).__name__} has neither a transformer nor a UNet to tile")
        return module

    @property
    def vae_scale_factor(self) -> int:
        return int(getattr(self.text2img, "vae_scale_factor", 8))

    @property
    def latent_multiple(self) -> int:
        """Latent side multiple the denoiser needs (a transformer's patch size)."""
        return int(getattr(self.denoiser.config, "patch_size", 1) or 1)

    @property
    def pixel_multiple(self) -> int:
        return self.vae_scale_factor * self.latent_multiple

    @property
    def native_size(self) -> int:
        config: Any = self.denoiser.config
        return int(config.sample_size) * self.vae_scale_factor

    def set_offload(self, pipe: Any, on: bool) -> None:
        """Move the weights between 'all on the device' and 'model CPU offload' as the attempt asks."""
        if self._offloaded_by is not None and (not on or self._offloaded_by is not pipe):
            self._offloaded_by.remove_all_hooks()
            self._offloaded_by = None
            self.text2img.to(self.device)
        if on and self._offloaded_by is None:
            pipe.enable_model_cpu_offload(device=self.device)
            self._offloaded_by = pipe


_CACHE: dict[tuple[str, str, str], LoadedModel] = {}
_CACHE_LOCK = threading.Lock()


def _null_components(folder: Path) -> dict[str, None]:
    """Components a saved pipeline left out (``[null, null]`` in model_index.json, e.g. SD3 without T5)."""
    index = folder / "model_index.json"
    if not index.is_file():
        return {}
    data = json.loads(index.read_text(encoding="utf-8"))
    return {k: None for k, v in data.items() if isinstance(v, list) and v and v[0] is None}


def load(
    source: str,
    device: torch.device,
    dtype: torch.dtype,
    *,
    local_files_only: bool = False,
    variant: str | None = None,
) -> LoadedModel:
    """The cached pipeline for ``source`` (hub id or folder) on ``device``/``dtype``; loads on first use."""
    key = (source, str(device), str(dtype))
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        from diffusers import AutoPipelineForText2Image

        kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": local_files_only}
        if variant:
            kwargs["variant"] = variant
        folder = Path(source).expanduser()
        if folder.is_dir():
            kwargs.update(_null_components(folder))
            source_arg = str(folder)
        else:
            source_arg = source
        pipe = AutoPipelineForText2Image.from_pretrained(source_arg, **kwargs)
        pipe.set_progress_bar_config(disable=True)
        pipe.to(device)
        loaded = LoadedModel(source=source, device=device, dtype=dtype, text2img=pipe)
        _CACHE[key] = loaded
        return loaded


def clear_cache() -> None:
    """Drop every cached pipeline (tests, or to hand the memory back)."""
    with _CACHE_LOCK:
        devices = {m.device for m in _CACHE.values()}
        _CACHE.clear()
    for d in devices:
        free_memory(d)


@dataclass
class GenerationJob:
    """What one call asks for, in the engine's terms (render sizes are already pipeline multiples)."""

    operation: str
    prompt: str
    negative_prompt: str | None
    width: int
    height: int
    seeds: list[int]
    steps: int
    guidance_scale: float | None
    init_image: Image.Image | None = None
    strength: float | None = None
    asked_width: int = 0
    asked_height: int = 0
    """The size asked for; the render is cropped to it (centred) when the pipeline needs multiples."""


ForwardHook = Callable[[AttemptPlan, int], None]
"""Called before each denoiser forward pass with the attempt and the images (times latent tiles) stacked in the
pass; it may raise, which ends the attempt as the denoiser's own error would."""


def run_attempt(
    model: LoadedModel, job: GenerationJob, plan: AttemptPlan, before_forward: ForwardHook | None = None
) -> list[Image.Image]:
    """Render every image of ``job`` under ``plan``; raises the engine's own error when memory runs out."""
    pipe = model.img2img if job.operation == "img2img" else model.text2img
    model.set_offload(pipe, plan.cpu_offload)
    vae = pipe.vae
    # diffusers' own VAE tiling serves the ladder's vae_tiling rung, and the image-to-image encode of a tiled
    # generation (whose decode is ours, below).
    if plan.vae_tiling or (plan.tile_size and job.operation == "img2img"):
        vae.enable_tiling()
    else:
        vae.disable_tiling()
    # (diffusers' VAE tiling takes effect above the VAE's own sample size; slicing decodes one image at a time.)
    if plan.vae_tiling:
        vae.enable_slicing()
    else:
        vae.disable_slicing()
    params = inspect.signature(pipe.__call__).parameters
    images: list[Image.Image] = []
    for start in range(0, len(job.seeds), plan.batch):
        seeds = job.seeds[start : start + plan.batch]
        kwargs: dict[str, Any] = {
            "prompt": job.prompt,
            "num_inference_steps": job.steps,
            "num_images_per_prompt": len(seeds),
            # CPU generators: the same seed gives the same latents on every device and under offload.
            "generator": [torch.Generator("cpu").manual_seed(s) for s in seeds],
            "output_type": "latent" if plan.tile_size else "pil",
        }
        if job.negative_prompt:
            kwargs["negative_prompt"] = job.negative_prompt
        if job.guidance_scale is not None:
            kwargs["guidance_scale"] = job.guidance_scale
        if "height" in params:
            kwargs["height"], kwargs["width"] = job.height, job.width
        if job.operation == "img2img":
            kwargs["image"] = job.init_image
            kwargs["strength"] = job.strength if job.strength is not None else 0.6
        per_pass = len(seeds) * (plan.tile_batch if plan.tile_size else 1)
        with _forward_hook(model.denoiser, plan, per_pass, before_forward), _tiled_denoiser(model, plan):
            out = pipe(**kwargs)
        if plan.tile_size:
            vae.disable_tiling()
            images.extend(decode_tiled(vae, out.images, plan, model.vae_scale_factor))
        else:
            images.extend(out.images)
        del out
    return images


@contextmanager
def _forward_hook(
    denoiser: torch.nn.Module, plan: AttemptPlan, batch: int, before_forward: ForwardHook | None
) -> Iterator[None]:
    """Run ``before_forward(plan, batch)`` before each of the denoiser's forward passes while the block runs."""
    if before_forward is None:
        yield
        return

    def hook(_module: torch.nn.Module, _args: Any) -> None:
        before_forward(plan, batch)

    handle = denoiser.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def latent_tiles(model: LoadedModel, plan: AttemptPlan) -> tuple[int, int]:
    """The plan's tile side and overlap in latent units (tile side a multiple of the denoiser's patch)."""
    assert plan.tile_size is not None
    vsf, mult = model.vae_scale_factor, model.latent_multiple
    tile = max(mult, plan.tile_size // vsf // mult * mult)
    overlap = min(plan.overlap // vsf, (tile - 1) // 2)
    return tile, overlap


@contextmanager
def _tiled_denoiser(model: LoadedModel, plan: AttemptPlan) -> Iterator[None]:
    """Swap the denoiser's forward for a tiled, blended one for the duration of one pipeline call."""
    if not plan.tile_size:
        yield
        return
    module = model.denoiser
    tile, overlap = latent_tiles(model, plan)
    had_own = "forward" in module.__dict__
    previous = module.__dict__.get("forward")
    # module.forward may already be an accelerate offload hook's wrapper; tiles go through it too.
    tiled = multidiffusion_forward(module.forward, tile, overlap, plan.blend, plan.tile_batch)
    setattr(module, "forward", tiled)  # noqa: B010
    try:
        yield
    finally:
        if had_own:
            setattr(module, "forward", previous)  # noqa: B010
        else:
            del module.forward


def _repeat_batch(value: Any, batch: int, times: int) -> Any:
    """``value`` with every tensor whose first dimension is the batch repeated ``times`` (dicts, lists too)."""
    if times == 1:
        return value
    if isinstance(value, torch.Tensor):
        if value.ndim >= 1 and value.shape[0] == batch:
            return value.repeat(times, *([1] * (value.ndim - 1)))
        return value
    if isinstance(value, dict):
        return {k: _repeat_batch(v, batch, times) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_repeat_batch(v, batch, times) for v in value)
    return value


def multidiffusion_forward(
    forward: Callable[..., Any], tile: int, overlap: int, blend: str, tile_batch: int = 1
) -> Callable[..., Any]:
    """A denoiser forward that predicts on latent tiles and returns their weight-blended prediction.

    Works for transformers (``hidden_states=`` keyword) and UNets (``sample`` first positional). Up to
    ``tile_batch`` tiles go through one forward pass, stacked on the batch axis; every other argument whose
    first dimension is the batch (text embeddings, pooled projections, per-sample timesteps) is repeated to
    match, and the rest is passed unchanged.
    """
    weights_cache: dict[tuple[int, int, str], list[tuple[Tile, torch.Tensor]]] = {}

    def weights_for(w: int, h: int, x: torch.Tensor) -> list[tuple[Tile, torch.Tensor]]:
        key = (w, h, str(x.device))
        if key not in weights_cache:
            plan = TilePlan(w, h, tile, overlap)
            weights_cache[key] = [
                (t, torch.tensor(wt, device=x.device, dtype=torch.float32)) for t, wt in plan.normalised_weights(blend)
            ]
        return weights_cache[key]

    def forward_tiled(*args: Any, **kwargs: Any) -> Any:
        if args:
            x, rest = args[0], args[1:]
        else:
            name = "hidden_states" if "hidden_states" in kwargs else "sample"
            x = kwargs[name]
        batch = x.shape[0]

        def call(xs: torch.Tensor, times: int) -> Any:
            kw = _repeat_batch(kwargs, batch, times)
            if args:
                return forward(xs, *_repeat_batch(rest, batch, times), **kw)
            return forward(**{**kw, name: xs})

        h, w = x.shape[-2:]
        tiles = weights_for(w, h, x)
        if len(tiles) == 1:
            return call(x, 1)
        canvas: torch.Tensor | None = None
        first: Any = None
        for g in range(0, len(tiles), tile_batch):
            group = tiles[g : g + tile_batch]
            # A plan's tiles all have one size, so a group stacks on the batch axis.
            xs = torch.cat([x[..., t.rows, t.cols] for t, _ in group])
            out = call(xs, len(group))
            pred = out[0] if isinstance(out, tuple) else out.sample
            if canvas is None:
                first = out
                canvas = torch.zeros((batch, *pred.shape[1:-2], h, w), device=pred.device, dtype=torch.float32)
            for i, (t, wt) in enumerate(group):
                canvas[..., t.rows, t.cols].add_(pred[i * batch : (i + 1) * batch].float() * wt)
            del out, pred, xs
        assert canvas is not None
        result = canvas.to(x.dtype)
        if isinstance(first, tuple):
            return (result,)
        return type(first)(sample=result)

    return forward_tiled


def _scaled_axis_weights(
    spans: list[tuple[int, int]], scale: int, overlap: int, blend: str
) -> list[npt.NDArray[np.float32]]:
    """Per-span feather profiles of latent spans scaled to pixels, normalised to add to 1 along the axis."""
    size = spans[-1][1] * scale
    profiles = [
        axis_profile((b - a) * scale, overlap, blend, start_edge=a == 0, end_edge=b * scale == size) for a, b in spans
    ]
    total = np.zeros(size, dtype=np.float64)
    for (a, b), prof in zip(spans, profiles, strict=True):
        total[a * scale : b * scale] += prof
    return [
        (prof / total[a * scale : b * scale]).astype(np.float32) for (a, b), prof in zip(spans, profiles, strict=True)
    ]


def decode_tiled(vae: Any, latents: torch.Tensor, plan: AttemptPlan, vsf: int) -> list[Image.Image]:
    """Decode latents tile by tile, blending the pixel tiles with feathered weights; one image at a time.

    The latent tile plan, scaled by the VAE factor, is a grid of pixel tiles; its separable weights are
    normalised per axis so they add to 1 everywhere and the accumulator keeps no weight-sum canvas.
    """
    tile_px = plan.tile_size or 512
    tile = max(1, tile_px // vsf)
    overlap = min(plan.overlap // vsf, (tile - 1) // 2)
    scaling = float(vae.config.scaling_factor)
    shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
    images = []
    for b in range(latents.shape[0]):
        lat = latents[b : b + 1]
        h, w = lat.shape[-2:]
        lplan = TilePlan(w, h, tile, overlap)
        xs, ys = lplan.x_spans, lplan.y_spans
        wx = _scaled_axis_weights(xs, vsf, overlap * vsf, plan.blend)
        wy = _scaled_axis_weights(ys, vsf, overlap * vsf, plan.blend)
        acc = TileAccumulator(w * vsf, h * vsf, 3, layout="hwc", normalised=True)
        for j, (y0, y1) in enumerate(ys):
            for i, (x0, x1) in enumerate(xs):
                t = Tile(x0, y0, x1, y1)
                z = lat[..., t.rows, t.cols] / scaling + shift
                with torch.no_grad():
                    px = vae.decode(z.to(vae.dtype), return_dict=False)[0]
                arr = ((px[0].float().clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).cpu().numpy()
                del px
                pt, core = (Tile(*(v * vsf for v in box)) for box in (t, lplan.core(t)))
                # The core (covered by this tile alone) is copied, not weighted: most of the tile.
                acc.add(pt, arr, np.outer(wy[j], wx[i]), core=core)
                del arr
        canvas = to_uint8(acc.result())
        del acc
        images.append(Image.fromarray(canvas, "RGB"))
        del canvas
    return images


def tile_boxes(model: LoadedModel, plan: AttemptPlan, width: int, height: int) -> list[list[int]]:
    """The plan's latent tiles as pixel boxes ``[x0, y0, x1, y1]`` on the rendered canvas."""
    tile, overlap = latent_tiles(model, plan)
    vsf = model.vae_scale_factor
    lw, lh = width // vsf, height // vsf
    return [[t.x0 * vsf, t.y0 * vsf, t.x1 * vsf, t.y1 * vsf] for t in TilePlan(lw, lh, tile, overlap).tiles]


def peak_memory_start(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    if device.type == "mps":
        return int(torch.mps.driver_allocated_memory())
    return None


def round_up(value: int, multiple: int) -> int:
    return max(multiple, math.ceil(value / multiple) * multiple)
