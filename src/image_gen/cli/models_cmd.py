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
    from image_gen.cli._render import console, fixed, table, wrapped

    cells = []
    for e in entries:
        if e.size_prices:
            price = ", ".join(f"{s.name} ${s.usd:g}" for s in e.size_prices)
        elif e.price_per_megapixel is not None:
            price = f"${e.price_per_megapixel}/MP"
        else:
            price = f"${e.price_per_image}/img" if e.price_per_image is not None else "-"
        cells.append([e.id, e.provider, price, e.price_read_on or "-", f"{e.latency_s:g}",
                      "retired" if e.retired else "active"])
    t = table()
    for i, head in enumerate(("id", "provider", "price", "read on", "s", "status")):
        t.add_column(head, justify="right" if head == "s" else "left", **fixed([c[i] for c in cells], head))
    for c in cells:
        t.add_row(*c)
    console().print(t)
    for e in entries:  # ids in full, as plain lines (a terminal wraps them; nothing is cut)
        if e.retired:
            click.echo(f"{e.id}: retired on {e.retired_on}; successor {e.successor or '(none named)'}")
    aliases = [f"{a} = {e.id}" for e in entries for a in e.aliases]
    if aliases:
        click.echo(wrapped("aliases: " + ", ".join(aliases)))
    if not show_all:
        retired = sum(e.retired for e in cat.entries.values())
        if retired:
            click.echo(f"({retired} retired models not shown: image-gen models --all)", err=True)
