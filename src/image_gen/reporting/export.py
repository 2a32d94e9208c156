"""Export bundles: a zip of runs' delivered files with a manifest (JSON and CSV) and a contact sheet.

``image-gen export ID [ID...] --out bundle.zip``: each ID is a run or a batch (id or unique prefix); a batch
exports its runs. The zip holds

- ``files/<run>-<channel>.<ext>``: every channel rendition of each run (``image-gen deliver``), or, for a run
  without renditions, its final asset as channel ``final`` (a simulated one with the visible "SIMULATED" mark, as
  every exported copy of a simulator render has; renditions are exported byte for byte as delivered);
- ``manifest.json`` and ``manifest.csv``: one row per file: run id, brief, channel, file name in the zip, size,
  bytes and sha256 (of the bytes in the zip), the model of each stage, cost, latency, the run's QA verdict and
  reasons, the rendition's own QA, the simulated flag. The JSON also lists the runs (and a run that delivered
  nothing, with why), the batches, and the other files of the zip with their bytes and sha256;
- ``contact_sheet.png`` (``contact_sheet_NN.png`` past ``SHEET_ROWS`` runs): one row per run, one cell per
  stage, drawn by ``sheets.py``.

Nothing is written on bad input: the zip is written to a temporary name beside ``--out`` and renamed into place
only when complete. Reads the registry and the artifact store only; never a config value (nothing secret).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from image_gen.errors import InputError, RunNotFound, WorkFailed

if TYPE_CHECKING:
    from image_gen.store.models import Batch, Rendition, Run, StageRun
    from image_gen.store.registry import Registry
    from image_gen.workspace import Workspace

COLUMNS = (
    "run_id", "batch_id", "brief", "channel", "file", "format", "width", "height", "size", "bytes", "sha256",
    "models", "cost_usd", "latency_s", "status", "qa_verdict", "qa_reasons", "rendition_qa",
    "rendition_qa_reasons", "simulated",
)
"""The manifest's columns, in order (``manifest.csv``'s header; the keys of each ``manifest.json`` file row)."""

SHEET_ROWS = 12
"""Runs per contact sheet."""
FILES_DIR = "files"
SIMULATED_NOTE = ("SIMULATED: some files were produced by image-gen's offline simulator, not by the vendors' "
                  "models (see the simulated column); their final images carry a visible SIMULATED mark.")
_EXT = {"jpeg": "jpg", "jpg": "jpg", "png": "png", "webp": "webp", "tiff": "tif", "tif": "tif", "avif": "avif",
        "gif": "gif", "bmp": "bmp"}
NOT_RAN = frozenset({"pending", "awaiting_approval", "rejected", "budget_stopped", "skipped"})


# ------------------------------------------------------------------------------------------------- resolving


@dataclass
class Selection:
    """What a list of IDs names: the runs to export, in order (no repeats), and the batches among the IDs."""

    runs: list[Run]
    batches: list[Batch] = field(default_factory=list)
    batch_runs: dict[str, list[str]] = field(default_factory=dict)
    """batch id -> its run ids (in item order)."""


def _prefix_matches(registry: Registry, model: Any, ref: str) -> list[str]:
    from sqlalchemy import select

    with registry.reading() as s:
        return list(s.scalars(select(model.id).where(model.id.startswith(ref, autoescape=True)).limit(11)))


def batch_run_ids(registry: Registry, batch_id: str) -> list[str]:
    """A batch's runs: its items' runs in item order, then any other run recorded with this batch id (oldest
    first), each once."""
    from sqlalchemy import select

    from image_gen.store.models import BatchItem, Run

    with registry.reading() as s:
        items = list(s.scalars(select(BatchItem.run_id).where(BatchItem.batch_id == batch_id,
                                                              BatchItem.run_id.is_not(None))
                               .order_by(BatchItem.idx, BatchItem.id)))
        tagged = list(s.scalars(select(Run.id).where(Run.batch_id == batch_id).order_by(Run.created_at, Run.id)))
    out: list[str] = []
    for rid in [*items, *tagged]:
        if rid and rid not in out:
            out.append(rid)
    return out


def resolve(registry: Registry, refs: Sequence[str]) -> Selection:
    """The runs the IDs name: each a run id, a batch id (its runs), or a unique prefix (at least four characters)
    of either. Bad input naming the ID when one names nothing, several things, or is empty."""
    from image_gen.store.models import Batch, Run
    from image_gen.store.registry import MIN_PREFIX

    if not refs:
        raise InputError("give at least one run or batch id", field="ID")
    sel = Selection([])
    seen: set[str] = set()

    def add_run(run: Run) -> None:
        if run.id not in seen:
            seen.add(run.id)
            sel.runs.append(run)

    for raw in refs:
        ref = raw.strip()
        run = registry.get_run(ref) if ref else None
        with registry.reading() as s:
            batch = s.get(Batch, ref) if ref else None
        if run is None and batch is None:
            if len(ref) < MIN_PREFIX or not re.fullmatch(r"[0-9A-Za-z_-]+", ref):
                raise RunNotFound(f"no run or batch {raw!r} (give an id or a unique prefix of at least "
                                  f"{MIN_PREFIX} characters)", field="ID")
            runs = _prefix_matches(registry, Run, ref)
            batches = _prefix_matches(registry, Batch, ref)
            found = [f"run {r}" for r in runs] + [f"batch {b}" for b in batches]
            if not found:
                raise RunNotFound(f"no run or batch {raw!r} in this registry", field="ID")
            if len(found) > 1:
                shown = ", ".join(found[:10]) + (", ..." if len(found) > 10 else "")
                raise InputError(f"{raw!r} matches several: {shown}; give more characters", field="ID")
            if runs:
                run = registry.get_run(runs[0])
            else:
                with registry.reading() as s:
                    batch = s.get(Batch, batches[0])
        if run is not None:
            add_run(run)
            continue
        assert batch is not None
        ids = batch_run_ids(registry, batch.id)
        if batch.id not in sel.batch_runs:
            sel.batches.append(batch)
            sel.batch_runs[batch.id] = ids
        for rid in ids:
            member = registry.get_run(rid)
            if member is not None:
                add_run(member)
    if not sel.runs:
        raise InputError("the batches given have no runs yet: nothing to export", field="ID")
    return sel


# ----------------------------------------------------------------------------------------------- run details


def qa_word(passed: bool | None) -> str:
    return "-" if passed is None else ("pass" if passed else "fail")


def stage_ran(s: StageRun) -> bool:
    return (s.status or "pending") not in NOT_RAN


def models_line(stages: Iterable[StageRun]) -> str:
    """``draft:sim:ideogram-v1-turbo > final:sim:sd3.5-medium``: the model of each stage that ran."""
    return " > ".join(f"{s.name}:{s.model_id}" for s in stages if stage_ran(s))


def final_stage(run: Run, stages: Sequence[StageRun]) -> StageRun | None:
    """The stage that made the run's final asset (the last stage whose image it is), else the last that ran."""
    if run.final_artifact:
        for s in reversed(stages):
            if s.artifact_sha == run.final_artifact:
                return s
    ran = [s for s in stages if stage_ran(s)]
    return ran[-1] if ran else None


