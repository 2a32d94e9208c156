"""MLflow export: each image-gen run logged as an MLflow run, grouped under an experiment per pipeline config.

``image-gen export ID [ID...] --mlflow [--tracking-uri URI] [--experiment NAME]``:

- **experiment**: ``--experiment NAME``, else ``image-gen/<pipeline name or config file stem>-<config hash>``
  (the hash: 8 hex of the run's recorded config, less where it ran: ``simulate``, ``registry_url``,
  ``concurrency``), with `` [simulated]`` appended for the simulator's runs so they never mix with real ones;
- **run**: one MLflow run per image-gen run, tagged ``image_gen.run_id``; a re-export finds it by that tag and
  updates it (a metric logged again only when its value changed, a param or artifact only when missing), never
  a second run. Named ``<run id> <brief>``; status FINISHED (completed), FAILED (failed, budget stopped), KILLED
  (rejected, cancelled, interrupted), else left RUNNING;
- **params**: per stage ``<stage>.model``, ``.provider``, ``.steps``, ``.guidance``, ``.size``, ``.seed``,
  ``.strength``, ``.upscale`` (those the stage has), and ``prompt``, ``negative_prompt``, ``pipeline``,
  ``config_source``;
- **metrics**: ``cost_usd``, ``latency_s``, ``success`` (1 when the run delivered an image that passed QA, see
  ``metrics.py``), ``qa_passed``, per stage ``<stage>.cost_usd``, ``<stage>.latency_s`` and its QA scores
  ``<stage>.qa.<score>``;
- **artifacts**: ``images/final.<ext>`` (a simulated one with its visible mark) and ``renditions/<channel>.<ext>``.

The tracking URI: ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else SQLite in the workspace
(``.image-gen/mlflow.db``, artifacts beside it in ``.image-gen/mlartifacts``). MLflow 3 keeps the ``file:``
store in maintenance mode and refuses it unless ``MLFLOW_ALLOW_FILE_STORE=true`` is set; a local SQLite tracking
store is what it recommends. ``mlflow`` (the ``mlflow-skinny`` package, extra ``[mlflow]``) is imported only here.
Never a secret: the params are the fields named above, the tracking URI is shown with its password masked.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from image_gen.errors import InputError
from image_gen.reporting.export import (
    _EXT,
    final_bytes,
    final_stage,
    image_info,
    qa_reasons,
    rendition_bytes,
    renditions,
    resolve,
    slug,
    stage_ran,
)

if TYPE_CHECKING:
    from image_gen.store.models import Run, StageRun
    from image_gen.store.registry import Registry
    from image_gen.workspace import Workspace

RUN_TAG = "image_gen.run_id"
CONFIG_TAG = "image_gen.config_hash"
HASH_EXCLUDES = ("simulate", "registry_url", "concurrency")
STAGE_PARAMS = (("model", None), ("provider", None), ("steps", "steps"), ("guidance", "guidance_scale"),
                ("size", None), ("seed", None), ("strength", "strength"), ("upscale", "upscale"))
STATUS = {"completed": "FINISHED", "failed": "FAILED", "budget_stopped": "FAILED", "rejected": "KILLED",
          "cancelled": "KILLED", "interrupted": "KILLED"}
MAX_PARAM = 6000
_KEY_BAD = re.compile(r"[^0-9A-Za-z_\-. /]")


def default_tracking_uri(ws: Workspace) -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    return env if env else f"sqlite:///{ws.state_dir / 'mlflow.db'}"


def config_hash(config: dict[str, Any] | None) -> str:
    """8 hex digits of the run's recorded config, less where it ran (the same config file hashes the same)."""
    cfg = {k: v for k, v in (config or {}).items() if k not in HASH_EXCLUDES}
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:8]


def experiment_name(run: Run) -> str:
    base = run.pipeline_name or (Path(run.config_source).stem if run.config_source else None) or "adhoc"
    name = f"image-gen/{slug(str(base), 60)}-{config_hash(run.config)}"
    return name + (" [simulated]" if run.simulated else "")


def _key(text: str) -> str:
    return _KEY_BAD.sub("_", text)[:250]


def stage_params(s: StageRun) -> dict[str, str]:
    p = s.params or {}
    out: dict[str, Any] = {"model": s.model_id, "provider": s.provider, "seed": s.seed}
    for name, src in STAGE_PARAMS:
        if src is not None:
            out[name] = p.get(src)
    if p.get("width") and p.get("height"):
        out["size"] = f"{p['width']}x{p['height']}"
    return {_key(f"{s.name}.{k}"): str(v)[:MAX_PARAM] for k, v in out.items() if v is not None and v != ""}


