"""The studio's routes: pages, the JSON API under ``/api`` and the content-addressed images under ``/artifacts``.

Every action calls ``image_gen.api`` as the CLI does; work that runs stages runs in the studio's worker threads.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from image_gen import api
from image_gen.errors import InputError
from image_gen.records import run_summary
from image_gen.web import queries
from image_gen.web.app import MAX_BRIEFS, MAX_UPLOAD_BYTES, SESSION_COOKIE, Studio

SHA_RE = re.compile(r"[0-9a-f]{64}")
IMMUTABLE = "public, max-age=31536000, immutable"
THUMB_PX = 320
STAGE_ORDER = ("draft", "layout", "final", "hires")
PROMPT_TYPES = (".txt", ".json", ".jsonl")
REPORT_FILE_RE = re.compile(r"(report\.html|report\.md|metrics\.json|[a-z_]+(_\d{2})?\.png)")


def _studio(request: Request) -> Studio:
    studio: Studio = request.app.state.studio
    return studio


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(json.loads(json.dumps(data, default=str)), status_code=status)


def _page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    studio = _studio(request)
    session = request.cookies.get(SESSION_COOKIE)
    ctx = {"request": request, "viewer": studio.viewer(request), "csrf": studio.csrf_for(session),
           "awaiting": queries.awaiting_count(studio.registry), **context}
    return request.app.state.templates.TemplateResponse(request, name, ctx, status_code=status)


# ------------------------------------------------------------------------------------------------------- records
def run_record(studio: Studio, run_id: str) -> dict[str, Any]:
    """One run as ``image-gen runs show --json`` prints it, plus who decided each gate, parent and children."""
    from image_gen.records import run_record as cli_record

    run = studio.registry.find_run(run_id)
    rec = cli_record(studio.ws, run)
    rec["children"] = [c.id for c in queries.children(studio.registry, run.id)]
    return rec


def _stage_views(studio: Studio, rec: dict[str, Any]) -> list[dict[str, Any]]:
    """Per stage, what the run page shows: the record plus its attempts and a QA summary."""
    from image_gen.store.models import StageRun

    rows = {s.idx: s for s in studio.registry.stage_runs(rec["run_id"])}
    views = []
    for s in rec["stages"]:
        row: StageRun | None = rows.get(s["idx"])
        attempts: list[dict[str, Any]] = []
        if row is not None:
            for c in studio.registry.calls(stage_run_id=row.id):
                if c.purpose not in ("stage", "reroll", "escalation") or c.state != "ok":
                    continue
                shas = (c.meta or {}).get("artifacts") or []
                if shas:
                    attempts.append({"sha": shas[0], "purpose": c.purpose, "seed": c.seed, "model": c.model_id})
        # the stage keeps the attempt that passed QA (the last one), or the first when none passed
        passed = bool((s.get("qa") or {}).get("passed"))
        failed = attempts[:-1] if passed else attempts[1:]
        qa = s.get("qa") or {}
        details = qa.get("details") or {}
        scores = qa.get("scores") or {}
        sharp = details.get("sharpness") or {}
        views.append({**s, "attempts": attempts, "failed_attempts": failed,
                      "qa_matches": (details.get("text") or {}).get("matches") or [],
                      "qa_read": (details.get("text") or {}).get("read_text"),
                      "qa_sharp": [
                          ("laplacian variance", scores.get("laplacian_var"), sharp.get("laplacian_var_min")),
                          ("high-frequency energy", scores.get("hf_energy"), sharp.get("hf_energy_min")),
                      ] if sharp else [],
                      "qa_rule": sharp.get("rule")})
    return views


# ------------------------------------------------------------------------------------------------------- pages
def gallery_page(request: Request) -> Response:
    studio = _studio(request)
    studio.check_read(request)
    f = queries.gallery_filter(request.query_params)
    page = queries.gallery(studio.registry, f)
    return _page(request, "gallery.html", {"page": page, "f": f, "facets": queries.facets(studio.registry),
                                           "title": "Runs"})


def run_page(request: Request) -> Response:
    studio = _studio(request)
    studio.check_read(request)
    rec = run_record(studio, request.path_params["run_id"])
    models = queries.facets(studio.registry)["model"]
    snapshot = json.dumps([rec["status"], [[s["status"], s["artifact_sha256"]] for s in rec["stages"]]])
    return _page(request, "run.html", {"run": rec, "stages": _stage_views(studio, rec), "models": models,
                                       "snapshot": snapshot, "title": f"Run {rec['run_id']}"})


def compare_page(request: Request) -> Response:
    studio = _studio(request)
    studio.check_read(request)
    ids = [i for v in request.query_params.getlist("ids") for i in v.split(",") if i.strip()][:6]
    recs = [run_record(studio, i.strip()) for i in ids]
    names: list[str] = []
    for r in recs:
        for s in r["stages"]:
            if s["stage"] not in names:
                names.append(s["stage"])
    stage = request.query_params.get("stage") or ""
    keys = ("model", "status", "cache_hit", "seed", "steps", "guidance_scale", "strength", "width", "height",
            "cost_usd", "latency_s", "calls", "rerolls", "escalated_to", "qa")
    rows = []
    for name in names:
        for key in keys:
            vals: list[Any] = []
            for r in recs:
                s = next((x for x in r["stages"] if x["stage"] == name), None)
                if s is None:
                    vals.append("")
                elif key in ("steps", "guidance_scale", "strength", "width", "height"):
                    vals.append((s["params"] or {}).get(key))
                elif key == "calls":
                    vals.append(len(s["calls"]))
                elif key == "qa":
                    vals.append(None if s["qa"] is None else ("pass" if s["qa"].get("passed") else "FAIL"))
                else:
                    vals.append(s.get(key))
            shown = ["" if v is None else str(v) for v in vals]
            rows.append({"stage": name, "key": key, "values": shown, "differs": len(set(shown)) > 1})
    prompt_row = [r["prompt"] for r in recs]

    def image_of(r: dict[str, Any]) -> str | None:
        if stage:
            s = next((x for x in r["stages"] if x["stage"] == stage), None)
            return s["artifact_sha256"] if s else None
        sha: str | None = r["final_artifact"]
        return sha

    return _page(request, "compare.html", {
        "runs": recs, "rows": rows, "stage_names": names, "stage": stage, "images": [image_of(r) for r in recs],
        "prompts_differ": len(set(prompt_row)) > 1, "title": "Compare"})


def briefs_page(request: Request) -> Response:
    studio = _studio(request)
    studio.check_read(request)
    return _page(request, "briefs.html", {"configs": queries.config_sources(studio.registry), "title": "Briefs",
                                          "max_briefs": MAX_BRIEFS})


def _batch_runs(request: Request) -> tuple[Any, list[Any]]:
    """The batch named in the path and its recorded runs; 404 when this studio session has no such batch."""
    studio = _studio(request)
    studio.check_read(request)
    batch = studio.batches.get(request.path_params["batch_id"])
    if batch is None:
        raise HTTPException(404, "no such batch in this studio session")
    return batch, [r for r in (studio.registry.get_run(i) for i in batch.run_ids) if r]


def batch_page(request: Request) -> Response:
    batch, runs = _batch_runs(request)
    return _page(request, "batch.html", {"batch": batch.to_dict(), "runs": runs, "title": "Batch"})


def login_page(request: Request) -> Response:
    return _page(request, "login.html", {"title": "Sign in", "error": None, "next": request.query_params.get("next")})


async def login(request: Request) -> Response:
    import hmac

    studio = _studio(request)
    form = await request.form()
    token, name = str(form.get("token") or ""), str(form.get("name") or "").strip()[:100]
    nxt = str(form.get("next") or "/")
    if not nxt.startswith("/") or nxt.startswith("//"):
        nxt = "/"
    if not hmac.compare_digest(token.encode(), studio.token.encode()) or not name:
        return _page(request, "login.html", {"title": "Sign in", "next": nxt,
                                             "error": "wrong token" if name else "give your name"}, status=403)
    resp = RedirectResponse(nxt, status_code=303)
    resp.set_cookie(SESSION_COOKIE, studio.session_value(name), httponly=True, samesite="strict",
                    secure=request.url.scheme == "https", max_age=14 * 86400)
    return resp


async def logout(request: Request) -> Response:
    await _studio(request).check_write(request)
    resp = RedirectResponse("/", status_code=303)
    resp.delete_cookie(SESSION_COOKIE)
    return resp


# ------------------------------------------------------------------------------------------------------- images
def _known_sha(studio: Studio, sha: str) -> Path:
    """The stored file of a sha the registry recorded; 404 for anything else (no request path reaches the disk)."""
    if not SHA_RE.fullmatch(sha) or not queries.known_artifact(studio.registry, sha):
        raise HTTPException(404, "no such artifact")
    try:
        return studio.artifacts.local_path(sha)  # an object store's artifact: a copy kept in the workspace's cache
    except FileNotFoundError:
        raise HTTPException(404, "artifact file missing") from None


def artifact(request: Request) -> Response:
    studio = _studio(request)
    studio.check_read(request)
    sha = request.path_params["sha"]
    if request.headers.get("if-none-match") == f'"{sha}"':
        return Response(status_code=304, headers={"Cache-Control": IMMUTABLE, "ETag": f'"{sha}"'})
    path = _known_sha(studio, sha)
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": IMMUTABLE, "ETag": f'"{sha}"'})


def thumbnail(request: Request) -> Response:
    """A WebP thumbnail (longest side 320 px), made once and kept beside the workspace's state."""
    import os

    studio = _studio(request)
    studio.check_read(request)
    sha = request.path_params["sha"]
    etag = f'"{sha}-t{THUMB_PX}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"Cache-Control": IMMUTABLE, "ETag": etag})
    thumb = studio.thumb_dir / sha[:2] / f"{sha}-{THUMB_PX}.webp" if SHA_RE.fullmatch(sha) else None
    if thumb is None or not thumb.is_file():
        src = _known_sha(studio, sha)
        assert thumb is not None
        with studio.thumb_lock(sha):
            if not thumb.is_file():
                from PIL import Image

                thumb.parent.mkdir(parents=True, exist_ok=True)
                tmp = thumb.with_name(f".{thumb.name}.{os.getpid()}.tmp")
                with Image.open(src) as img:
                    img.thumbnail((THUMB_PX, THUMB_PX))
                    img.convert("RGB").save(tmp, format="WEBP", quality=82)
                os.replace(tmp, thumb)
    return FileResponse(thumb, media_type="image/webp", headers={"Cache-Control": IMMUTABLE, "ETag": etag})


