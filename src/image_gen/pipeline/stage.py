"""One stage of a run, as numbered steps (the runner calls ``StageExecutor.run`` for each stage in order):

1. plan      done before the run (``pipeline/plan.py``): every model the stage may call, routed and checked
2. gate      ``gate = "approval"``: the run waits as ``awaiting_approval`` until a decision is recorded for this
             run, whether or not the stage's image is cached
3. cache     a stage whose cache key (what decides the pixels) was rendered before is taken from the cache
4. budget    each call's expected cost is reserved against the caps before it is sent (``pipeline/calls.py``)
5. call      the provider call, written before it is sent and settled when it returns; retried; reused on resume
6. size      the delivered size is made to equal the asked size (upscale, crop to ratio, resample), recorded
7. upscale   ``upscale = "2x"|"4x"``: the model's native upscaler, or tiled image-to-image through it
8. adapters  named adapters (color-match, typography-preserve, ...)
9. QA        automatic checks; a failing output is re-rolled with a new seed, then escalated
10. record   the artifact (content-addressed), the cache entry, the stage row
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from image_gen.pipeline.calls import CallMaker, StageStop, json_safe
from image_gen.providers.base import ImageRequest, ImageResult, OutOfMemory
from image_gen.store.models import CacheEntry, StageRun, utcnow

if TYPE_CHECKING:
    from PIL import Image

    from image_gen.pipeline.plan import Route, StagePlan
    from image_gen.pipeline.runner import Brief
    from image_gen.store.registry import Registry
    from image_gen.workspace import Workspace

DEFAULT_SIZE = 1024
DEFAULT_HANDOFF_STRENGTH = 0.55
UPSCALE_TILE_STRENGTH = 0.25
PIXEL_PARAMS = ("operation", "width", "height", "aspect_ratio", "seed", "steps", "guidance_scale", "strength",
                "num_images", "negative_prompt", "options", "upscale", "tile_size", "overlap", "adapters")
"""The stage parameters that decide the pixels: only these enter the cache key (never retries or QA policy)."""


def digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def derived_seed(prompt: str, stage: str) -> int:
    """The seed of a stage that sets none: stable for a prompt, so an unchanged re-run hits the cache."""
    return int(digest("seed", prompt, stage)[:8], 16) % 2**31


@dataclass
class StageOutcome:
    name: str
    model: str
    status: str
    cache_hit: bool = False
    cost_usd: float = 0.0
    latency_s: float = 0.0
    calls: int = 0
    artifact: str | None = None
    reason: str | None = None
    qa_passed: bool | None = None
    outputs: list[str] = field(default_factory=list)
    """Every image the stage delivered: its artifact first, then the other images of a batch."""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class StageContext:
    run_id: str
    row: StageRun
    plan: StagePlan
    brief: Brief
    params: dict[str, Any]
    rerolls: int = 0
    escalated_to: str | None = None
    model_used: str | None = None
    seed_used: int | None = None
    sampler: str | None = None
    verdict: Any = None
    size_fixes: list[str] = field(default_factory=list)
    batch: list[Any] = field(default_factory=list)
    """The other images of the chosen call (``num_images`` > 1): delivered at the asked size, recorded, exported."""
    image_after_adapters: Any = None
    vendor_png: dict[int, tuple[Any, bytes]] = field(default_factory=dict)
    """Images that are pixel for pixel the PNG a call returned (by ``id``, with the image and those bytes): stored
    by adding the metadata chunks to the vendor's bytes instead of encoding the pixels again."""


