"""Choosing the artifact store: ``artifacts_url`` in a config, ``IMAGE_GEN_ARTIFACTS_URL``, ``--artifacts-url``
(before or after the command), the workspace's settings file; a bad value is bad input (exit 2) naming where it
came from, and writes nothing. ``memory://`` serves the Python API."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import fsspec
import pytest

from image_gen import api
from tests.core.helpers import invoke, write

CONFIG = """\
{extra}
[pipeline]
model = "sd3.5-medium"
width = 256
height = 256
[pipeline.qa]
check_text = false
[sim]
latency_scale = 0
"""
BRIEF = 'Craft beer can, label "HOP STORM"'


def _nothing_written(ws: Path) -> None:
    assert not (ws / ".image-gen").exists(), sorted(p.name for p in (ws / ".image-gen").rglob("*"))


@pytest.mark.parametrize("url", ["s3://", "/srv/not-a-url", "nosuchproto://x/y"])
def test_bad_artifacts_url_in_a_config_is_exit_2_naming_the_field(tmp_path: Path, ws_path: Path, url: str) -> None:
    cfg = write(tmp_path / "bad.toml", CONFIG.format(extra=f'artifacts_url = "{url}"'))
    res = invoke("run", "--config", str(cfg), "--prompt", BRIEF, "--simulate", "--json", "--workspace", str(ws_path))
    assert res.code == 2
    err = json.loads(res.stderr)["error"]
    assert err["field"] == "artifacts_url" and err["file"] == str(cfg) and "expected" in err["message"]
    _nothing_written(ws_path)


def test_bad_artifacts_url_flag_or_env_is_exit_2_naming_it(tmp_path: Path, ws_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(tmp_path / "ok.toml", CONFIG.format(extra=""))
    for args in (["--artifacts-url", "file://relative/x", "run"], ["run", "--artifacts-url", "file://relative/x"]):
        res = invoke(*args, "--config", str(cfg), "--prompt", BRIEF, "--simulate", "--json",
                     "--workspace", str(ws_path))
        assert res.code == 2, res.stderr
        err = json.loads(res.stderr)["error"]
        assert err["field"] == "--artifacts-url" and "file:///absolute/path" in err["message"]
    monkeypatch.setenv("IMAGE_GEN_ARTIFACTS_URL", "s3://KEY:hunter2@")
    res = invoke("run", "--config", str(cfg), "--prompt", BRIEF, "--simulate", "--workspace", str(ws_path))
    assert res.code == 2 and "IMAGE_GEN_ARTIFACTS_URL: expected s3://bucket/prefix" in res.stderr
    assert "hunter2" not in res.stderr and "KEY:***@" in res.stderr
    _nothing_written(ws_path)


def test_flag_wins_and_a_file_url_store_is_used_then_remembered(tmp_path: Path, ws_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere, flagged = tmp_path / "shared-artifacts", tmp_path / "flagged"
    cfg = write(tmp_path / "file.toml", CONFIG.format(extra=f'artifacts_url = "{elsewhere.as_uri()}"'))
    res = invoke("run", "--config", str(cfg), "--prompt", BRIEF, "--simulate", "--json", "--workspace", str(ws_path))
    assert res.code == 0, res.stderr
    sha = res.json()["runs"][0]["final_artifact"]
    assert (elsewhere / sha[:2] / f"{sha}.png").is_file()
    assert not (ws_path / ".image-gen" / "artifacts").exists()
    settings = json.loads((ws_path / ".image-gen" / "settings.json").read_text())
    assert settings == {"artifacts_url": elsewhere.as_uri()}

    # the flag (before the command) wins over the remembered store
    plain = write(tmp_path / "plain.toml", CONFIG.format(extra=""))
    res = invoke("--artifacts-url", flagged.as_uri(), "run", "--config", str(plain), "--prompt", BRIEF, "--simulate",
                 "--json", "--workspace", str(ws_path))
    assert res.code == 0, res.stderr
    assert res.json()["runs"][0]["final_artifact"] == sha  # the same render...
    assert res.json()["provider_calls"] == 1  # ...made again: the cache's artifact is not in this store
    assert (flagged / sha[:2] / f"{sha}.png").is_file()

    # without a flag, the remembered store: a cache hit, and --out-dir copies from it
    out = tmp_path / "out"
    res = invoke("run", "--config", str(plain), "--prompt", BRIEF, "--simulate", "--json", "--workspace",
                 str(ws_path), "--out-dir", str(out))
    assert res.code == 0 and res.json()["provider_calls"] == 0, res.stderr
    (copy,) = out.glob("*.png")
    assert copy.stat().st_size > 0
    assert not (ws_path / ".image-gen" / "artifacts").exists()


def test_memory_store_serves_the_api(ws_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"memory://ig-{uuid.uuid4().hex[:8]}"
    ws = api.open_workspace(ws_path, artifacts_url=url)
    result = api.generate("sd3.5-medium", BRIEF, width=256, height=256, simulate=True, workspace=ws,
                          qa={"check_text": False})
    sha = result.record.final_artifact
    assert sha is not None
    mem = fsspec.filesystem("memory")
    key = f"{url.removeprefix('memory://')}/{sha[:2]}/{sha}.png"
    assert mem.exists(key) and not (ws_path / ".image-gen" / "artifacts").exists()
    assert result.image.size == (256, 256)
    saved = result.save(tmp_path / "final.png")
    assert saved.is_file() and result.path is not None and result.path.read_bytes() == mem.cat_file(key)

    monkeypatch.setenv("IMAGE_GEN_ARTIFACTS_URL", url)  # the environment chooses it too
    outcome = api.run_pipeline({"pipeline": {"model": "sd3.5-medium", "width": 256, "height": 256,
                                             "qa": {"check_text": False}}, "sim": {"latency_scale": 0}},
                               BRIEF, simulate=True, workspace=tmp_path / "ws2")
    assert not isinstance(outcome, list) and outcome.final_artifact
    assert mem.exists(f"{url.removeprefix('memory://')}/{outcome.final_artifact[:2]}/{outcome.final_artifact}.png")
