"""``image-gen providers [--json]``: says which providers are configured, never shows a key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SECRET = "ideo-secret-value-31337"


def test_providers_json(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from image_gen.cli import cli

    monkeypatch.setenv("IDEOGRAM_API_KEY", SECRET)
    monkeypatch.delenv("STABILITY_API_KEY", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", "goog-secret-value-4242")
    monkeypatch.setenv("IDEOGRAM_BASE_URL", f"http://user:{SECRET}@127.0.0.1:8123/api?key={SECRET}")
    out = CliRunner().invoke(cli, ["providers", "--json"])
    assert out.exit_code == 0, out.output
    rows = {r["name"]: r for r in json.loads(out.output)["providers"]}
    assert rows["ideogram"]["configured"] and rows["ideogram"]["key_from"] == "IDEOGRAM_API_KEY"
    assert rows["ideogram"]["base_url"] == "http://127.0.0.1:8123/api"
    assert rows["google"]["configured"] and rows["google"]["key_from"] == "GOOGLE_API_KEY"
    assert not rows["stability"]["configured"] and rows["stability"]["key_from"] is None
    assert SECRET not in out.output and "goog-secret-value-4242" not in out.output


def test_providers_table_through_the_installed_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STABILITY_API_KEY", SECRET)
    exe = Path(sys.executable).with_name("image-gen")
    proc = subprocess.run(
        [str(exe), "providers"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "stability" in proc.stdout and "STABILITY_API_KEY" in proc.stdout
    assert SECRET not in proc.stdout + proc.stderr