def qa_reasons(qa: dict[str, Any] | None) -> list[str]:
    return [str(r) for r in (qa or {}).get("reasons") or []]


def renditions(registry: Registry, run_id: str) -> list[Rendition]:
    """The run's renditions, one per channel (the newest where a channel was delivered more than once), by
    channel name."""
    from sqlalchemy import select

    from image_gen.store.models import Rendition

    with registry.reading() as s:
        rows = list(s.scalars(select(Rendition).where(Rendition.run_id == run_id).order_by(Rendition.id)))
    latest: dict[str, Rendition] = {}
    for r in rows:
        latest[r.channel] = r
    return [latest[c] for c in sorted(latest)]


def rendition_bytes(ws: Workspace, r: Rendition) -> bytes:
    """A rendition's bytes, checked against its recorded sha256. Its ``path`` is absolute or relative to the
    workspace (or its ``.image-gen`` folder); else it is in the artifact store under its sha256."""
    p = Path(r.path) if r.path else None
    candidates = [p] if p is not None and p.is_absolute() else (
        [ws.root / p, ws.state_dir / p] if p is not None else [])
    candidates.append(ws.artifacts().path_for(r.sha256))
    for c in candidates:
        if c.is_file():
            data = c.read_bytes()
            if hashlib.sha256(data).hexdigest() != r.sha256:
                raise WorkFailed(f"run {r.run_id}: rendition {r.channel!r} at {c} does not match its recorded "
                                 f"sha256 {r.sha256[:12]} (changed on disk?); nothing was written")
            return data
    raise WorkFailed(f"run {r.run_id}: rendition {r.channel!r} file is missing ({r.path}); nothing was written")