def run_params(run: Run, stages: Sequence[StageRun]) -> dict[str, str]:
    out: dict[str, Any] = {"prompt": run.prompt, "negative_prompt": run.negative_prompt,
                           "pipeline": run.pipeline_name, "config_source": run.config_source}
    params = {k: str(v)[:MAX_PARAM] for k, v in out.items() if v}
    for s in stages:
        if stage_ran(s):
            params.update(stage_params(s))
    return params


def run_metrics(registry: Registry, run: Run, stages: Sequence[StageRun]) -> dict[str, float]:
    from image_gen.reporting.metrics import load_runs

    record = load_runs(registry, [run.id])[0]
    out: dict[str, float] = {"cost_usd": float(run.cost_usd or 0.0), "latency_s": float(run.latency_s or 0.0),
                             "success": float(record.success)}
    if run.qa_passed is not None:
        out["qa_passed"] = float(bool(run.qa_passed))
    for s in stages:
        if not stage_ran(s):
            continue
        out[_key(f"{s.name}.cost_usd")] = float(s.cost_usd or 0.0)
        out[_key(f"{s.name}.latency_s")] = float(s.latency_s or 0.0)
        for name, value in ((s.qa or {}).get("scores") or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                out[_key(f"{s.name}.qa.{name}")] = float(value)
    return out


def _millis(when: Any) -> int | None:
    if when is None:
        return None
    from datetime import UTC

    return int(when.replace(tzinfo=UTC).timestamp() * 1000)


@dataclass
class MlflowResult:
    tracking_uri: str
    """Masked: no password."""
    experiments: dict[str, str] = field(default_factory=dict)
    """name -> experiment id"""
    runs: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"tracking_uri": self.tracking_uri, "experiments": self.experiments, "runs": self.runs,
                "warnings": self.warnings}


def check_target(tracking_uri: str | None, experiment: str | None) -> None:
    """Bad input found without touching anything: no MLflow installed, an empty experiment name, a ``file:`` store
    MLflow 3 would refuse (``MLFLOW_ALLOW_FILE_STORE`` unset)."""
    import importlib.util

    from image_gen.store.registry import redact_url

    if experiment is not None and not experiment.strip():
        raise InputError("an experiment name must not be empty", field="--experiment")
    if importlib.util.find_spec("mlflow") is None:
        raise InputError("MLflow is not installed: pip install 'image-gen[mlflow]' (mlflow-skinny)", field="--mlflow")
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    file_store = uri.startswith(("file:", "/", "./", "../", "~"))
    allowed = os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() in ("1", "true")
    if file_store and not allowed:
        raise InputError(f"MLflow 3 refuses the file store {redact_url(uri)!r} (it is in maintenance mode): use a "
                         "database URI such as sqlite:///mlflow.db, or set MLFLOW_ALLOW_FILE_STORE=true",
                         field="--tracking-uri")


def _client(uri: str) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise InputError("MLflow is not installed: pip install 'image-gen[mlflow]' (mlflow-skinny)",
                         field="--mlflow") from None
    return MlflowClient(tracking_uri=uri)


def _local_sqlite(uri: str) -> Path | None:
    if uri.startswith("sqlite:///") and ":memory:" not in uri:
        return Path(uri[len("sqlite:///"):])
    return None


def _experiment(client: Any, name: str, uri: str, run: Run) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return str(exp.experiment_id)
    location = None
    db = _local_sqlite(uri)
    if db is not None:  # MLflow's default artifact root for SQLite is ./mlruns under the working folder
        location = (db.parent / "mlartifacts" / slug(name, 100)).resolve().as_uri()
    tags = {CONFIG_TAG: config_hash(run.config), "image_gen.pipeline": run.pipeline_name or "",
            "image_gen.config_source": run.config_source or "", "image_gen.simulated": str(bool(run.simulated))}
    return str(client.create_experiment(name, artifact_location=location, tags=tags))


