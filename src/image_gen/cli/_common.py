"""Shared CLI plumbing: error-to-exit-code mapping, JSON output, the global options.

The global options (``--workspace DIR``, ``--registry-url URL``, ``--artifacts-url URL``, ``--json``) are accepted
by the ``image-gen`` group and by every command, before or after the command name; a value given after the command
wins.
With ``--json`` an error is a JSON object on stderr: ``{"error": {"kind", "message", "file", "field"}}``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from image_gen.workspace import Workspace

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

GLOBALS_KEY = "image_gen.globals"


def _wants_json(argv: list[str]) -> bool:
    args = argv[: argv.index("--")] if "--" in argv else argv
    return "--json" in args


def _error(kind: str, message: str, as_json: bool, *, file: str | None = None, field: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps({"error": {"kind": kind, "message": message, "file": file, "field": field}}),
                   err=True)
    else:
        click.echo(f"error: {message}", err=True)


def _bare(exc: Any) -> str:
    """An InputError's message without the "file: field: " prefix (JSON carries those apart)."""
    text = str(exc)
    where = ": ".join(p for p in (exc.file, exc.field) if p)
    return text[len(where) + 2:] if where and text.startswith(where + ": ") else text


def _interrupted(exc: KeyboardInterrupt, as_json: bool) -> None:
    from image_gen.cli._render import LIVE_RUNS

    run_ids = list(getattr(exc, "run_ids", None) or sorted(LIVE_RUNS))
    if as_json:
        click.echo(json.dumps({"error": {"kind": "interrupted", "message": "interrupted", "file": None,
                                         "field": None, "run_ids": run_ids}}), err=True)
    if not run_ids:
        click.echo("interrupted", err=True)
    for rid in run_ids:
        click.echo(f"interrupted; finish with: image-gen resume {rid}", err=True)