def final_bytes(ws: Workspace, run: Run) -> bytes:
    """The run's final image as exported: a simulated render with its visible "SIMULATED" mark."""
    assert run.final_artifact
    path = ws.artifacts().path_for(run.final_artifact)
    if not path.is_file():
        raise WorkFailed(f"run {run.id}: final image {run.final_artifact[:12]} is missing from the artifact "
                         "store; nothing was written")
    data = path.read_bytes()
    if run.simulated:
        from image_gen.imaging.marks import mark_simulated_png

        data = mark_simulated_png(data)
    return data


def slug(text: str, n: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:n].strip("-") or "file"


def image_info(data: bytes) -> tuple[str, int, int]:
    """(format, width, height) read from the image's own header."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return (img.format or "unknown").lower(), int(img.width), int(img.height)


def csv_cell(value: Any) -> str:
    """How a manifest value is written in ``manifest.csv``: booleans ``true``/``false``, None empty, else str."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---------------------------------------------------------------------------------------------------- bundle


@dataclass
class BundleResult:
    path: Path
    manifest: dict[str, Any]

    @property
    def files(self) -> list[dict[str, Any]]:
        return list(self.manifest["files"])

    def to_dict(self) -> dict[str, Any]:
        return {"written": str(self.path), "files": len(self.manifest["files"]), "runs": len(self.manifest["runs"]),
                "batches": [b["batch_id"] for b in self.manifest["batches"]], "simulated": self.manifest["simulated"],
                "bytes": self.path.stat().st_size, "skipped": [r for r in self.manifest["runs"] if r["skipped"]]}


def _check_out(out: Path) -> None:
    if out.is_dir():
        raise InputError("is a folder; give the zip file to write", file=str(out), field="--out")
    if out.parent.exists() and not out.parent.is_dir():
        raise InputError("its parent is not a folder", file=str(out), field="--out")


def write_bundle(ws: Workspace, refs: Sequence[str], out: str | os.PathLike[str], *,
                 progress: Callable[[str], None] | None = None) -> BundleResult:
    """Write the export zip of the runs (and batches) ``refs`` name to ``out``; see the module's docstring."""
    out_path = Path(out)
    _check_out(out_path)
    registry = ws.existing_registry()
    sel = resolve(registry, refs)
    if not any(r.final_artifact or renditions(registry, r.id) for r in sel.runs):
        raise WorkFailed("nothing to export: " + ", ".join(f"run {r.id} ({r.status})" for r in sel.runs[:10])
                         + " delivered no image")
    made_dirs = [p for p in (out_path.parent, *out_path.parent.parents) if not p.exists()]
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    except OSError as exc:
        raise InputError(f"cannot write there ({exc.strerror or exc})", file=str(out_path), field="--out") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as zf:
                manifest = _fill(zf, ws, registry, sel, progress)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        for d in made_dirs:  # the folders made for it, innermost first
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    return BundleResult(out_path, manifest)


