"""``config check FILE`` and ``config schema``."""

from __future__ import annotations

import click

from image_gen.cli._common import emit_json, json_option


@click.group()
def config() -> None:
    """Check a config file or print its JSON Schema."""


@config.command()
@click.argument("path", metavar="FILE")
@json_option
def check(path: str, as_json: bool) -> None:
    """Validate FILE; print its stages as resolved (exit 2 with the file and field on an error)."""
    from image_gen.catalog import Catalog
    from image_gen.config import LARGEST, load_config

    cfg = load_config(path)
    cat = Catalog.load({k: v.model_dump(exclude_none=True) for k, v in cfg.models.items()})
    stages = []
    warnings = []
    for name, st in cfg.stage_specs():
        model = st.model or LARGEST
        entry = None if model == LARGEST else cat.resolve(model)
        if entry is not None and entry.retired:
            warnings.append(f"stage {name}: {entry.id} was retired on {entry.retired_on}; a real run fails unless "
                            f"on_retired = \"successor\" (successor: {entry.successor})")
        stages.append({"stage": name, "model": entry.id if entry else model,
                       "settings": st.model_dump(exclude_none=True)})
    if as_json:
        emit_json({"file": path, "valid": True, "stages": stages, "warnings": warnings})
        return
    click.echo(f"{path}: ok")
    for s in stages:
        click.echo(f"  {s['stage']}: {s['model']}")
    for w in warnings:
        click.echo(f"  warning: {w}")


@config.command()
def schema() -> None:
    """Print the config's JSON Schema (for editors)."""
    from image_gen.config import config_schema

    emit_json(config_schema())
