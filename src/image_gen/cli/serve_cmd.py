"""``serve``: the review studio, a web app on the library's services (see ``image_gen.web``)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from image_gen.cli._common import workspace_of, workspace_option

TOKEN_ENV = "IMAGE_GEN_SERVE_TOKEN"
USER_ENV = "IMAGE_GEN_SERVE_USER"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def read_token_file(path: str) -> tuple[str, str | None]:
    """The token (and the user its API calls are recorded as): the file's text, or TOML ``token = "..."`` with
    an optional ``user = "..."``."""
    import tomllib

    from image_gen.errors import InputError

    p = Path(path)
    if not p.is_file():
        raise InputError("token file not found", file=path, field="--token-file")
    text = p.read_text(encoding="utf-8").strip()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        data = {}
    token, user = (str(data["token"]), data.get("user")) if isinstance(data.get("token"), str) else (text, None)
    if len(token) < 16 or any(c.isspace() for c in token):
        raise InputError("expected a token of at least 16 characters without spaces", file=path,
                         field="--token-file")
    return token, str(user) if user else None


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback needs --token-file.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@workspace_option
@click.option("--registry-url", help="SQLAlchemy URL of the registry (default: the workspace's).")
@click.option("--token-file", type=click.Path(dir_okay=False),
              help=f"File holding the access token (default: ${TOKEN_ENV}, else a new token is printed).")
@click.option("--user", help=f"Name API calls with the token are recorded under (default: ${USER_ENV}).")
def serve(host: str, port: int, workspace: str | None, registry_url: str | None, token_file: str | None,
          user: str | None) -> None:
    """Open the review studio: browse runs, approve or reject gates, re-run with a tweak, compare, report.

    Mutating requests need the access token (Authorization: Bearer TOKEN, or sign in on the page)."""
    from image_gen.errors import InputError

    loopback = host in LOOPBACK
    if not loopback:
        click.echo(f"warning: --host {host} exposes the studio beyond this machine", err=True)
        if not token_file:
            raise InputError("refusing to listen beyond loopback without --token-file (a token you chose and "
                             "keep in a file)", field="--host")
    generated = False
    token_user: str | None = None
    if token_file:
        token, token_user = read_token_file(token_file)
    elif os.environ.get(TOKEN_ENV):
        token = os.environ[TOKEN_ENV].strip()
    else:
        from image_gen.web.app import make_token

        token, generated = make_token(), True
    import uvicorn

    from image_gen.web.app import create_app

    app = create_app(workspace_of(workspace, registry_url), token=token,
                     user=user or token_user or os.environ.get(USER_ENV), require_read_auth=not loopback)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    click.echo(f"image-gen studio on {url}  (workspace {app.state.studio.ws.root})")
    if generated:
        click.echo(f"access token: {token}   (sign in at {url}login; API: Authorization: Bearer TOKEN)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