def stage_params(plan: StagePlan, brief: Brief, input_size: tuple[int, int] | None) -> dict[str, Any]:
    """The stage's effective parameters for this brief (``input_size``: the incoming image's, if any)."""
    st = plan.settings
    width, height = st.width, st.height
    if brief.width and brief.height:  # a brief's own size (a batch's prompt file) overrides the stage's
        width, height = brief.width, brief.height
    handoff = input_size is not None and plan.entry.can("img2img")
    if not (width and height):
        if input_size is not None and not st.aspect_ratio:  # a handoff without an asked size keeps the size
            width, height = width or input_size[0], height or input_size[1]
        elif st.aspect_ratio:
            a, b = (int(x) for x in st.aspect_ratio.split(":"))
            scale = (DEFAULT_SIZE * DEFAULT_SIZE / (a * b)) ** 0.5
            width, height = int(round(a * scale / 16) * 16), int(round(b * scale / 16) * 16)
        else:
            width, height = width or DEFAULT_SIZE, height or DEFAULT_SIZE
    return {
        "operation": "img2img" if handoff else "generate",
        "width": width,
        "height": height,
        "aspect_ratio": None if brief.width and brief.height else st.aspect_ratio,
        "seed": (brief.seed if brief.seed is not None else st.seed if st.seed is not None
                 else derived_seed(brief.prompt, plan.name)),
        "steps": st.steps,
        "guidance_scale": st.guidance_scale,
        "strength": (st.strength if st.strength is not None else DEFAULT_HANDOFF_STRENGTH) if handoff else None,
        "num_images": st.num_images or 1,
        "negative_prompt": st.negative_prompt or brief.negative_prompt,
        "options": {**plan.entry.options, **(st.options or {})},
        "upscale": st.upscale,
        "tile_size": st.tile_size,
        "overlap": st.overlap,
        "adapters": list(st.adapters or []),
        "retries": st.retries if st.retries is not None else 3,
        "max_rerolls": st.max_rerolls or 0,
        "escalate_to": st.escalate_to,
        "fallback_model": st.fallback_model,
        "qa": (st.qa.model_dump() if st.qa else None),
        "handoff": "img2img" if handoff else ("none: model has no image-to-image" if input_size else None),
    }


def asked_size(params: dict[str, Any]) -> tuple[int, int]:
    """The size the stage delivers: its width x height, times the upscale factor."""
    f = int(params["upscale"].rstrip("x")) if params.get("upscale") else 1
    return params["width"] * f, params["height"] * f


def cache_key(plan: StagePlan, brief: Brief, params: dict[str, Any], input_sha: str | None) -> str:
    """What decides the stage's pixels: model (id, version, routed provider, vendor model), prompt, negative
    prompt, seed, every sampling parameter, the input artifact, adapters. Run policy (retries, re-rolls,
    fallbacks, QA thresholds) is not in it: changing it never re-bills a rendered stage."""
    pixels = {k: params.get(k) for k in PIXEL_PARAMS}
    return digest("stage-v2", plan.entry.id, plan.entry.version, plan.provider, plan.entry.vendor_model,
                  brief.prompt, pixels, input_sha)