def _fill(zf: zipfile.ZipFile, ws: Workspace, registry: Registry, sel: Selection,
          progress: Callable[[str], None] | None) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    names: set[str] = set()
    batch_of = {rid: bid for bid, ids in sel.batch_runs.items() for rid in ids}

    def unique(name: str) -> str:
        stem, dot, ext = name.rpartition(".")
        k, out = 1, name
        while out in names:
            k += 1
            out = f"{stem}-{k}{dot}{ext}"
        names.add(out)
        return out

    for run in sel.runs:
        if progress:
            progress(f"{run.id}: {run.prompt[:60]}")
        stages = registry.stage_runs(run.id)
        last = final_stage(run, stages)
        base = {
            "run_id": run.id, "batch_id": run.batch_id or batch_of.get(run.id), "brief": run.prompt,
            "models": models_line(stages), "cost_usd": round(float(run.cost_usd or 0.0), 6),
            "latency_s": round(float(run.latency_s or 0.0), 3), "status": run.status,
            "qa_verdict": qa_word(run.qa_passed), "qa_reasons": "; ".join(qa_reasons(last.qa if last else None)),
            "simulated": bool(run.simulated),
        }
        sim = "-sim" if run.simulated else ""
        items: list[tuple[str, bytes, Rendition | None]] = []
        for r in renditions(registry, run.id):
            items.append((r.channel, rendition_bytes(ws, r), r))
        if not items and run.final_artifact:
            items.append(("final", final_bytes(ws, run), None))
        files = []
        for channel, data, rend in items:
            fmt, width, height = image_info(data)
            ext = _EXT.get(fmt, fmt)
            name = unique(f"{FILES_DIR}/{run.id}-{slug(channel)}{sim}.{ext}")
            zf.writestr(zipfile.ZipInfo(name, date_time=_zip_time(run.updated_at)), data)
            rows.append({**base, "channel": channel, "file": name, "format": fmt, "width": width, "height": height,
                         "size": f"{width}x{height}", "bytes": len(data),
                         "sha256": hashlib.sha256(data).hexdigest(),
                         "rendition_qa": qa_word(rend.qa_passed) if rend is not None else None,
                         "rendition_qa_reasons": "; ".join(qa_reasons(rend.qa)) if rend is not None else None})
            files.append(name)
        runs.append({
            **{k: base[k] for k in ("run_id", "batch_id", "brief", "status", "cost_usd", "latency_s", "qa_verdict",
                                    "simulated")},
            "pipeline": run.pipeline_name, "config_source": run.config_source,
            "qa_reasons": qa_reasons(last.qa if last else None),
            "stages": [{"stage": s.name, "model": s.model_id, "provider": s.provider, "status": s.status,
                        "qa": qa_word(None if not s.qa else bool(s.qa.get("passed")))} for s in stages],
            "files": files,
            "skipped": None if files else f"no image to export (status {run.status}"
                                          + (f": {run.reason}" if run.reason else "") + ")",
        })
    rows = [{c: row.get(c) for c in COLUMNS} for row in rows]
    simulated = any(r["simulated"] for r in runs)
    extras: list[dict[str, Any]] = []

    def put(name: str, data: bytes, compress: bool) -> None:
        info = zipfile.ZipInfo(name, date_time=_zip_time(None))
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        zf.writestr(info, data)
        extras.append({"file": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([csv_cell(row[c]) for c in COLUMNS])
    put("manifest.csv", buf.getvalue().encode("utf-8"), True)
    for name, sheet in _sheets(ws, registry, sel, simulated):
        put(name, sheet, False)
    manifest = {
        "generator": "image-gen export",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "simulated": simulated,
        "note": SIMULATED_NOTE if simulated else None,
        "columns": list(COLUMNS),
        "files": rows,
        "runs": runs,
        "batches": [{"batch_id": b.id, "name": b.name, "status": b.status, "runs": sel.batch_runs[b.id]}
                    for b in sel.batches],
        "extras": extras,
    }
    info = zipfile.ZipInfo("manifest.json", date_time=_zip_time(None))
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, json.dumps(manifest, indent=2, default=str).encode("utf-8"))
    return manifest


def _zip_time(when: datetime | None) -> tuple[int, int, int, int, int, int]:
    t = when or datetime.now(UTC)
    if t.year < 1980:
        t = datetime(1980, 1, 1)
    return (t.year, t.month, t.day, t.hour, t.minute, t.second)


def _sheets(ws: Workspace, registry: Registry, sel: Selection, simulated: bool) -> list[tuple[str, bytes]]:
    """The contact sheet(s): one row per run (labelled with its id), one cell per stage, SHEET_ROWS runs a sheet."""
    from image_gen.reporting.metrics import load_runs
    from image_gen.reporting.report import Comparison, PipelineRuns
    from image_gen.reporting.sheets import contact_sheet

    records = load_runs(registry, [r.id for r in sel.runs])
    chunks = [records[i:i + SHEET_ROWS] for i in range(0, len(records), SHEET_ROWS)]
    what = (f"batch {sel.batches[0].id}" + (f" ({sel.batches[0].name})" if sel.batches[0].name else "")
            if len(sel.batches) == 1 and len(sel.runs) == len(sel.batch_runs[sel.batches[0].id]) else
            f"{len(sel.runs)} run{'s' if len(sel.runs) != 1 else ''}")
    out = []
    store = ws.artifacts()
    for k, chunk in enumerate(chunks):
        comparison = Comparison(["export"], [PipelineRuns(rec.run_id, "", [rec]) for rec in chunk])
        part = f" - sheet {k + 1} of {len(chunks)}" if len(chunks) > 1 else ""
        title = f"Export: {what}{part}; rows are runs (see manifest.csv for each run's brief)"
        img = contact_sheet(comparison, 0, "", store.open, simulated, title=title)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        name = "contact_sheet.png" if len(chunks) == 1 else f"contact_sheet_{k + 1:02d}.png"
        out.append((name, buf.getvalue()))
    return out


def read_manifest(zip_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of an export zip."""
    with zipfile.ZipFile(zip_path) as zf:
        data: dict[str, Any] = json.loads(zf.read("manifest.json"))
        return data
