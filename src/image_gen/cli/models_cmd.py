"""``models``: the model catalog (built-in entries plus the workspace config's additions)."""

from __future__ import annotations

import click

from image_gen.cli._common import emit_json, json_option


@click.command()
@click.option("--config", "config_path", type=click.Path(), help="Include this config's [models] overrides.")
@click.option("--all", "show_all", is_flag=True, help="Include retired models' details and upscalers.")
@json_option
def models(config_path: str | None, show_all: bool, as_json: bool) -> None:
    """List the model catalog: provider, vendor name, price (and when it was read), latency, lifecycle."""
    from image_gen.catalog import Catalog

    overrides = {}
    if config_path:
        from image_gen.config import load_config

        cfg = load_config(config_path)
        overrides = {k: v.model_dump(exclude_none=True) for k, v in cfg.models.items()}
    cat = Catalog.load(overrides)
    entries = [cat.entries[i] for i in cat.ids()]
    if as_json:
        emit_json([e.model_dump(mode="json") | {"retired": e.retired} for e in entries])
        return
    from rich.table import Table

    from image_gen.cli._render import console

    t = Table()
    for col in ("id", "provider", "vendor model", "aliases", "price", "read on", "latency s", "can", "status"):
        t.add_column(col)
    for e in entries:
        if e.price_per_megapixel is not None:
            price = f"${e.price_per_megapixel}/MP"
        else:
            price = f"${e.price_per_image}/img" if e.price_per_image is not None else "-"
        status = f"retired {e.retired_on} -> {e.successor}" if e.retired else "active"
        t.add_row(e.id, e.provider, e.vendor_model, ", ".join(e.aliases), price, e.price_read_on or "-",
                  f"{e.latency_s:g}", ",".join(e.capabilities), status)
    console().print(t)
