"""``export``: a zip bundle of runs (or batches) with a manifest and contact sheet, and/or an MLflow export."""

from __future__ import annotations

import click

from image_gen.cli._common import emit_json, existing_workspace, json_option, workspace_option


@click.command()
@click.argument("ids", metavar="ID...", nargs=-1, required=True)
@click.option("--out", "out", type=click.Path(), default=None, metavar="BUNDLE.zip",
              help="Write the zip bundle here: renditions (or final images), manifest.json/.csv, contact sheet.")
@click.option("--mlflow", "to_mlflow", is_flag=True, help="Log each run as an MLflow run (extra [mlflow]).")
@click.option("--tracking-uri", default=None, metavar="URI",
              help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite in the workspace's "
                   ".image-gen/mlflow.db).")
@click.option("--experiment", default=None, metavar="NAME",
              help="MLflow experiment for every run (default: one per pipeline config).")
@workspace_option
@json_option
def export(ids: tuple[str, ...], out: str | None, to_mlflow: bool, tracking_uri: str | None, experiment: str | None,
           workspace: str | None, registry_url: str | None, as_json: bool) -> None:
    """Export runs: each ID is a run or a batch (id or unique prefix; a batch exports its runs).

    --out BUNDLE.zip writes the runs' channel renditions (or, without any, the final image), manifest.json and
    manifest.csv (one row per file: brief, channel, size, bytes, sha256, models, cost, QA) and a contact sheet;
    nothing is written unless every ID names something. --mlflow logs each run to MLflow (params per stage,
    cost/latency/QA metrics, images as artifacts); a re-export updates the same MLflow runs.
    """
    from image_gen.errors import InputError

    if out is None and not to_mlflow:
        raise InputError("say what to export to: --out BUNDLE.zip and/or --mlflow", field="--out")
    if not to_mlflow and (tracking_uri or experiment):
        raise InputError("--tracking-uri and --experiment go with --mlflow", field="--mlflow")
    if to_mlflow:  # MLflow's bad input before the bundle is written
        from image_gen.reporting.mlflow_export import check_target

        check_target(tracking_uri, experiment)
    ws = existing_workspace(workspace, registry_url)
    progress = None if as_json else (lambda msg: click.echo(f"exporting {msg}", err=True))
    data: dict[str, object] = {}
    try:
        if out is not None:
            from image_gen.reporting.export import write_bundle

            bundle = write_bundle(ws, list(ids), out, progress=progress)
            data["bundle"] = bundle.to_dict()
        if to_mlflow:
            from image_gen.reporting.mlflow_export import export_mlflow

            logged = export_mlflow(ws, list(ids), tracking_uri=tracking_uri, experiment=experiment,
                                   progress=None if out is not None else progress)
            data["mlflow"] = logged.to_dict()
    finally:
        ws.close()
    if as_json:
        emit_json(data)
        return
    b = data.get("bundle")
    if isinstance(b, dict):
        sim = "  [SIMULATED]" if b["simulated"] else ""
        click.echo(f"wrote {b['written']}: {b['files']} files from {b['runs']} runs, {b['bytes']} bytes{sim}")
        for r in b["skipped"]:
            click.echo(f"  run {r['run_id']}: {r['skipped']}")
    m = data.get("mlflow")
    if isinstance(m, dict):
        new = sum(1 for r in m["runs"] if r["created"])
        click.echo(f"MLflow {m['tracking_uri']}: {len(m['runs'])} runs ({new} new, {len(m['runs']) - new} updated) "
                   f"in {', '.join(m['experiments'])}")
        for w in m["warnings"]:
            click.echo(f"  warning: {w}")
