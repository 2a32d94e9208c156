"""``config check FILE`` and ``config schema``."""

from __future__ import annotations

import click

from image_gen.cli._common import emit_json, ignored_workspace_options, json_option


@click.group()
def config() -> None:
    """Check a config file or print its JSON Schema."""


@config.command()
@click.argument("path", metavar="FILE")
@ignored_workspace_options
@json_option
def check(path: str, as_json: bool) -> None:
    """Validate FILE; print its stages as resolved (exit 2 with the file and field on an error).

    A stage on a retired model: with on_retired = "successor" it runs the successor (said, not warned);
    otherwise a warning names the successor, since a real run would fail."""
    from image_gen.catalog import Catalog
    from image_gen.config import LARGEST, load_config

    cfg = load_config(path)
    cat = Catalog.load({k: v.model_dump(exclude_none=True) for k, v in cfg.models.items()})
    stages = []
    warnings = []
    for name, st in cfg.stage_specs():
        model = st.model or LARGEST
        entry = None if model == LARGEST else cat.resolve(model)
        runs = entry.id if entry else model
        note = None
        if entry is not None and entry.retired:
            on_retired = st.on_retired or cfg.on_retired
            if on_retired == "successor" and entry.successor:
                runs = cat.resolve(entry.successor).id
                note = f"{entry.id} was retired on {entry.retired_on}; runs its successor {runs}"
            elif entry.successor:
                warnings.append(f"stage {name}: {entry.id} was retired on {entry.retired_on}; a real run fails: use "
                                f"its successor {entry.successor}, or set on_retired = \"successor\"")
            else:
                warnings.append(f"stage {name}: {entry.id} was retired on {entry.retired_on} and names no "
                                "successor; a real run fails")
        stages.append({"stage": name, "model": runs, "requested_model": model, "note": note,
                       "settings": st.model_dump(exclude_none=True)})
    if as_json:
        emit_json({"file": path, "valid": True, "stages": stages, "warnings": warnings})
        return
    click.echo(f"{path}: ok")
    for s in stages:
        click.echo(f"  {s['stage']}: {s['model']}" + (f"  ({s['note']})" if s["note"] else ""))
    for w in warnings:
        click.echo(f"  warning: {w}")


@config.command()
@ignored_workspace_options
@json_option
def schema(as_json: bool) -> None:
    """Print the config's JSON Schema (for editors); it is JSON with or without --json."""
    from image_gen.config import config_schema

    emit_json(config_schema())
