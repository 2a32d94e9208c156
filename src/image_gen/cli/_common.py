"""Shared CLI plumbing: error-to-exit-code mapping, JSON output, workspace option."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def run_cli(group: click.Group, argv: list[str] | None) -> Any:
    from image_gen.errors import ImageGenError
    from image_gen.providers.base import AuthenticationFailed, NotConfigured, ProviderError

    try:
        return group.main(args=argv, prog_name="image-gen", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_BAD_INPUT)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_FAILED)
    except ImageGenError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except (AuthenticationFailed, NotConfigured) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except ProviderError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, sort_keys=False))


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(f)


def workspace_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--workspace",
        type=click.Path(file_okay=False),
        envvar="IMAGE_GEN_HOME",
        default=None,
        help="Workspace folder (default: $IMAGE_GEN_HOME or the current folder).",
    )(f)
