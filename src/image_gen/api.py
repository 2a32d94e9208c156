"""The Python API: the same services the CLI uses.

    from image_gen import api
    result = api.generate(model="imagen4", prompt="...", width=1024, height=1024, guidance_scale=7.5, simulate=True)
    result.image.save("imagen4_test.png")
    final = api.generate_pipeline(seed_image="composite.png", cfg={"model": "sd3.5-medium", "steps": 40,
                                                                  "upscale": "2x", "adapters": ["color-match"]})
    final.save("final_asset.png")
    outcome = api.run_pipeline("examples/staged.toml", 'Hero shot of a bottle, label "AQUA PURE"', simulate=True)

``simulate`` defaults to the environment variable ``IMAGE_GEN_SIMULATE`` (1/true) or the config's ``simulate``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from image_gen.briefs import read_prompt_file
from image_gen.config import Config, load_config
from image_gen.errors import InputError, WorkFailed
from image_gen.imaging.images import open_user_image
from image_gen.pipeline.rerun import rerun
from image_gen.pipeline.runner import Brief, Events, Runner, RunOutcome
from image_gen.workspace import Workspace

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "Brief",
    "batch_status",
    "cancel_batch",
    "list_batches",
    "run_batch",
    "submit_batch",
    "GenerateResult",
    "RunOutcome",
    "approve",
    "cancel",
    "deliver",
    "estimate",
    "export_bundle",
    "export_mlflow",
    "generate",
    "generate_pipeline",
    "load_config",
    "provider_status",
    "read_prompt_file",
    "reject",
    "rerun",
    "resume",
    "run_pipeline",
    "upscale_image",
]


def estimate(config: Config | Mapping[str, Any] | str | os.PathLike[str], *, briefs: int = 1,
             simulate: bool | None = None, seed_size: tuple[int, int] | None = None) -> Any:
    """The calls (tiles counted) and catalog cost ``config`` would take on ``briefs`` briefs; spends nothing."""
    from image_gen.pipeline.estimate import estimate as _estimate

    return _estimate(config, briefs=briefs, simulate=simulate, seed_size=seed_size)


def provider_status() -> list[dict[str, Any]]:
    """One row per installed provider: configured or not, which variable holds its key, its base URL."""
    from image_gen.providers.status import provider_status as status

    return status()


def _env_simulate() -> bool | None:
    v = os.environ.get("IMAGE_GEN_SIMULATE")
    return None if v is None else v.strip().lower() in ("1", "true", "yes", "on")


@dataclass
class GenerateResult:
    """A finished run's final image and its record."""

    record: RunOutcome
    workspace: Workspace

    @property
    def image(self) -> Image.Image:
        if not self.record.final_artifact:
            raise WorkFailed(f"run {self.record.run_id} produced no image: {self.record.reason}")
        return self.workspace.artifacts().open(self.record.final_artifact)

    @property
    def path(self) -> Path | None:
        """A local file of the final image: the stored file, or a cached copy of an object store's artifact."""
        sha = self.record.final_artifact
        return self.workspace.artifacts().local_path(sha) if sha else None

    @property
    def run_id(self) -> str:
        return self.record.run_id

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the final image (with its generation parameters embedded) to ``path``; a simulated one with a
        visible "SIMULATED" corner mark."""
        sha = self.record.final_artifact
        if sha is None:
            raise WorkFailed(f"run {self.record.run_id} produced no image: {self.record.reason}")
        from image_gen.imaging.marks import mark_simulated, mark_simulated_png

        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        sim = self.record.simulated  # a simulated render carries a visible mark wherever it is saved
        if dest.suffix.lower() in ("", ".png"):
            data = self.workspace.artifacts().read_bytes(sha)
            dest.write_bytes(mark_simulated_png(data) if sim else data)
        else:
            image = self.image
            (mark_simulated(image) if sim else image).save(dest)
        return dest


def _coerce_config(cfg: Config | Mapping[str, Any] | str | os.PathLike[str]) -> tuple[Config, str | None]:
    if isinstance(cfg, Config):
        return cfg, None
    if isinstance(cfg, Mapping):
        return load_config(cfg), None
    return load_config(Path(cfg)), str(cfg)


WorkspaceArg = str | os.PathLike[str] | Workspace | None


def open_workspace(workspace: WorkspaceArg = None, registry_url: str | None = None, *, cfg: Config | None = None,
                   config_source: str | None = None, artifacts_url: str | None = None) -> Workspace:
    """The workspace with its registry and artifact store chosen (``--registry-url``/``--artifacts-url`` or the
    arguments, the environment, the config's, the workspace's settings). A Workspace is returned as it is."""
    if isinstance(workspace, Workspace):
        return workspace
    return Workspace.resolve(workspace, registry_url, config_url=cfg.registry_url if cfg else None,
                             config_file=config_source, artifacts_url=artifacts_url,
                             config_artifacts_url=cfg.artifacts_url if cfg else None)


def make_runner(cfg: Config, *, workspace: WorkspaceArg = None,
                simulate: bool | None = None, config_source: str | None = None,
                events: Events | None = None, registry_url: str | None = None,
                artifacts_url: str | None = None) -> Runner:
    ws = open_workspace(workspace, registry_url, cfg=cfg, config_source=config_source, artifacts_url=artifacts_url)
    sim = simulate if simulate is not None else _env_simulate()
    return _with_delivery(Runner(ws, cfg, simulate=sim, config_source=config_source, events=events))


def _with_delivery(runner: Runner) -> Runner:
    """A pipeline with ``deliver = [...]`` makes its renditions whenever a run completes (also after approval)."""
    if runner.config.pipeline.deliver:
        from image_gen.delivery.deliver import attach

        attach(runner)
    return runner


def deliver(run_id: str, channels: Iterable[str], out_dir: str | os.PathLike[str] | None = None, *,
            workspace: WorkspaceArg = None, registry_url: str | None = None, qa: bool = True,
            events: Events | None = None) -> Any:
    """Renditions of a completed run's final asset for ``channels`` (presets or the run's ``[channels.NAME]``)
    into ``out_dir`` (default ``<workspace>/deliveries``): a ``DeliveryResult``, one ``RenditionResult`` each."""
    from image_gen.delivery.deliver import Deliverer

    runner = runner_for_run(run_id, workspace=workspace, events=events, registry_url=registry_url)
    return Deliverer(runner.workspace, runner=runner, qa=qa).deliver(run_id, list(channels), out_dir)


def run_pipeline(config: Config | Mapping[str, Any] | str | os.PathLike[str],
                 prompt: str | Brief | Iterable[str | Brief], *, workspace: str | os.PathLike[str] | Workspace | None
                 = None, simulate: bool | None = None, events: Events | None = None,
                 concurrency: int | None = None) -> RunOutcome | list[RunOutcome]:
    """Run a pipeline config on one brief (returns a RunOutcome) or several (returns a list, in order),
    ``concurrency`` briefs at once (default: the config's ``concurrency``, 1)."""
    cfg, source = _coerce_config(config)
    runner = make_runner(cfg, workspace=workspace, simulate=simulate, config_source=source, events=events)
    plans = runner.plan()
    single = isinstance(prompt, str | Brief)
    items = [prompt] if single else list(prompt)  # type: ignore[list-item, arg-type]
    briefs = [b if isinstance(b, Brief) else Brief(str(b), index=i) for i, b in enumerate(items)]
    outcomes = runner.start_many(briefs, plans, concurrency=concurrency or cfg.concurrency)
    return outcomes[0] if single else outcomes


def generate(model: str, prompt: str, *, width: int | None = None, height: int | None = None,
             guidance_scale: float | None = None, steps: int | None = None, seed: int | None = None,
             negative_prompt: str | None = None, num_images: int | None = None, simulate: bool | None = None,
             workspace: str | os.PathLike[str] | Workspace | None = None, **settings: Any) -> GenerateResult:
    """Render one prompt with one model (a one-stage pipeline), recorded like any run."""
    stage: dict[str, Any] = {"model": model, "width": width, "height": height, "guidance_scale": guidance_scale,
                             "steps": steps, "seed": seed, "negative_prompt": negative_prompt,
                             "num_images": num_images, **settings}
    cfg = load_config({k: v for k, v in stage.items() if v is not None})
    runner = make_runner(cfg, workspace=workspace, simulate=simulate)
    outcome = runner.start(Brief(prompt))
    return GenerateResult(outcome, runner.workspace)


def _read_image(path: str | os.PathLike[str], field: str = "seed_image") -> Image.Image:
    return open_user_image(path, field)


def _prompt_from_image(img: Image.Image) -> str:
    params = img.info.get("parameters")
    if isinstance(params, str) and params.strip():
        return params.split("\n", 1)[0]
    return ""


def generate_pipeline(seed_image: str | os.PathLike[str] | Image.Image,
                      cfg: Config | Mapping[str, Any] | str | os.PathLike[str], *, prompt: str | None = None,
                      simulate: bool | None = None,
                      workspace: str | os.PathLike[str] | Workspace | None = None) -> GenerateResult:
    """Run a finishing config on an existing image; the prompt defaults to the one embedded in the image."""
    config, source = _coerce_config(cfg)
    img = seed_image if not isinstance(seed_image, str | os.PathLike) else _read_image(seed_image)
    runner = make_runner(config, workspace=workspace, simulate=simulate, config_source=source)
    text = prompt if prompt is not None else _prompt_from_image(img)
    outcome = runner.start(Brief(text), seed_image=img)
    return GenerateResult(outcome, runner.workspace)


def upscale_image(image: str | os.PathLike[str] | Image.Image, *, factor: int = 2, model: str = "sd3.5-medium",
                  tile_size: int | None = 512, overlap: int = 32, prompt: str | None = None,
                  simulate: bool | None = None,
                  workspace: str | os.PathLike[str] | Workspace | None = None) -> GenerateResult:
    """Upscale an existing image by ``factor`` (2 or 4) through ``model``: in tiles when ``tile_size`` is given,
    else with the model's native upscaler."""
    if factor not in (2, 4):
        raise InputError(f"expected 2 or 4, got {factor}", field="factor")
    img = image if not isinstance(image, str | os.PathLike) else _read_image(image, "image")
    stage: dict[str, Any] = {"model": model, "upscale": f"{factor}x", "render": False,
                             "width": img.width, "height": img.height, "stage_name": "upscale"}
    if tile_size:
        stage.update(tile_size=tile_size, overlap=overlap)
    return generate_pipeline(img, stage, prompt=prompt, simulate=simulate, workspace=workspace)


def resume(run_id: str, *, workspace: WorkspaceArg = None, events: Events | None = None, force: bool = False,
           registry_url: str | None = None) -> RunOutcome:
    """Finish an interrupted, failed or budget-stopped run; finished calls are never sent again."""
    runner = runner_for_run(run_id, workspace=workspace, events=events, registry_url=registry_url)
    return runner.resume(run_id, force=force)


def approve(run_id: str, note: str | None = None, *, workspace: WorkspaceArg = None, events: Events | None = None,
            by: str | None = None, registry_url: str | None = None) -> RunOutcome:
    """Approve the gate a run waits at and continue it; a second approval raises WorkFailed and calls nothing."""
    return runner_for_run(run_id, workspace=workspace, events=events, registry_url=registry_url).approve(
        run_id, note, by=by)


def reject(run_id: str, note: str | None = None, *, workspace: WorkspaceArg = None, by: str | None = None,
           registry_url: str | None = None) -> RunOutcome:
    return runner_for_run(run_id, workspace=workspace, registry_url=registry_url).reject(run_id, note, by=by)


def cancel(run_id: str, note: str | None = None, *, workspace: WorkspaceArg = None,
           registry_url: str | None = None) -> RunOutcome:
    """Stop a run for good (a live process stops before its next call)."""
    return runner_for_run(run_id, workspace=workspace, registry_url=registry_url).cancel(run_id, note)


def runner_for_run(run_id: str, *, workspace: WorkspaceArg = None, events: Events | None = None,
                   registry_url: str | None = None, artifacts_url: str | None = None) -> Runner:
    """A runner rebuilt from the config snapshot recorded with the run (no config file needed). Its artifacts
    go where the workspace says (flag, environment, settings file), else where the run recorded them (when that
    URL holds no masked credential)."""
    ws = open_workspace(workspace, registry_url, artifacts_url=artifacts_url)
    run = ws.existing_registry().find_run(run_id)
    snapshot = dict(run.config)
    snapshot.pop("registry_url", None)  # recorded redacted; the workspace already chose the registry
    recorded = snapshot.get("artifacts_url")
    if recorded and "***" not in recorded:
        ws.adopt_artifacts_url(recorded, f"run {run.id}: artifacts_url")
    simulate = bool(snapshot.get("simulate"))
    cfg = load_config(snapshot)
    return _with_delivery(Runner(ws, cfg, simulate=simulate, config_source=run.config_source, events=events))


def export_bundle(ids: str | Iterable[str], out: str | os.PathLike[str], *, workspace: WorkspaceArg = None,
                  registry_url: str | None = None) -> Any:
    """Write an export zip (``out``) of runs or batches (ids or unique prefixes; a batch exports its runs): their
    renditions (or final images), ``manifest.json``/``manifest.csv`` and a contact sheet. Returns a BundleResult
    (``.path``, ``.manifest``). Bad input (an unknown id) writes nothing."""
    from image_gen.reporting.export import write_bundle

    refs = [ids] if isinstance(ids, str) else list(ids)
    ws = open_workspace(workspace, registry_url)
    try:
        return write_bundle(ws, refs, out)
    finally:
        if ws is not workspace:
            ws.close()


def export_mlflow(ids: str | Iterable[str], *, tracking_uri: str | None = None, experiment: str | None = None,
                  workspace: WorkspaceArg = None, registry_url: str | None = None) -> Any:
    """Log runs or batches' runs to MLflow (one MLflow run per run, an experiment per pipeline config; a re-export
    updates them). Returns an MlflowResult (``.to_dict()``). Needs the ``[mlflow]`` extra."""
    from image_gen.reporting.mlflow_export import export_mlflow as _export

    refs = [ids] if isinstance(ids, str) else list(ids)
    ws = open_workspace(workspace, registry_url)
    try:
        return _export(ws, refs, tracking_uri=tracking_uri, experiment=experiment)
    finally:
        if ws is not workspace:
            ws.close()


# -- batches ----------------------------------------------------------------------------------------------------

def submit_batch(config: Config | Mapping[str, Any] | str | os.PathLike[str],
                 briefs: str | os.PathLike[str] | Iterable[str | Brief], *, name: str | None = None,
                 workspace: WorkspaceArg = None, registry_url: str | None = None, simulate: bool | None = None,
                 executor: str = "local") -> str:
    """Record a batch of briefs (a prompt file: text, CSV, JSON or JSONL, or a list) to run on ``config``; its id.
    Bad input (config, prompt file, models) raises ``InputError`` and writes nothing. Run it with ``run_batch``."""
    from image_gen.pipeline import batch

    cfg, source = _coerce_config(config)
    if isinstance(briefs, str | os.PathLike):
        items = read_prompt_file(briefs)
    else:
        items = [b if isinstance(b, Brief) else Brief(str(b), index=i) for i, b in enumerate(briefs)]
    runner = make_runner(cfg, workspace=workspace, simulate=simulate, config_source=source, registry_url=registry_url)
    return batch.submit(runner, items, name=name, executor=executor)


def run_batch(batch_id: str, *, workspace: WorkspaceArg = None, registry_url: str | None = None,
              executor: str | None = None, address: str | None = None, concurrency: int | None = None,
              progress: Any = None) -> Any:
    """Run (or resume) every unfinished item of a batch and wait; its ``BatchStatus``. No finished call is paid
    twice; items a live process is running are left to it. ``progress(BatchStatus)`` is called as items end."""
    from image_gen.pipeline import batch

    ws = open_workspace(workspace, registry_url)
    return batch.run_batch(ws, batch_id, executor=executor, address=address, concurrency=concurrency,
                           progress=progress)


def batch_status(batch_id: str, *, workspace: WorkspaceArg = None, registry_url: str | None = None,
                 with_items: bool = True) -> Any:
    """A batch's ``BatchStatus``: counts per item state, spend so far, ETA (and its items)."""
    from image_gen.pipeline import batch

    reg = open_workspace(workspace, registry_url).existing_registry()
    return batch.status(reg, batch.find_batch(reg, batch_id).id, with_items=with_items)


def list_batches(*, workspace: WorkspaceArg = None, registry_url: str | None = None, limit: int = 50) -> list[Any]:
    from image_gen.pipeline import batch

    return batch.list_batches(open_workspace(workspace, registry_url).existing_registry(), limit=limit)


def cancel_batch(batch_id: str, note: str | None = None, *, workspace: WorkspaceArg = None,
                 registry_url: str | None = None) -> Any:
    """Cancel a batch: unstarted items never start, running ones stop before their next call."""
    from image_gen.pipeline import batch

    reg = open_workspace(workspace, registry_url).existing_registry()
    return batch.cancel(reg, batch.find_batch(reg, batch_id).id, note)
