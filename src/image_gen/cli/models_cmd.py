"""``models``: the model catalog (built-in entries plus the workspace config's additions)."""

from __future__ import annotations

import click

from image_gen.cli._common import emit_json, ignored_workspace_options, json_option


@click.command()
@click.option("--config", "config_path", type=click.Path(), help="Include this config's [models] overrides.")
@click.option("--all", "show_all", is_flag=True, help="Include retired models (default: active models only).")
@ignored_workspace_options
@json_option
def models(config_path: str | None, show_all: bool, as_json: bool) -> None:
    """List the model catalog: provider, vendor name, price (and when it was read), latency, lifecycle.

    Active models only, unless --all (retired models too, with their successor)."""
    from image_gen.catalog import Catalog

    overrides = {}
    if config_path:
        from image_gen.config import load_config

        cfg = load_config(config_path)
        overrides = {k: v.model_dump(exclude_none=True) for k, v in cfg.models.items()}
    cat = Catalog.load(overrides)
    entries = [cat.entries[i] for i in cat.ids() if show_all or not cat.entries[i].retired]
    if as_json:
        emit_json({"models": [e.model_dump(mode="json") | {"retired": e.retired} for e in entries]})
        return
    from image_gen.cli._render import console, fixed, table

    t = table()
    t.add_column("id", **fixed([e.id for e in entries], "id"))
    t.add_column("provider", **fixed([e.provider for e in entries], "provider"))
    t.add_column("price", no_wrap=True)
    t.add_column("read on", no_wrap=True)
    t.add_column("s", no_wrap=True, justify="right")
    t.add_column("status", no_wrap=False, overflow="fold", min_width=6)
    t.add_column("aliases", overflow="fold", ratio=1)
    for e in entries:
        if e.price_per_megapixel is not None:
            price = f"${e.price_per_megapixel}/MP"
        else:
            price = f"${e.price_per_image}/img" if e.price_per_image is not None else "-"
        status = f"retired {e.retired_on} -> {e.successor}" if e.retired else "active"
        t.add_row(e.id, e.provider, price, e.price_read_on or "-", f"{e.latency_s:g}", status,
                  ", ".join(e.aliases) or "-")
    console().print(t)
    if not show_all:
        retired = sum(e.retired for e in cat.entries.values())
        if retired:
            click.echo(f"({retired} retired models not shown: image-gen models --all)", err=True)
