"""The studio under test: a simulated workspace with runs waiting at the approval gate, served by uvicorn on a
free loopback port, and Debian's Chromium driven by Playwright (``executable_path=shutil.which("chromium")``)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TOKEN = "studio-test-token-0123456789"
CONFIG = """\
name = "staged-small"
[pipeline]
model = "staged-selection"
stages = ["draft:ideogram-v1-turbo", "layout:ideogram-v2a", "final:sd3.5-medium", "hires:imagen4"]
on_retired = "successor"
width = 256
height = 256
[stage.draft]
steps = 20
seed = 42
[stage.draft.qa]
check_text = false
[stage.layout]
strength = 0.6
max_rerolls = 1
[stage.final]
strength = 0.35
[stage.final.qa]
check_text = false
[stage.hires]
gate = "approval"
strength = 0.3
[stage.hires.qa]
check_text = false
[sim]
latency_scale = 0
"""
BRIEFS = ['Amber glass serum bottle, soft window light, label "GLOW SERUM"',
          'Craft beer can on ice, bold label "HOP STORM"']
SCREENSHOTS = Path(os.environ.get("IMAGE_GEN_SCREENSHOTS") or
                   Path(__file__).resolve().parents[2] / "build" / "studio-screenshots")


@dataclass
class Served:
    url: str
    root: Path
    config: Path
    run_ids: list[str]
    app: Any

    @property
    def registry(self) -> Any:
        return self.app.state.studio.registry


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_in_thread(app: Any) -> tuple[str, Any, threading.Thread]:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the studio did not start")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


@pytest.fixture(scope="session")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from image_gen import api
    from image_gen.web.app import create_app

    for var in ("IMAGE_GEN_SIMULATE", "IMAGE_GEN_REGISTRY_URL", "IMAGE_GEN_SERVE_TOKEN"):
        os.environ.pop(var, None)
    root = tmp_path_factory.mktemp("studio")
    config = root / "staged-small.toml"
    config.write_text(CONFIG, encoding="utf-8")
    outcomes = api.run_pipeline(config, BRIEFS, workspace=root, simulate=True)
    assert isinstance(outcomes, list)
    assert [o.status for o in outcomes] == ["awaiting_approval"] * len(BRIEFS), [o.reason for o in outcomes]
    app = create_app(root, token=TOKEN, user="ci-bot")
    url, server, thread = serve_in_thread(app)
    try:
        yield Served(url, root, config, [o.run_id for o in outcomes], app)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("Debian's chromium is not installed (make test installs it: apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Any, studio: Served) -> Iterator[Any]:
    """A signed-in browser page (the sign-in form with the token and a name)."""
    context = chromium.new_context(viewport={"width": 1440, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.goto(f"{studio.url}/login")
    pg.fill("input[name=name]", "Dana Designer")
    pg.fill("input[name=token]", TOKEN)
    pg.click("button[type=submit]")
    pg.wait_for_url(f"{studio.url}/")
    try:
        yield pg
    finally:
        context.close()


def screenshot(pg: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    pg.screenshot(path=str(path), full_page=True)
    return path
