"""``report``: run two pipelines on the same briefs and write the comparison report (Markdown, HTML, PNG)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from image_gen.cli._common import emit_json, json_option, workspace_option


@click.command()
@click.option(
    "--compare",
    "configs",
    nargs=2,
    required=True,
    type=click.Path(dir_okay=False),
    metavar="BASELINE STAGED",
    help="Two pipeline configs to compare, before then after.",
)
@click.option("--prompt", "prompts", multiple=True, help="A brief (repeatable).")
@click.option("--prompt-file", type=click.Path(), help="One brief per line (or .json/.jsonl objects).")
@click.option("--simulate", is_flag=True, default=None, help="Use the offline simulator for every model.")
@click.option(
    "--reuse",
    is_flag=True,
    help="Read each pipeline's latest finished run of a brief from the registry; run only what is missing.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="report",
    show_default=True,
    help="Folder for report.md, report.html, the plots and the contact sheets.",
)
@workspace_option
@json_option
def report(
    configs: tuple[str, str],
    prompts: tuple[str, ...],
    prompt_file: str | None,
    simulate: bool | None,
    reuse: bool,
    out_dir: str,
    workspace: str | None,
    registry_url: str | None,
    as_json: bool,
) -> None:
    """Compare BASELINE and STAGED on the same briefs: render success, latency, cost, per stage, with plots
    and a contact sheet per brief. Simulated results are labelled as such on every page."""
    from image_gen.cli._common import workspace_of
    from image_gen.cli.run_cmd import _briefs
    from image_gen.config import load_config
    from image_gen.errors import InputError
    from image_gen.reporting.report import run_comparison, write_report

    for c in configs:
        if not Path(c).is_file():
            raise InputError("config file not found", file=c)
    for c in configs:
        load_config(c)  # bad input before the workspace is touched
    briefs = _briefs(prompts, prompt_file)
    ws = workspace_of(workspace, registry_url)
    try:
        comparison = run_comparison(
            configs,
            briefs,
            workspace=ws,
            simulate=simulate,
            reuse=reuse,
            progress=None if as_json else lambda msg: click.echo(f"running {msg}", err=True),
        )
        written = write_report(comparison, out_dir, ws.artifacts().open)
    finally:
        ws.close()
    if as_json:
        data = json.loads((written[2]).read_text(encoding="utf-8"))
        emit_json({"written": [str(p) for p in written], **data})
        return
    from image_gen.reporting.report import fairness_line, gate_rows, summary_rows

    metrics = comparison.metrics
    if comparison.simulated:
        click.echo("SIMULATED results (offline simulator)")
    click.echo(fairness_line(metrics))
    head, rows = summary_rows(metrics)
    click.echo("measured, every run, up to any approval gate:")
    for row in rows:
        click.echo("  " + "; ".join(f"{h}: {v}" for h, v in zip(head, row, strict=True)))
    head, rows = gate_rows(metrics)
    if rows:
        click.echo("behind the approval gate (measured where it ran, PROJECTED where a run waits):")
    for row in rows:
        click.echo("  " + "; ".join(f"{h}: {v}" for h, v in zip(head, row, strict=True)))
    click.echo(f"wrote {written[0]} and {written[1]} ({len(written) - 3} pictures)")
