"""``image-gen providers``: which providers are installed and configured (from the environment). No keys."""

from __future__ import annotations

import click

from image_gen.cli._common import emit_json, ignored_workspace_options, json_option


@click.command("providers")
@ignored_workspace_options
@json_option
def providers(as_json: bool) -> None:
    """Say which providers are configured. Keys are read from the environment and never shown."""
    from image_gen.api import provider_status

    rows = provider_status()
    if as_json:
        emit_json({"providers": rows})
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("provider", "configured", "key from", "base URL", "note")
    for r in rows:
        wanted = " or ".join(r["key_vars"]) if r["key_vars"] else ""
        note = r["error"] or ("" if r["configured"] or not wanted else f"set {wanted}")
        table.add_row(
            r["name"], "yes" if r["configured"] else "no", r["key_from"] or "", r["base_url"] or "", note
        )
    Console().print(table)