def export_mlflow(ws: Workspace, refs: Sequence[str], *, tracking_uri: str | None = None,
                  experiment: str | None = None, progress: Callable[[str], None] | None = None) -> MlflowResult:
    """Log the runs (and batches' runs) ``refs`` name to MLflow; see the module's docstring."""
    from image_gen.store.registry import redact_url

    check_target(tracking_uri, experiment)
    registry = ws.existing_registry()
    sel = resolve(registry, refs)  # bad input before MLflow is imported or anything is written
    uri = tracking_uri or default_tracking_uri(ws)
    db = _local_sqlite(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    result = MlflowResult(redact_url(uri))
    try:
        client = _client(uri)
        for run in sel.runs:
            if progress:
                progress(f"{run.id}: {run.prompt[:60]}")
            name = experiment.strip() if experiment else experiment_name(run)
            if name not in result.experiments:
                result.experiments[name] = _experiment(client, name, uri, run)
            batch = run.batch_id or next((b for b, ids in sel.batch_runs.items() if run.id in ids), None)
            result.runs.append(_log_run(client, ws, registry, run, result.experiments[name], result.warnings,
                                        batch))
    except Exception as exc:
        if type(exc).__name__ == "MlflowException" and "MLFLOW_ALLOW_FILE_STORE" in str(exc):
            raise InputError(f"MLflow refuses the file store {redact_url(uri)!r} (maintenance mode in MLflow 3): use "
                             "a database URI such as sqlite:///mlflow.db, or set MLFLOW_ALLOW_FILE_STORE=true",
                             field="--tracking-uri") from None
        raise
    return result


def _log_run(client: Any, ws: Workspace, registry: Registry, run: Run, experiment_id: str,
             warnings: list[str], batch_id: str | None) -> dict[str, Any]:
    from mlflow.entities import Metric, Param, RunTag

    found = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{run.id}'", max_results=2)
    stages = registry.stage_runs(run.id)
    last = final_stage(run, stages)
    tags = {RUN_TAG: run.id, "mlflow.runName": f"{run.id} {run.prompt[:60]}", "image_gen.status": run.status,
            "image_gen.simulated": str(bool(run.simulated)), "image_gen.pipeline": run.pipeline_name or "",
            "image_gen.config_hash": config_hash(run.config), "image_gen.qa": {None: "-", True: "pass",
                                                                              False: "fail"}[run.qa_passed],
            "image_gen.models": " > ".join(f"{s.name}:{s.model_id}" for s in stages if stage_ran(s))}
    if batch_id:
        tags["image_gen.batch_id"] = batch_id
    reasons = qa_reasons(last.qa if last is not None else None)
    if reasons:
        tags["image_gen.qa_reasons"] = "; ".join(reasons)[:8000]
    if found:
        mrun = found[0]
        created = False
        if len(found) > 1:
            warnings.append(f"run {run.id}: several MLflow runs carry its tag; updated {mrun.info.run_id}")
    else:
        mrun = client.create_run(experiment_id, start_time=_millis(run.created_at), tags=tags, run_name=None)
        created = True
    mid = mrun.info.run_id
    have_params = dict(mrun.data.params) if not created else {}
    have_metrics = dict(mrun.data.metrics) if not created else {}
    params = []
    for k, v in run_params(run, stages).items():
        if k not in have_params:
            params.append(Param(k, v))
        elif have_params[k] != v:
            warnings.append(f"run {run.id}: param {k} is now {v!r} (MLflow keeps the first value, "
                            f"{have_params[k]!r})")
    when = _millis(run.updated_at) or 0
    metrics = [Metric(k, v, when, 0) for k, v in run_metrics(registry, run, stages).items()
               if k not in have_metrics or have_metrics[k] != v]
    run_tags = [RunTag(k, str(v)) for k, v in tags.items()] if not created else []  # status, QA may have moved
    for i in range(0, max(len(params), len(metrics), len(run_tags)), 100):
        client.log_batch(mid, metrics=metrics[i:i + 100], params=params[i:i + 100], tags=run_tags[i:i + 100])
    artifacts = _log_artifacts(client, ws, registry, run, mid)
    status = STATUS.get(run.status)
    if status:
        client.set_terminated(mid, status=status, end_time=_millis(run.updated_at))
    return {"run_id": run.id, "mlflow_run_id": mid, "experiment_id": experiment_id, "created": created,
            "params_logged": len(params), "metrics_logged": len(metrics), "artifacts": artifacts,
            "status": status or "RUNNING"}


def _log_artifacts(client: Any, ws: Workspace, registry: Registry, run: Run, mid: str) -> list[str]:
    """Upload what is missing of the final image and the renditions; the artifact paths the run has."""
    wanted: list[tuple[str, Callable[[], bytes]]] = []
    if run.final_artifact:
        wanted.append(("images/final", lambda: final_bytes(ws, run)))
    for r in renditions(registry, run.id):
        wanted.append((f"renditions/{slug(r.channel)}", lambda r=r: rendition_bytes(ws, r)))  # type: ignore[misc]
    have = {f.path for d in ("images", "renditions") for f in client.list_artifacts(mid, d)}
    out: list[str] = []
    with tempfile.TemporaryDirectory(prefix="image-gen-mlflow-") as tmp:
        for stem, read in wanted:
            existing = [p for p in have if p.rpartition(".")[0] == stem]
            if existing:
                out.append(existing[0])
                continue
            data = read()
            fmt, _, _ = image_info(data)
            folder, _, base = stem.partition("/")
            local = Path(tmp) / folder / f"{base}.{_EXT.get(fmt, fmt)}"
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(data)
            client.log_artifact(mid, str(local), folder)
            out.append(f"{folder}/{local.name}")
    return sorted(out)
