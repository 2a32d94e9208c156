"""``run``, ``approve``, ``reject``, ``resume``: run pipeline configs on briefs and move runs through gates."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from image_gen.cli._common import emit_json, json_option, workspace_option


def _briefs(prompts: tuple[str, ...], prompt_file: str | None) -> list:
    from image_gen.api import Brief, read_prompt_file
    from image_gen.errors import InputError

    briefs = [Brief(p, index=i) for i, p in enumerate(prompts)]
    if prompt_file:
        briefs += read_prompt_file(prompt_file)
    if not briefs:
        raise InputError("give --prompt TEXT or --prompt-file FILE", field="--prompt")
    for b in briefs:
        if not b.prompt.strip():
            raise InputError("empty prompt", field="--prompt")
    return briefs


def finish(outcomes: list, as_json: bool, out_dir: str | None, workspace: object) -> None:
    from image_gen.cli._render import exit_code, export, print_outcomes

    written = export(outcomes, Path(out_dir), workspace) if out_dir else []  # type: ignore[arg-type]
    if as_json:
        emit_json({"runs": [o.to_dict() for o in outcomes], "exported": [str(p) for p in written],
                   "provider_calls": sum(o.provider_calls for o in outcomes)})
    else:
        print_outcomes(outcomes)
        if written:
            click.echo(f"wrote {len(written)} images to {out_dir}")
    sys.exit(exit_code(outcomes))


def estimate_option(f: Any) -> Any:
    return click.option("--estimate", is_flag=True,
                        help="Print the calls and cost this would take, per stage and in total; spend and write "
                             "nothing.")(f)


def print_estimate(est: Any, as_json: bool, routing: dict[str, Any] | None = None) -> None:
    from image_gen.pipeline.estimate import format_estimate

    if as_json:
        emit_json({"estimate": est.to_dict(), **({"routing": routing} if routing else {})})
    else:
        for line in format_estimate(est):
            click.echo(line)
        if routing:
            click.echo(f"  routing: {routing['mode']}: {routing.get('reason')}")


def run_briefs(cfg: Any, source: str | None, briefs: list, *, simulate: bool | None, workspace: str | None,
               registry_url: str | None, as_json: bool, out_dir: str | None, seed_image: Any = None,
               concurrency: int | None = None, estimate: bool = False, sla: float | None = None) -> None:
    from image_gen.api import make_runner
    from image_gen.cli._common import workspace_of
    from image_gen.cli._render import progress_events

    if sla is not None:  # --sla overrides the config's pipeline.sla_s (and is recorded with the run's config)
        cfg = cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(update={"sla_s": sla})})
    ws = workspace_of(workspace, registry_url, cfg.registry_url, cfg_artifacts_url=cfg.artifacts_url)
    runner = make_runner(cfg, workspace=ws, simulate=simulate or None, config_source=source)
    if estimate:
        from image_gen.pipeline.estimate import estimate_runner

        seed = seed_image.size if seed_image is not None else None
        plans = runner.plan()
        routing = None
        if cfg.pipeline.sla_s is not None:  # estimate the path the runs would be routed to now (nothing is written)
            routed = runner.route(plans, seed_size=seed)
            plans, routing = routed.plans, routed.record
        print_estimate(estimate_runner(runner, briefs=len(briefs), seed_size=seed, plans=plans), as_json, routing)
        return
    plans = runner.plan()
    runner.check_configured(plans)
    with progress_events(len(plans) * len(briefs)) as events:
        runner.events = events
        outcomes = runner.start_many(briefs, plans, concurrency=concurrency or runner.config.concurrency,
                                     seed_image=seed_image)
    finish(outcomes, as_json, out_dir, runner.workspace)


@click.command()
@click.option("--config", "config_path", type=click.Path(), help="Pipeline config (TOML, YAML or JSON); "
              "default: the workspace's image-gen.toml.")
@click.option("--prompt", "prompts", multiple=True, help="A brief (repeatable).")
@click.option("--prompt-file", type=click.Path(), help="One brief per line (or .json/.jsonl objects).")
@click.option("--simulate", is_flag=True, help="Run every stage on its simulated twin (offline, no key).")
@click.option("--out-dir", type=click.Path(file_okay=False), help="Export every stage's image here.")
@click.option("--concurrency", type=click.IntRange(1, 64), help="Briefs run at once (default: the config's, 1).")
@click.option("--sla", type=click.FloatRange(min=0, min_open=True, max=86400), metavar="SECONDS",
              help="Latency SLA (overrides pipeline.sla_s): below pipeline.sla_target's chance of meeting it, "
                   "the run goes single-call on pipeline.sla_model; the decision is recorded.")
@estimate_option
@workspace_option
@json_option
def run(config_path: str | None, prompts: tuple[str, ...], prompt_file: str | None, simulate: bool,
        out_dir: str | None, concurrency: int | None, sla: float | None, estimate: bool, workspace: str | None,
        registry_url: str | None, as_json: bool) -> None:
    """Run a pipeline config on one or more briefs."""
    from image_gen.cli._common import workspace_of
    from image_gen.config import load_config
    from image_gen.errors import ConfigError

    if config_path is None:
        found = workspace_of(workspace, registry_url).default_config()
        if found is None:
            raise ConfigError("no --config given and no image-gen.toml in the workspace", field="--config")
        config_path = str(found)
    cfg = load_config(config_path)
    briefs = _briefs(prompts, prompt_file)
    run_briefs(cfg, config_path, briefs, simulate=simulate, workspace=workspace, registry_url=registry_url,
               as_json=as_json, out_dir=out_dir, concurrency=concurrency, estimate=estimate, sla=sla)


def _one(action: str, run_id: str, note: str | None, workspace: str | None, registry_url: str | None,
         as_json: bool, out_dir: str | None = None, *, by: str | None = None, force: bool = False) -> None:
    from image_gen import api
    from image_gen.cli._common import existing_workspace, get_run
    from image_gen.cli._render import progress_events

    ws = existing_workspace(workspace, registry_url)  # an unknown workspace or run is bad input: nothing made
    run_id = get_run(ws, run_id).id
    with progress_events(1, enabled=action not in ("reject", "cancel")) as events:
        if action == "approve":
            outcome = api.approve(run_id, note, workspace=ws, events=events, by=by)
        elif action == "reject":
            outcome = api.reject(run_id, note, workspace=ws, by=by)
        elif action == "cancel":
            outcome = api.cancel(run_id, note, workspace=ws)
        else:
            outcome = api.resume(run_id, workspace=ws, events=events, force=force)
    finish([outcome], as_json, out_dir, ws)


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--note", help="Why (recorded with the approval).")
@click.option("--out-dir", type=click.Path(file_okay=False), help="Export the run's images here.")
@workspace_option
@json_option
@click.option("--by", help="Who decides (recorded; default: $USER).")
def approve(run_id: str, note: str | None, out_dir: str | None, workspace: str | None, registry_url: str | None,
            as_json: bool, by: str | None) -> None:
    """Approve the stage RUN waits at, and continue the run (a second approval exits 1 and calls nothing)."""
    _one("approve", run_id, note, workspace, registry_url, as_json, out_dir, by=by or _user())


def _user() -> str | None:
    import getpass

    try:
        return getpass.getuser()
    except Exception:
        return None


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--note", required=True, help="Why the run is rejected (recorded).")
@workspace_option
@json_option
@click.option("--by", help="Who decides (recorded; default: $USER).")
def reject(run_id: str, note: str, workspace: str | None, registry_url: str | None, as_json: bool,
           by: str | None) -> None:
    """Reject a run waiting at a gate; it ends as rejected."""
    _one("reject", run_id, note, workspace, registry_url, as_json, by=by or _user())


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--note", help="Why (recorded).")
@workspace_option
@json_option
def cancel(run_id: str, note: str | None, workspace: str | None, registry_url: str | None, as_json: bool) -> None:
    """Stop a run for good; a process running it stops before its next call."""
    _one("cancel", run_id, note, workspace, registry_url, as_json)


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--out-dir", type=click.Path(file_okay=False), help="Export the run's images here.")
@workspace_option
@json_option
@click.option("--force", is_flag=True, help="Take over a run whose process still holds its lease.")
def resume(run_id: str, out_dir: str | None, workspace: str | None, registry_url: str | None, as_json: bool,
           force: bool) -> None:
    """Finish an interrupted run; calls that finished are never sent again."""
    _one("resume", run_id, None, workspace, registry_url, as_json, out_dir, force=force)
