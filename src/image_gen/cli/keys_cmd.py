"""``keys set|list|remove|path``: API keys in the user's keys file (mode 0600). Values are never printed."""

from __future__ import annotations

import sys
from typing import Any

import click

from image_gen.cli._common import emit_json, ignored_workspace_options, json_option


def _input_error(message: str, field: str) -> Exception:
    from image_gen.errors import InputError

    return InputError(message, field=field)


@click.group()
def keys() -> None:
    """API keys in the user's keys file (0600). Environment variables still win over the file."""


@keys.command("set")
@click.argument("name", metavar="NAME")
@click.option("--value", default=None,
              help="The key (default: read from stdin, or asked for without echo on a terminal; a value on the "
                   "command line may stay in your shell's history).")
@ignored_workspace_options
@json_option
def set_(name: str, value: str | None, as_json: bool) -> None:
    """Store the key NAME (e.g. IDEOGRAM_API_KEY) in the keys file."""
    from image_gen.keys import NAME, fingerprint, set_key

    if not NAME.match(name):
        raise _input_error(f"not a key name: {name!r} (letters, digits and _, e.g. IDEOGRAM_API_KEY)", "NAME")
    if value is None:
        value = click.prompt(f"{name}", hide_input=True, err=True) if sys.stdin.isatty() else sys.stdin.read()
    value = (value or "").strip()
    if not value or "\n" in value:
        raise _input_error("expected one non-empty line", "--value")
    path = set_key(name, value)
    info = {"name": name, "fingerprint": fingerprint(value), "path": str(path)}
    if as_json:
        emit_json({"key": info})
    else:
        click.echo(f"stored {name} ({info['fingerprint']}) in {path}")


def _rows() -> list[dict[str, Any]]:
    import os

    from image_gen.keys import fingerprint, read_keys
    from image_gen.providers.status import KEY_VARS

    stored = read_keys()
    known = [v for names in KEY_VARS.values() for v in names]
    rows = []
    for name in sorted(set(stored) | {v for v in known if os.environ.get(v)}):
        env = os.environ.get(name)
        in_use = env or stored.get(name)
        rows.append({
            "name": name,
            "source": "environment" if env else "keys file",
            "fingerprint": fingerprint(in_use) if in_use else None,
            "in_keys_file": name in stored,
            "file_fingerprint": fingerprint(stored[name]) if name in stored else None,
        })
    return rows


@keys.command("list")
@ignored_workspace_options
@json_option
def list_(as_json: bool) -> None:
    """Key names, where each comes from (the environment wins) and a fingerprint; never a value."""
    from image_gen.keys import KeysFileError, keys_path

    try:
        rows = _rows()
    except KeysFileError as exc:
        raise _input_error(str(exc), "keys file") from None
    if as_json:
        emit_json({"path": str(keys_path()), "keys": rows})
        return
    click.echo(f"keys file: {keys_path()}")
    if not rows:
        click.echo("no keys (image-gen keys set NAME)")
    for r in rows:
        shadow = " (keys file entry unused: the environment wins)" if r["source"] == "environment" and \
            r["in_keys_file"] else ""
        click.echo(f"  {r['name']}  {r['fingerprint']}  from {r['source']}{shadow}")


@keys.command("remove")
@click.argument("name", metavar="NAME")
@ignored_workspace_options
@json_option
def remove(name: str, as_json: bool) -> None:
    """Remove NAME from the keys file (the environment is not touched)."""
    from image_gen.keys import remove_key

    if not remove_key(name):
        raise _input_error(f"no key {name!r} in the keys file", "NAME")
    if as_json:
        emit_json({"removed": name})
    else:
        click.echo(f"removed {name}")


@keys.command("path")
@ignored_workspace_options
@json_option
def path(as_json: bool) -> None:
    """Print the keys file's path ($IMAGE_GEN_KEYS_FILE overrides)."""
    from image_gen.keys import keys_path

    if as_json:
        emit_json({"path": str(keys_path())})
    else:
        click.echo(str(keys_path()))
