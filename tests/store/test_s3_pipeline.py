"""A staged simulator run whose ``artifacts_url`` is an S3 bucket on a real S3-compatible server (moto on
loopback): every artifact lands in the bucket under its sha256 and nothing in the workspace folder; the registry
records where; ``--out-dir``, ``runs show``, ``report --reuse`` and the studio all read the images back by hash; no
credential from the URL is recorded anywhere."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.core.helpers import invoke, write
from tests.store.conftest import ACCESS_KEY, SECRET_KEY, S3Server, s3fs_client

STAGED = """\
name = "staged-s3"
artifacts_url = "{url}"
[pipeline]
model = "staged-selection"
stages = ["draft:ideogram-v1-turbo", "layout:ideogram-v2a", "final:sd3.5-medium"]
width = 256
height = 256
[stage.draft]
seed = 7
[stage.draft.qa]
check_text = false
[stage.layout]
strength = 0.6
[stage.layout.qa]
check_text = false
[stage.final]
strength = 0.35
[stage.final.qa]
check_text = false
[sim]
latency_scale = 0
"""
BASELINE = """\
name = "baseline-small"
[pipeline]
model = "sd3.5-medium"
width = 256
height = 256
[pipeline.qa]
check_text = false
[sim]
latency_scale = 0
"""
BRIEF = 'Amber glass serum bottle, label "GLOW SERUM"'


@dataclass
class S3Run:
    root: Path
    ws: Path
    bucket: str
    prefix: str
    config: Path
    data: dict[str, Any]
    out_dir: Path


@pytest.fixture(scope="module")
def s3_run(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Run]:
    root = tmp_path_factory.mktemp("s3run")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in s3_server.env(root).items():
            mp.setenv(key, value)
        for var in ("IMAGE_GEN_REGISTRY_URL", "IMAGE_GEN_ARTIFACTS_URL", "IMAGE_GEN_SIMULATE"):
            mp.delenv(var, raising=False)
        # the URL carries the credentials (moto accepts them); the environment's are removed for this run
        mp.delenv("AWS_ACCESS_KEY_ID")
        mp.delenv("AWS_SECRET_ACCESS_KEY")
        bucket = f"ig-{uuid.uuid4().hex[:12]}"
        s3fs_client(key=ACCESS_KEY, secret=SECRET_KEY).mkdir(bucket)
        url = f"s3://{ACCESS_KEY}:{SECRET_KEY}@{bucket}/team/artifacts"
        cfg = write(root / "staged.toml", STAGED.format(url=url))
        ws = root / "ws"
        out = root / "out"
        res = invoke("run", "--config", str(cfg), "--prompt", BRIEF, "--simulate", "--json", "--workspace", str(ws),
                     "--out-dir", str(out))
        assert res.code == 0, res.stderr
        mp.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)  # later commands: credentials from the environment
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        yield S3Run(root, ws, bucket, "team/artifacts", cfg, res.json(), out)


def _objects(run: S3Run) -> dict[str, bytes]:
    fs = s3fs_client()
    return {Path(k).stem: fs.cat_file(k) for k in fs.find(f"{run.bucket}/{run.prefix}")}


def _artifact_rows(ws: Path) -> dict[str, str]:
    with sqlite3.connect(ws / ".image-gen" / "registry.db") as db:
        return dict(db.execute("select sha256, path from artifacts").fetchall())


def test_artifacts_are_in_the_bucket_under_their_hash(s3_run: S3Run) -> None:
    (run,) = s3_run.data["runs"]
    assert run["status"] == "completed", run
    shas = {s["artifact"] for s in run["stages"]}
    assert len(shas) == 3 and run["final_artifact"] in shas
    objects = _objects(s3_run)
    assert set(objects) >= shas
    for sha, data in objects.items():
        assert hashlib.sha256(data).hexdigest() == sha
    keys = s3fs_client().find(s3_run.bucket)
    assert all(k == f"{s3_run.bucket}/{s3_run.prefix}/{Path(k).stem[:2]}/{Path(k).stem}.png" for k in keys)
    assert not (s3_run.ws / ".image-gen" / "artifacts").exists()  # nothing went to the workspace folder
    rows = _artifact_rows(s3_run.ws)
    assert set(rows) == set(objects)
    for sha, path in rows.items():  # the registry records the object's URL, its password masked
        assert path == f"s3://{ACCESS_KEY}:***@{s3_run.bucket}/{s3_run.prefix}/{sha[:2]}/{sha}.png"


def test_no_credential_is_recorded(s3_run: S3Run) -> None:
    state = s3_run.ws / ".image-gen"
    for f in state.rglob("*"):
        if f.is_file():
            assert SECRET_KEY.encode() not in f.read_bytes(), f
    settings = json.loads((state / "settings.json").read_text())
    assert settings["artifacts_url"] == f"s3://{s3_run.bucket}/{s3_run.prefix}"  # remembered without credentials
    shown = invoke("runs", "show", s3_run.data["runs"][0]["run_id"], "--json", "--workspace", str(s3_run.ws))
    assert shown.code == 0, shown.stderr
    rec = shown.json()
    assert {s["artifact_sha256"] for s in rec["stages"]} <= set(_objects(s3_run))
    assert SECRET_KEY not in shown.stdout


def test_out_dir_copies_come_from_the_bucket(s3_run: S3Run) -> None:
    from PIL import Image

    (run,) = s3_run.data["runs"]
    files = sorted(s3_run.out_dir.glob("*.png"))
    assert len(files) == 3 and all(f.name.endswith("-sim.png") for f in files)
    objects = _objects(s3_run)
    for f, stage in zip(files, run["stages"], strict=True):
        with Image.open(f) as img, Image.open(__import__("io").BytesIO(objects[stage["artifact"]])) as orig:
            assert img.size == orig.size == (256, 256)
            assert img.info.get("parameters") == orig.info.get("parameters")  # the stored render, marked


def test_report_and_studio_read_from_the_bucket(s3_run: S3Run) -> None:
    base = write(s3_run.root / "baseline.toml", BASELINE)
    out = s3_run.root / "report"
    before = set(_objects(s3_run))
    res = invoke("report", "--compare", str(base), str(s3_run.config), "--prompt", BRIEF, "--simulate", "--reuse",
                 "--out", str(out), "--json", "--workspace", str(s3_run.ws))
    assert res.code == 0, res.stderr
    assert (out / "report.html").is_file() and list(out.glob("*.png"))
    # the baseline ran now: its artifacts went to the remembered bucket, not the folder
    assert set(_objects(s3_run)) > before
    assert not (s3_run.ws / ".image-gen" / "artifacts").exists()

    from starlette.testclient import TestClient

    from image_gen.web.app import create_app

    sha = s3_run.data["runs"][0]["final_artifact"]
    app = create_app(s3_run.ws, token="t" * 32)
    with TestClient(app) as client:
        full = client.get(f"/artifacts/{sha}")
        assert full.status_code == 200 and hashlib.sha256(full.content).hexdigest() == sha
        thumb = client.get(f"/artifacts/{sha}/thumb")
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
        assert client.get(f"/artifacts/{'0' * 64}").status_code == 404