# ------------------------------------------------------------------------------------------------------- JSON API
def api_runs(request: Request) -> Response:
    studio = _studio(request)
    studio.check_read(request)
    f = queries.gallery_filter(request.query_params, per_page=50, max_per_page=10000)
    page = queries.gallery(studio.registry, f)
    return _json({"runs": [run_summary(r) for r in page.runs]})  # the shape of ``runs list --json``


def api_run(request: Request) -> Response:
    studio = _studio(request)
    studio.check_read(request)
    return _json(run_record(studio, request.path_params["run_id"]))


def api_run_status(request: Request) -> Response:
    """What the run page polls: the run's status and each stage's status and image."""
    studio = _studio(request)
    studio.check_read(request)
    run = studio.registry.find_run(request.path_params["run_id"])
    stages = [{"stage": s.name, "status": s.status, "artifact_sha256": s.artifact_sha}
              for s in studio.registry.stage_runs(run.id)]
    return _json({"run_id": run.id, "status": run.status, "final_artifact": run.final_artifact, "stages": stages,
                  "children": [c.id for c in queries.children(studio.registry, run.id)]})


async def _body(request: Request) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        try:
            data = await request.json()
        except ValueError:
            raise InputError("the body is not JSON", field="body") from None
        if not isinstance(data, dict):
            raise InputError("expected a JSON object", field="body")
        return data
    if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form(max_files=1, max_fields=50)
        return {k: v for k, v in form.items() if k != "csrf"}
    body = await request.body()
    if body.strip():
        raise InputError("send JSON (Content-Type: application/json)", field="body")
    return {}


