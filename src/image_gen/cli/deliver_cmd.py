"""``deliver``: channel renditions of a completed run (smart crop, format, byte budget, provenance, QA)."""

from __future__ import annotations

import sys
from typing import Any

import click

from image_gen.cli._common import EXIT_FAILED, emit_json, json_option, qa_word, workspace_option


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--channel", "channels", multiple=True, required=True, metavar="NAME",
              help="A channel preset (web-hero, square, portrait, story, ...) or the run's [channels.NAME]; "
                   "repeat for several.")
@click.option("--out-dir", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the files (default: <workspace>/deliveries).")
@click.option("--sheet", type=click.Path(dir_okay=False), default=None, metavar="PNG",
              help="Also write a contact sheet of the renditions (QA, bytes vs budget, quality, encodes).")
@click.option("--no-qa", is_flag=True, help="Skip QA on the renditions (not recommended).")
@workspace_option
@json_option
def deliver(run_id: str, channels: tuple[str, ...], out_dir: str | None, sheet: str | None, no_qa: bool,
            workspace: str | None, registry_url: str | None, as_json: bool) -> None:
    """Render RUN's final asset for each --channel into --out-dir: text-aware crop, resample, encode within the
    channel's byte budget, XMP/A1111 (and C2PA when configured) provenance, QA on every file.

    Exit 1 when a rendition fails QA or cannot be made (e.g. its byte budget cannot be met), 2 for an unknown
    channel or a run that is not completed.
    """
    from image_gen import api
    from image_gen.cli._common import existing_workspace

    ws = existing_workspace(workspace, registry_url)
    result = api.deliver(run_id, list(channels), out_dir, workspace=ws, qa=not no_qa)
    if sheet:
        from image_gen.delivery.sheet import rendition_sheet
        from image_gen.imaging.labels import label_texts

        run = ws.existing_registry().find_run(result.run_id)
        labels = {run.id: " / ".join(label_texts(run.prompt)) or run.id}
        rendition_sheet([result], labels, title=f"Renditions of run {run.id}").save(sheet)
    if as_json:
        emit_json(result.to_dict())
    else:
        _print(result)
    if not result.ok:
        sys.exit(EXIT_FAILED)


def _print(result: Any) -> None:
    sim = " (SIMULATED)" if result.simulated else ""
    click.echo(f"run {result.run_id}{sim} -> {result.out_dir}")
    for r in result.renditions:
        if r.error:
            click.echo(f"  FAILED {r.channel}: {r.error}")
            continue
        budget = f"/{r.max_bytes}" if r.max_bytes else ""
        quality = f" q{r.quality}" if r.quality is not None else ""
        mode = (r.fit or {}).get("mode", "?")
        click.echo(f"  {qa_word(r.qa_passed):4} {r.channel}: {r.path}  {r.width}x{r.height} {r.format} "
                   f"{r.size_bytes}{budget} B{quality} ({r.encodes} encodes, {mode})")
        for reason in (r.qa or {}).get("reasons") or []:
            click.echo(f"       - {reason}")