def run_cli(group: click.Group, argv: list[str] | None) -> Any:
    from image_gen.errors import ImageGenError, InputError
    from image_gen.providers.base import AuthenticationFailed, NotConfigured, ProviderError

    args = list(sys.argv[1:] if argv is None else argv)
    as_json = _wants_json(args)
    try:
        return group.main(args=args, prog_name="image-gen", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        if as_json:
            param = getattr(exc, "param", None)
            ctx = getattr(exc, "ctx", None)
            _error("usage", exc.format_message(), True, field=param.get_error_hint(ctx) if param and ctx else None)
        else:
            exc.show()
        sys.exit(EXIT_BAD_INPUT)
    except click.exceptions.Abort:  # click turns Ctrl-C at a prompt into Abort
        _interrupted(KeyboardInterrupt(), as_json)
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt as exc:  # includes image_gen.errors.RunsInterrupted (.run_ids)
        _interrupted(exc, as_json)
        sys.exit(EXIT_INTERRUPTED)
    except InputError as exc:
        _error(type(exc).__name__, _bare(exc) if as_json else str(exc), as_json, file=exc.file, field=exc.field)
        sys.exit(exc.exit_code)
    except ImageGenError as exc:
        _error(type(exc).__name__, str(exc), as_json)
        sys.exit(exc.exit_code)
    except (AuthenticationFailed, NotConfigured) as exc:
        _error(type(exc).__name__, str(exc), as_json)
        sys.exit(EXIT_BAD_INPUT)
    except ProviderError as exc:
        _error(type(exc).__name__, str(exc), as_json)
        sys.exit(EXIT_FAILED)


def emit_json(data: dict[str, Any]) -> None:
    """Print one JSON object (every command's ``--json`` output is an object) and flush."""
    click.echo(json.dumps(data, indent=2, default=str, sort_keys=False))
    sys.stdout.flush()


# -- global options --------------------------------------------------------------------------------------------

def root_globals(ctx: click.Context | None = None) -> dict[str, Any]:
    ctx = ctx or click.get_current_context(silent=True)
    if ctx is None:
        return {}
    root = ctx.find_root()
    data: dict[str, Any] = root.meta.setdefault(GLOBALS_KEY, {})
    return data


def _from_root(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A command's own value, else the value given before the command name (on the group)."""
    if value is None or value is False:
        return root_globals(ctx).get(param.name or "", value)
    return value


def _to_root(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and value is not False:
        root_globals(ctx)[param.name or ""] = value
    return value


def _workspace_opt(callback: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--workspace", type=click.Path(file_okay=False), default=None, callback=callback,
        help="Workspace folder (default: $IMAGE_GEN_HOME or the current folder).",
    )


def _registry_url_opt(callback: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--registry-url", default=None, callback=callback, metavar="URL",
        help="Registry database URL, e.g. postgresql+psycopg://host/db (default: the config's registry_url, "
             "then $IMAGE_GEN_REGISTRY_URL, else SQLite in the workspace).",
    )


def _artifacts_url_opt(callback: Callable[..., Any]) -> Callable[..., Any]:
    """``--artifacts-url``: kept with the globals (commands read it through :func:`workspace_of`), so no command's
    signature changes."""
    return click.option(
        "--artifacts-url", default=None, callback=callback, expose_value=False, metavar="URL",
        help="Where artifacts are stored: file:///path, s3://bucket/prefix (credentials from the AWS variables), "
             "memory:// (default: $IMAGE_GEN_ARTIFACTS_URL, the config's artifacts_url, else the workspace).",
    )


def _json_opt(callback: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, default=False, callback=callback,
                        help="Print one JSON object on stdout (errors: a JSON object on stderr).")


def group_global_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The global options on the ``image-gen`` group (before the command name)."""
    for opt in (_json_opt, _artifacts_url_opt, _registry_url_opt, _workspace_opt):
        f = opt(_to_root)(f)
    return f


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return _json_opt(_from_root)(f)


def workspace_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--workspace`` and ``--registry-url`` (passed to the command as ``workspace`` and ``registry_url``), and
    ``--artifacts-url`` (kept with the globals, read by :func:`workspace_of`)."""
    return _workspace_opt(_from_root)(_registry_url_opt(_from_root)(_artifacts_url_opt(_to_root)(f)))


def ignored_workspace_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """For commands that read no workspace: accept ``--workspace`` and ``--registry-url`` all the same."""
    f = click.option("--workspace", type=click.Path(file_okay=False), default=None, expose_value=False,
                     help="Accepted by every command; not used by this one.")(f)
    f = click.option("--artifacts-url", default=None, expose_value=False, metavar="URL",
                     help="Accepted by every command; not used by this one.")(f)
    return click.option("--registry-url", default=None, expose_value=False, metavar="URL",
                        help="Accepted by every command; not used by this one.")(f)


def workspace_of(workspace: str | None, registry_url: str | None, cfg_registry_url: str | None = None, *,
                 cfg_artifacts_url: str | None = None) -> Workspace:
    """The workspace a command works in (``--artifacts-url`` read from the globals). A ``--workspace`` that names
    no folder, or an unusable artifacts URL, is bad input."""
    from image_gen.errors import InputError
    from image_gen.workspace import Workspace

    if workspace is not None and Path(workspace).exists() and not Path(workspace).is_dir():
        raise InputError("not a folder", file=workspace, field="--workspace")
    return Workspace.resolve(workspace, registry_url, config_url=cfg_registry_url,
                             artifacts_url=root_globals().get("artifacts_url"), config_artifacts_url=cfg_artifacts_url)


def existing_workspace(workspace: str | None, registry_url: str | None) -> Workspace:
    """The workspace of a read-only command: bad input, creating nothing, without a folder or a registry."""
    from image_gen.errors import InputError

    ws = workspace_of(workspace, registry_url)
    if not ws.registry_url and not ws.root.is_dir():
        raise InputError(f"no such folder: {ws.root}", field="--workspace")
    url = ws.registry_url or ""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:" and not Path(url[len("sqlite:///"):]).is_file():
        raise InputError(f"no SQLite registry at {url[len('sqlite:///'):]}", field="--registry-url")
    ws.existing_registry()
    return ws


def get_run(ws: Workspace, run_id: str) -> Any:
    """A recorded run by id (or unique prefix), read-only; bad input when there is none."""
    return ws.existing_registry().find_run(run_id)


def qa_word(passed: bool | None) -> str:
    """One word for a QA result wherever a person reads it: pass, fail, or - when not checked."""
    return "-" if passed is None else ("pass" if passed else "fail")