class StageExecutor:
    """Steps 2-10 of one stage, for one run."""

    def __init__(self, workspace: Workspace, registry: Registry, calls: CallMaker, simulate: bool) -> None:
        self.workspace = workspace
        self.registry = registry
        self.calls = calls
        self.simulate = simulate

    def run(self, run_id: str, row: StageRun, plan: StagePlan, brief: Brief, input_sha: str | None,
            layout_sha: str | None) -> StageOutcome:
        reg = self.registry
        gate_stop, note = None, None
        with reg.session():  # the stage's start, its gate and its cache lookup: one transaction
            art = reg.artifact(input_sha) if input_sha else None
            params = stage_params(plan, brief, (art.width, art.height) if art is not None else None)
            key = cache_key(plan, brief, params, input_sha)
            reg.update(StageRun, row.id, params=params, seed=params["seed"], cache_key=key,
                       input_artifact=input_sha, started_at=utcnow(), status="running", reason=None)

            # 2. gate: a decision for this run, whatever the cache holds
            if plan.settings.gate == "approval":
                decisions = [a for a in reg.approvals(run_id) if a.stage_name == plan.name]
                if not decisions or decisions[-1].decision != "approved":
                    reg.update(StageRun, row.id, status="awaiting_approval",
                               reason="waiting for approval: image-gen approve " + run_id)
                    gate_stop = StageStop("awaiting_approval", f"stage {plan.name} waits for approval")
                else:
                    note = f"approved by {decisions[-1].decided_by or 'someone'}"
            hit = reg.cache_get(key) if gate_stop is None else None
        if gate_stop is not None:
            raise gate_stop

        # 3. cache
        if hit is not None and all(self.workspace.artifacts().exists(a) for a in hit.artifacts):
            produced = {k: hit.result.get(k) for k in ("cost_usd", "latency_s", "calls", "rerolls")}
            why = f"{note}; taken from the cache at no cost" if note else None
            reg.update(StageRun, row.id, status="done", cache_hit=True, artifact_sha=hit.artifacts[0],
                       params={**params, "from_cache": produced}, outputs=hit.artifacts, seed=hit.seed,
                       qa=hit.result.get("qa"), adapters=hit.result.get("adapters"), cost_usd=0.0, latency_s=0.0,
                       finished_at=utcnow(), reason=why, model_id=hit.model_id)
            return StageOutcome(plan.name, hit.model_id, "done", cache_hit=True, artifact=hit.artifacts[0],
                                reason=why,
                                qa_passed=None if hit.result.get("qa") is None else hit.result["qa"]["passed"])

        ctx = StageContext(run_id=run_id, row=row, plan=plan, brief=brief, params=params)
        try:
            image, result_meta = self._render_with_qa(ctx, input_sha)
            image = self._deliver_size(ctx, image)                                    # 6. size
            if params["upscale"]:                                                      # 7. upscale
                image = self._upscale(ctx, image, int(params["upscale"].rstrip("x")))
            adapters_record = self._apply_adapters(ctx, image, input_sha, layout_sha)  # 8. adapters
            image = ctx.image_after_adapters or image
            changed = params["adapters"] or params["upscale"] or ctx.size_fixes
            verdict = self._qa(ctx, image, asked=asked_size(params)) if changed else ctx.verdict  # 9. QA
        except StageStop as stop:
            if stop.status == "taken_over":  # another process owns the run now: its rows are not ours to write
                raise
            with reg.session():
                cost, latency, _ = self._spent(row.id)
                reg.update(StageRun, row.id, status=stop.status, reason=stop.reason, cost_usd=cost,
                           latency_s=latency, finished_at=utcnow(), rerolls=ctx.rerolls, escalated_to=ctx.escalated_to)
            raise

        # 10. record: the images are stored first, then their rows, the stage's and the cache's in one transaction
        stored = [self._store(ctx, image, final=True)]
        stored += [self._store(ctx, self._deliver_size(ctx, g.to_pil().convert("RGB"), upscale_short=False),
                               final=False, seed=g.seed) for g in ctx.batch]
        shas = [sha for sha, _ in stored]
        sha = shas[0]
        qa = verdict.to_dict() if verdict is not None else None
        with reg.session():
            for _, record in stored:
                record()
            cost, latency, calls = self._spent(row.id)
            reg.update(StageRun, row.id, status="done", artifact_sha=sha, outputs=shas, seed=ctx.seed_used,
                       qa=qa, adapters=adapters_record, cost_usd=cost, latency_s=latency, finished_at=utcnow(),
                       rerolls=ctx.rerolls, escalated_to=ctx.escalated_to, model_id=ctx.model_used or plan.entry.id,
                       params={**params, **result_meta}, reason=note)
            reg.cache_put(CacheEntry(key=key, model_id=ctx.model_used or plan.entry.id, artifacts=shas,
                                     seed=ctx.seed_used, result={"qa": qa, "adapters": adapters_record,
                                                                 "cost_usd": cost, "latency_s": latency,
                                                                 "calls": calls, "rerolls": ctx.rerolls}))
        return StageOutcome(plan.name, ctx.model_used or plan.entry.id, "done", cost_usd=cost, latency_s=latency,
                            calls=calls, artifact=sha, qa_passed=None if qa is None else qa["passed"], reason=note)

    def _spent(self, stage_run_id: int) -> tuple[float, float, int]:
        """The stage's cost, latency and number of calls from its recorded calls (a resumed stage includes the
        earlier ones): the registry, not this process, is the truth."""
        cost, latency, n = self.registry.call_totals(stage_run_id=stage_run_id)
        return round(cost, 6), round(latency, 4), n

    def _call(self, ctx: StageContext, route: Route, request: ImageRequest, purpose: str,
              index: int | None = None) -> ImageResult:
        return self.calls.call(run_id=ctx.run_id, stage_run_id=ctx.row.id, route=route, request=request,
                               purpose=purpose, retries=ctx.params["retries"], index=index, priority=ctx.row.idx)

    # 5 + 9. render, QA, re-roll, escalate ----------------------------------------------------------------------
    def _request(self, ctx: StageContext, route: Route, seed: int, input_sha: str | None) -> ImageRequest:
        p, entry = ctx.params, route.entry
        init = self.workspace.artifacts().read_bytes(input_sha) if (input_sha and entry.can("img2img")) else None
        options = dict(p["options"])
        if p["tile_size"] and route.provider == "local":  # latent tiling is the local engine's; vendors tile upscales
            options.setdefault("tile_size", p["tile_size"])
            options.setdefault("overlap", p["overlap"] if p["overlap"] is not None else 32)
        return ImageRequest(
            model=entry.id, vendor_model=entry.vendor_model, prompt=ctx.brief.prompt,
            operation="img2img" if init is not None else "generate",
            negative_prompt=p["negative_prompt"], width=p["width"], height=p["height"],
            aspect_ratio=p["aspect_ratio"], seed=seed, steps=p["steps"], guidance_scale=p["guidance_scale"],
            init_image=init, strength=p["strength"] if init is not None else None, num_images=p["num_images"],
            options=options,
        )

    def _render_with_qa(self, ctx: StageContext, input_sha: str | None) -> tuple[Image.Image, dict[str, Any]]:
        plan, p = ctx.plan, ctx.params
        if plan.settings.render is False:
            if input_sha is None:
                raise StageStop("failed", f"stage {plan.name} has render = false but no input image", "bad_request")
            ctx.model_used = plan.entry.id
            image = self.workspace.artifacts().open(input_sha).convert("RGB")
            ctx.verdict = self._qa(ctx, image)
            return image, {"rendered": False}
        candidates: list[tuple[Route, str]] = [(plan.route, "stage")]
        if "escalation" in plan.routes:
            candidates.append((plan.routes["escalation"], "escalation"))
        # an attempt: (image, verdict, metadata, seed used, model used, the call's other images, sampler)
        best: tuple[Image.Image, Any, dict[str, Any], int | None, str, list[Any], str | None] | None = None
        chosen = None
        for n, (route, purpose) in enumerate(candidates):
            rolls = p["max_rerolls"] + 1 if purpose == "stage" else 1
            for k in range(rolls):
                seed = (p["seed"] + 7919 * (k + n * 100)) % (2**32 - 1)  # the asked seed first, as given
                why = purpose if k == 0 else "reroll"
                request = self._request(ctx, route, seed, input_sha)
                result, used = self._call_with_fallback(ctx, route, request, why)
                first = result.images[0]
                returned = first.to_pil(lazy=True)  # its pixels are decoded only if something looks at them
                image = returned if returned.mode == "RGB" else returned.convert("RGB")
                if returned.mode == "RGB" and returned.format == "PNG":
                    ctx.vendor_png[id(image)] = (image, first.data)
                meta = {"vendor": json_safe(result.metadata), "returned_size": [image.width, image.height]}
                if k > 0:
                    ctx.rerolls += 1
                if purpose == "escalation":
                    ctx.escalated_to = route.entry.id
                verdict = self._qa(ctx, image, asked=None, safety=result.metadata)
                sampler = result.metadata.get("sampler") if isinstance(result.metadata, dict) else None
                attempt = (image, verdict, meta, first.seed if first.seed is not None else result.seed,
                           used.entry.id, list(result.images[1:]), sampler)
                if verdict is None or verdict.passed:
                    chosen = attempt
                    break
                best = best or attempt  # failed attempts stay in the registry through their calls
            if chosen is not None:
                break
        picked = chosen or best
        assert picked is not None
        image, ctx.verdict, meta, ctx.seed_used, ctx.model_used, ctx.batch, ctx.sampler = picked
        return image, meta

    def _call_with_fallback(self, ctx: StageContext, route: Route, request: ImageRequest,
                            purpose: str) -> tuple[ImageResult, Route]:
        """The call, or on out-of-memory (after the engine's own ladder) the stage's lighter fallback model."""
        try:
            return self._call(ctx, route, request, purpose), route
        except OutOfMemory as exc:
            fb = ctx.plan.routes.get("fallback")
            if fb is None:
                raise StageStop("failed", f"out of memory on {route.entry.id} and no fallback_model: {exc}",
                                "out_of_memory") from exc
            req = ImageRequest(**{**request.__dict__, "model": fb.entry.id, "vendor_model": fb.entry.vendor_model})
            try:
                return self._call(ctx, fb, req, "fallback"), fb
            except OutOfMemory as exc2:
                raise StageStop("failed", f"out of memory on {route.entry.id} and on fallback {fb.entry.id}: "
                                f"{exc2}", "out_of_memory") from exc2

    def _qa(self, ctx: StageContext, image: Image.Image, asked: tuple[int, int] | None = None,
            safety: dict[str, Any] | None = None) -> Any:
        qa_cfg = ctx.plan.settings.qa
        if qa_cfg is not None and not qa_cfg.enabled:
            return None
        from image_gen.qa import evaluate

        return evaluate(image, prompt=ctx.brief.prompt, expect_text=ctx.brief.expect_text, asked_size=asked,
                        settings=qa_cfg, safety_flags=_safety_flags(safety))

    # 6. size ----------------------------------------------------------------------------------------------------
    def _deliver_size(self, ctx: StageContext, image: Image.Image, *, upscale_short: bool = True) -> Image.Image:
        """Make the image exactly the asked size. A model that rendered at its native size, well below the asked
        one, is upscaled (native upscaler, or tiled image-to-image with the stage's tile settings) first; then
        the image is cropped to the asked ratio and resampled. Each fix is recorded."""
        from PIL import Image as PILImage

        w, h = ctx.params["width"], ctx.params["height"]
        if (image.width, image.height) == (w, h):
            return image
        if upscale_short and image.width * image.height * 2 <= w * h:
            linear = (w * h / (image.width * image.height)) ** 0.5
            image = self._upscale(ctx, image, 2 if linear <= 2.0 + 1e-6 else 4)
        fixes = []
        src_ratio, ratio = image.width / image.height, w / h
        if abs(src_ratio - ratio) > 0.01:
            if src_ratio > ratio:
                nw = round(image.height * ratio)
                x0 = (image.width - nw) // 2
                image = image.crop((x0, 0, x0 + nw, image.height))
            else:
                nh = round(image.width / ratio)
                y0 = (image.height - nh) // 2
                image = image.crop((0, y0, image.width, y0 + nh))
            fixes.append("cropped to ratio")
        if (image.width, image.height) != (w, h):
            fixes.append(f"resampled {image.width}x{image.height} -> {w}x{h}")
            image = image.resize((w, h), PILImage.Resampling.LANCZOS)
        ctx.size_fixes.extend(fixes)
        return image

    # 7. upscale -------------------------------------------------------------------------------------------------
    def _upscale(self, ctx: StageContext, image: Image.Image, factor: int) -> Image.Image:
        from PIL import Image as PILImage

        from image_gen.providers.base import encode_png

        p = ctx.params
        target = (image.width * factor, image.height * factor)
        made_by = ctx.model_used or ctx.plan.entry.id
        how = ctx.plan.upscale_route(made_by)
        if how is None:
            raise StageStop("failed", f"upscale: {made_by} has neither a native upscaler nor image-to-image",
                            "bad_request")
        kind, route = how
        if kind == "native":
            req = ImageRequest(model=route.entry.id, vendor_model=route.entry.vendor_model, prompt=ctx.brief.prompt,
                               operation="upscale", init_image=encode_png(image), seed=p["seed"],
                               width=target[0], height=target[1], options={"factor": factor})
            result = self._call(ctx, route, req, "upscale")
            out = result.images[0].to_pil().convert("RGB")
            if out.size != target:
                out = out.resize(target, PILImage.Resampling.LANCZOS)
            ctx.size_fixes.append(f"upscaled {factor}x with {route.entry.id}")
            return out
        from image_gen.pipeline.upscale import tiled_upscale

        tile_size = p["tile_size"] or 512
        overlap = p["overlap"] if p["overlap"] is not None else 32

        def render_tile(tile: Image.Image, index: int) -> Image.Image:
            req = ImageRequest(model=route.entry.id, vendor_model=route.entry.vendor_model, prompt=ctx.brief.prompt,
                               operation="img2img", init_image=encode_png(tile), strength=UPSCALE_TILE_STRENGTH,
                               width=tile.width, height=tile.height, seed=(p["seed"] + index) % 2**31,
                               steps=p["steps"], guidance_scale=p["guidance_scale"], options=p["options"])
            res = self._call(ctx, route, req, "tile", index=index)
            return res.images[0].to_pil().convert("RGB").resize(tile.size, PILImage.Resampling.LANCZOS)

        out = tiled_upscale(image, factor, tile_size=tile_size, overlap=overlap, render_tile=render_tile)
        ctx.size_fixes.append(f"upscaled {factor}x in tiles of {tile_size} (overlap {overlap}) with {route.entry.id}")
        return out

    # 8. adapters ------------------------------------------------------------------------------------------------
    def _apply_adapters(self, ctx: StageContext, image: Image.Image, input_sha: str | None,
                        layout_sha: str | None) -> list[dict[str, Any]]:
        from image_gen.pipeline.adapters import AdapterContext, get_adapter

        names = ctx.params["adapters"]
        if not names:
            return []
        store = self.workspace.artifacts()
        prev = store.open(input_sha).convert("RGB") if input_sha else None
        layout = store.open(layout_sha).convert("RGB") if layout_sha else prev
        actx = AdapterContext(prompt=ctx.brief.prompt, expected_texts=ctx.brief.expected(), stage_name=ctx.plan.name,
                              previous_image=prev, layout_image=layout)
        records = []
        for name in names:
            res = get_adapter(name)(image, actx)
            image = res.image
            records.append({"adapter": name, **json_safe(res.record)})
        ctx.image_after_adapters = image
        return records

    def _store(self, ctx: StageContext, image: Image.Image, *, final: bool,
               seed: int | None = None) -> tuple[str, Callable[[], None]]:
        """The image in the artifact store, with its metadata: its sha and what records its row (called by the
        caller inside its transaction)."""
        from image_gen.pipeline.calls import record_artifact

        p = ctx.params
        meta = {
            "prompt": ctx.brief.prompt, "negative_prompt": p["negative_prompt"], "model": ctx.model_used,
            "stage": ctx.plan.name, "seed": seed if seed is not None else ctx.seed_used, "steps": p["steps"],
            "guidance_scale": p["guidance_scale"], "sampler": ctx.sampler, "provider": ctx.plan.provider,
            "strength": p["strength"], "size": f"{image.width}x{image.height}", "simulated": self.simulate,
            "size_fixes": ctx.size_fixes if final else [], "upscale": p["upscale"], "adapters": p["adapters"],
        }
        store = self.workspace.artifacts()
        same = ctx.vendor_png.get(id(image))
        if same is not None and same[0] is image:
            sha, _, data = store.put_png(same[1], meta)
        else:
            sha, _, data = store.put_image(image, meta)
        size = len(data)
        return sha, lambda: record_artifact(self.registry, store, self.workspace.root, sha, image, self.simulate,
                                            size)


def _safety_flags(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    """The vendor's safety signals as QA flags (a flag is raised when true or a non-empty reason)."""
    if not meta:
        return None
    flags: dict[str, Any] = {}
    if "is_image_safe" in meta:
        flags["unsafe_image"] = meta["is_image_safe"] is False
    reason = meta.get("finish_reason")
    if isinstance(reason, str) and reason.upper() not in ("SUCCESS", "STOP", ""):
        flags["finish_reason"] = reason
    for key in ("rai_filtered_reason", "raiFilteredReason"):
        if meta.get(key):
            flags["rai_filtered_reason"] = meta[key]
    return flags or None
