"""The studio's application: state (workspace, token, background work), security and the Starlette app.

Security: every mutating route takes the token, as ``Authorization: Bearer TOKEN`` or as the session cookie that
signing in with it sets; a cookie-authenticated request must also carry the CSRF token of its session
(``X-CSRF-Token`` header or ``csrf`` form field). Artifact routes serve only sha256 names the registry recorded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from image_gen.errors import InputError, RunNotFound, WorkFailed
from image_gen.workspace import Workspace

log = logging.getLogger("image_gen.web")

HERE = Path(__file__).parent
SESSION_COOKIE = "image_gen_session"
MAX_UPLOAD_BYTES = 1_000_000
MAX_BODY_BYTES = 2_000_000
MAX_BRIEFS = 200
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class Batch:
    """Briefs started together from the studio; ``run_ids`` fill in as the runs start."""

    id: str
    config: str
    total: int
    run_ids: list[str] = field(default_factory=list)
    done: int = 0
    error: str | None = None
    started_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {"batch_id": self.id, "config": self.config, "total": self.total, "started": len(self.run_ids),
                "done": self.done, "run_ids": list(self.run_ids), "error": self.error,
                "finished": self.done >= self.total or self.error is not None}


class Studio:
    """What every request shares: the workspace, the token, the signed-in names and the background workers."""

    def __init__(self, workspace: Workspace, token: str, *, user: str | None = None, require_read_auth: bool = False,
                 workers: int = 4) -> None:
        self.ws = workspace
        self.token = token
        self.user = user
        self.require_read_auth = require_read_auth
        self.registry = workspace.registry()  # open (and migrate) once, before threads share it
        self.artifacts = workspace.artifacts()
        self.thumb_dir = workspace.state_dir / "thumbs"
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="image-gen-studio")
        self.batches: dict[str, Batch] = {}
        self.report_job: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._thumb_locks: dict[str, threading.Lock] = {}

    # -- sessions and CSRF ---------------------------------------------------------------------------------------
    def _sign(self, text: str) -> str:
        return hmac.new(self.token.encode(), text.encode(), hashlib.sha256).hexdigest()

    def session_value(self, name: str) -> str:
        enc = base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")
        return f"{enc}.{self._sign('session:' + enc)}"

    def session_user(self, value: str | None) -> str | None:
        """The name a valid session cookie carries, else None."""
        if not value or "." not in value:
            return None
        enc, _, sig = value.rpartition(".")
        if not hmac.compare_digest(sig, self._sign("session:" + enc)):
            return None
        try:
            return base64.urlsafe_b64decode(enc + "=" * (-len(enc) % 4)).decode()
        except ValueError:
            return None

    def csrf_for(self, session: str | None) -> str:
        return self._sign("csrf:" + (session or ""))

    def bearer_ok(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token.encode())

    def viewer(self, request: Request) -> str | None:
        """Who is asking: the signed-in name, or the token's user for a bearer request; None when anonymous."""
        if self.bearer_ok(request):
            return request.headers.get("x-image-gen-user") or self.user or "api"
        return self.session_user(request.cookies.get(SESSION_COOKIE))

    def check_read(self, request: Request) -> None:
        if self.require_read_auth and self.viewer(request) is None:
            raise HTTPException(403, "sign in first (the studio is not on loopback)")

    async def check_write(self, request: Request) -> str:
        """The name a mutating request acts as; 403 without the token, or with a cookie but no CSRF token."""
        if self.bearer_ok(request):
            return request.headers.get("x-image-gen-user") or self.user or "api"
        session = request.cookies.get(SESSION_COOKIE)
        name = self.session_user(session)
        if name is None:
            raise HTTPException(403, "the access token is required (Authorization: Bearer TOKEN, or sign in)")
        sent = request.headers.get("x-csrf-token")
        if sent is None and request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            sent = str(form.get("csrf") or "")
        if not sent or not hmac.compare_digest(sent, self.csrf_for(session)):
            raise HTTPException(403, "missing or wrong CSRF token")
        return name

    # -- background work -----------------------------------------------------------------------------------------
    def start(self, work: Callable[[Callable[[str, dict[str, Any]], None]], Any], wait_s: float = 30.0) -> str | None:
        """Run ``work(events)`` in a worker thread; return the id of the run it starts once it has started (its
        gate decided, its row written), or raise what the work raised before that."""
        started = threading.Event()
        box: dict[str, str] = {}

        def events(kind: str, data: dict[str, Any]) -> None:
            if kind == "run_start" and "run_id" not in box:
                box["run_id"] = str(data.get("run_id"))
                started.set()

        future: Future[Any] = self.pool.submit(work, events)
        def done(f: Future[Any]) -> None:
            started.set()
            self._log_failure(f)

        future.add_done_callback(done)
        started.wait(wait_s)
        if "run_id" in box:
            return box["run_id"]
        if future.done():
            future.result()  # raises the library's error (mapped to 400/404/409)
        return None

    @staticmethod
    def _log_failure(f: Future[Any]) -> None:
        exc = f.exception()
        if exc is not None and not isinstance(exc, InputError | WorkFailed):
            log.error("background work failed: %s", exc, exc_info=exc)

    def new_batch(self, config: str, total: int) -> Batch:
        b = Batch(uuid.uuid4().hex[:10], config, total)
        with self._lock:
            self.batches[b.id] = b
        return b

    def thumb_lock(self, sha: str) -> threading.Lock:
        with self._lock:
            return self._thumb_locks.setdefault(sha, threading.Lock())

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _error_response(request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"error": message, "status": status}, status_code=status)
    return PlainTextResponse(f"{status}: {message}", status_code=status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error_response(request, exc.status_code, str(exc.detail))


async def _input_error(request: Request, exc: Exception) -> Response:
    text = str(exc)
    status = 404 if isinstance(exc, RunNotFound) or "no run " in text else 400
    return _error_response(request, status, text)


async def _work_failed(request: Request, exc: Exception) -> Response:
    return _error_response(request, 409, str(exc))


def make_token() -> str:
    return secrets.token_urlsafe(24)


def create_app(workspace: str | Path | Workspace | None = None, *, registry_url: str | None = None,
               token: str | None = None, user: str | None = None, require_read_auth: bool = False) -> Starlette:
    """The studio app on ``workspace``; ``app.state.studio`` holds its state (and ``app.state.token``)."""
    from contextlib import asynccontextmanager

    from image_gen import api
    from image_gen.web import routes

    ws = api.open_workspace(workspace, registry_url)
    ws.existing_registry()
    studio = Studio(ws, token or make_token(), user=user, require_read_auth=require_read_auth)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["simulated_label"] = "SIMULATED"

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> Any:
        yield
        studio.close()

    app = Starlette(
        routes=[*routes.ROUTES, Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static")],
        exception_handlers={HTTPException: _http_error, InputError: _input_error, WorkFailed: _work_failed},
        lifespan=lifespan,
        max_body_size=MAX_BODY_BYTES,
    )
    app.state.studio = studio
    app.state.token = studio.token
    app.state.templates = templates
    return app


__all__ = ["Batch", "Studio", "create_app", "make_token"]