def _note(data: dict[str, Any]) -> str | None:
    note = data.get("note")
    if note is not None and not isinstance(note, str):
        raise InputError("expected a string", field="note")
    return (note or "").strip()[:2000] or None


def _outcome(studio: Studio, run_id: str) -> dict[str, Any]:
    return api.runner_for_run(run_id, workspace=studio.ws).outcome(run_id).to_dict()


async def api_approve(request: Request) -> Response:
    studio = _studio(request)
    by = await studio.check_write(request)
    data = await _body(request)
    note = _note(data)
    run_id = studio.registry.find_run(request.path_params["run_id"]).id
    if data.get("wait"):  # a script that wants the CLI's answer: the run as it ends
        from starlette.concurrency import run_in_threadpool

        out = await run_in_threadpool(api.approve, run_id, note, workspace=studio.ws, by=by)
        return _json({"runs": [out.to_dict()], "provider_calls": out.provider_calls})

    def work(events: Any) -> Any:
        return api.approve(run_id, note, workspace=studio.ws, events=events, by=by)

    from starlette.concurrency import run_in_threadpool

    await run_in_threadpool(studio.start, work)
    return _json({"runs": [_outcome(studio, run_id)], "accepted": True, "by": by}, status=202)


async def api_reject(request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    studio = _studio(request)
    by = await studio.check_write(request)
    data = await _body(request)
    run_id = studio.registry.find_run(request.path_params["run_id"]).id
    out = await run_in_threadpool(api.reject, run_id, _note(data), workspace=studio.ws, by=by)
    return _json({"runs": [out.to_dict()], "provider_calls": out.provider_calls, "by": by})


def _tweak(data: dict[str, Any]) -> dict[str, Any]:
    """The re-run's tweak from a JSON body or a form (empty fields mean: unchanged)."""
    def num(key: str, kind: type) -> Any:
        v = data.get(key)
        if v is None or (isinstance(v, str) and not v.strip()):
            return None
        try:
            return kind(v)
        except (TypeError, ValueError):
            raise InputError(f"expected a number, got {v!r}", field=key) from None

    seed: Any = data.get("seed")
    if isinstance(seed, str):
        seed = seed.strip() or None
    if data.get("new_seed") in (True, "1", "on", "true"):
        seed = "new"
    if seed is not None and seed != "new":
        seed = num("seed", int)
    prompt = data.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise InputError("expected a string", field="prompt")
    stage = data.get("stage") or None
    model = data.get("model") or None
    return {"stage": str(stage) if stage else None, "prompt": prompt if prompt and prompt.strip() else None,
            "seed": seed, "model": str(model) if model else None, "strength": num("strength", float),
            "steps": num("steps", int)}


async def api_rerun(request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    studio = _studio(request)
    await studio.check_write(request)
    data = await _body(request)
    tweak = _tweak(data)
    parent = studio.registry.find_run(request.path_params["run_id"]).id
    child = await run_in_threadpool(studio.start, lambda events: api.rerun(parent, workspace=studio.ws,
                                                                             events=events, **tweak))
    return _json({"run_id": child, "parent_run_id": parent, "tweak": tweak, "accepted": True}, status=202)


async def api_rerun_many(request: Request) -> Response:
    """Batch re-run: the same tweak on each selected run; one child per run."""
    from starlette.concurrency import run_in_threadpool

    studio = _studio(request)
    await studio.check_write(request)
    data = await _body(request)
    ids = data.get("run_ids")
    if isinstance(ids, str):
        ids = [i for i in ids.split(",") if i.strip()]
    if not isinstance(ids, list) or not ids or len(ids) > MAX_BRIEFS:
        raise InputError(f"give run_ids: a list of 1 to {MAX_BRIEFS} run ids", field="run_ids")
    tweak = _tweak(data)
    parents = [studio.registry.find_run(str(i)).id for i in ids]
    children: list[str | None] = []
    for parent in parents:
        def work(events: Any, p: str = parent) -> Any:
            return api.rerun(p, workspace=studio.ws, events=events, **tweak)

        children.append(await run_in_threadpool(studio.start, work))
    return _json({"runs": [{"parent_run_id": p, "run_id": c} for p, c in zip(parents, children, strict=True)],
                  "tweak": tweak, "accepted": True}, status=202)


async def _prompt_briefs(data: dict[str, Any]) -> list[Any]:
    briefs: list[Any] = []
    prompts = data.get("prompts")
    if isinstance(prompts, str):
        prompts = [line.strip() for line in prompts.splitlines() if line.strip() and not line.strip().startswith("#")]
    if prompts is not None and (not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts)):
        raise InputError("expected a list of strings (or text, one brief per line)", field="prompts")
    briefs += [api.Brief(p, index=i) for i, p in enumerate(prompts or []) if p.strip()]
    upload = data.get("prompt_file")
    if upload is not None and not isinstance(upload, str) and getattr(upload, "filename", None):
        name = str(upload.filename)
        suffix = Path(name).suffix.lower()
        if suffix not in PROMPT_TYPES:
            raise InputError(f"expected a {', '.join(PROMPT_TYPES)} file", field="prompt_file")
        ctype = (upload.content_type or "").split(";")[0]
        if ctype and not (ctype.startswith("text/") or ctype in ("application/json", "application/x-ndjson",
                                                                 "application/octet-stream")):
            raise InputError(f"not a prompt file (type {ctype})", field="prompt_file")
        content = await upload.read(MAX_UPLOAD_BYTES + 1)
        if len(content) > MAX_UPLOAD_BYTES:
            raise InputError(f"the file is over {MAX_UPLOAD_BYTES // 1000} kB", field="prompt_file")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"prompts{suffix}"
            path.write_bytes(content)
            briefs += api.read_prompt_file(path)
    if not briefs:
        raise InputError("give prompts (one per line) or a prompt file", field="prompts")
    if len(briefs) > MAX_BRIEFS:
        raise InputError(f"at most {MAX_BRIEFS} briefs at once", field="prompts")
    return [dataclasses.replace(b, index=i) for i, b in enumerate(briefs)]  # a file's size, seed, channel kept


async def api_batches(request: Request) -> Response:
    """Start a batch: briefs on one of the configs runs were started from (a config path from the request must be
    one the registry knows)."""
    studio = _studio(request)
    await studio.check_write(request)
    data = await _body(request)
    config = str(data.get("config") or "")
    known = queries.config_sources(studio.registry)
    if config not in known:
        raise InputError(f"unknown config {config!r} (known: {', '.join(known) or 'none yet'})", field="config")
    briefs = await _prompt_briefs(data)
    latest = studio.registry.list_runs(limit=1000)
    simulate = next((bool(r.config.get("simulate")) for r in latest if r.config_source == config), None)
    if "simulate" in data:
        simulate = str(data["simulate"]).lower() in ("1", "true", "on", "yes")
    batch = studio.new_batch(config, len(briefs))

    def events(kind: str, info: dict[str, Any]) -> None:
        if kind == "run_start" and info.get("run_id") not in batch.run_ids:
            batch.run_ids.append(str(info["run_id"]))
        elif kind == "run_end":
            batch.done += 1

    def work() -> None:
        try:
            api.run_pipeline(config, briefs, workspace=studio.ws, simulate=simulate, events=events)
        except Exception as exc:
            batch.error = str(exc)
            raise

    studio.pool.submit(work)
    return _json(batch.to_dict() | {"url": f"/batches/{batch.id}"}, status=202)


def api_batch(request: Request) -> Response:
    batch, runs = _batch_runs(request)
    return _json(batch.to_dict() | {"runs": [run_summary(r) for r in runs]})


# ------------------------------------------------------------------------------------------------------- report
def _report_dir(studio: Studio) -> Path:
    return studio.ws.state_dir / "studio-report"


def report_page(request: Request) -> Response:
    studio = _studio(request)
    studio.check_read(request)
    out = _report_dir(studio)
    metrics = None
    if (out / "metrics.json").is_file():
        metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    job = studio.report_job
    return _page(request, "report.html", {"configs": queries.config_sources(studio.registry), "metrics": metrics,
                                          "has_report": (out / "report.html").is_file(), "job": job,
                                          "title": "Report"})


async def api_report(request: Request) -> Response:
    """Write the before/after report of two configs on the briefs both have run (nothing new is run)."""
    studio = _studio(request)
    await studio.check_write(request)
    data = await _body(request)
    known = queries.config_sources(studio.registry)
    pair = [str(data.get("baseline") or ""), str(data.get("staged") or "")]
    for which, c in zip(("baseline", "staged"), pair, strict=True):
        if c not in known:
            raise InputError(f"unknown config {c!r} (known: {', '.join(known) or 'none yet'})", field=which)
    runs = studio.registry.list_runs(limit=100_000)
    by_source = {c: [r.prompt for r in runs if r.config_source == c] for c in pair}
    prompts = [p for p in dict.fromkeys(reversed(by_source[pair[1]])) if p in set(by_source[pair[0]])][:20]
    if not prompts:
        raise InputError("the two configs have no brief in common yet: run the same briefs on both", field="staged")
    from image_gen.reporting.report import run_comparison, write_report

    job: dict[str, Any] = {"state": "running", "briefs": len(prompts), "error": None}
    studio.report_job = job

    def work() -> None:
        try:
            comparison = run_comparison(pair, [api.Brief(p, index=i) for i, p in enumerate(prompts)],
                                        workspace=studio.ws, reuse=True)
            write_report(comparison, _report_dir(studio), studio.artifacts.open)
            job["state"] = "done"
        except Exception as exc:
            job.update(state="failed", error=str(exc))
            raise

    studio.pool.submit(work)
    return _json(job, status=202)


def report_file(request: Request) -> Response:
    studio = _studio(request)
    studio.check_read(request)
    name = request.path_params["name"]
    path = _report_dir(studio) / name
    if not REPORT_FILE_RE.fullmatch(name) or not path.is_file():
        raise HTTPException(404, "no such report file")
    return FileResponse(path, headers={"Cache-Control": "no-cache"})


def report_export(request: Request) -> Response:
    import io
    import zipfile

    studio = _studio(request)
    studio.check_read(request)
    out = _report_dir(studio)
    if not (out / "report.html").is_file():
        raise HTTPException(404, "no report yet")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(out.iterdir()):
            if p.is_file() and REPORT_FILE_RE.fullmatch(p.name):
                z.write(p, f"report/{p.name}")
    return Response(buf.getvalue(), media_type="application/zip",
                    headers={"Content-Disposition": 'attachment; filename="image-gen-report.zip"'})


ROUTES = [
    Route("/", gallery_page),
    Route("/runs/{run_id}", run_page),
    Route("/compare", compare_page),
    Route("/briefs", briefs_page),
    Route("/batches/{batch_id}", batch_page),
    Route("/report", report_page),
    Route("/report/export", report_export),
    Route("/report/files/{name}", report_file),
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/artifacts/{sha}", artifact),
    Route("/artifacts/{sha}/thumb", thumbnail),
    Route("/api/runs", api_runs),
    Route("/api/runs/{run_id}", api_run),
    Route("/api/runs/{run_id}/status", api_run_status),
    Route("/api/runs/{run_id}/approve", api_approve, methods=["POST"]),
    Route("/api/runs/{run_id}/reject", api_reject, methods=["POST"]),
    Route("/api/runs/{run_id}/rerun", api_rerun, methods=["POST"]),
    Route("/api/reruns", api_rerun_many, methods=["POST"]),
    Route("/api/batches", api_batches, methods=["POST"]),
    Route("/api/batches/{batch_id}", api_batch),
    Route("/api/report", api_report, methods=["POST"]),
]
