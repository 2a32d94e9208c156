"""``image-gen finish`` and ``image-gen upscale`` on the simulator: outputs, records and bad input (exit 2)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFont

from image_gen.imaging.tiling import plan_tiles
from tests.core.helpers import invoke

LABEL = "AQUA PURE"


@pytest.fixture
def seed_image(tmp_path: Path) -> Path:
    img = Image.new("RGB", (240, 160), (90, 120, 150))
    d = ImageDraw.Draw(img)
    d.rectangle((30, 40, 210, 120), fill=(240, 236, 228))
    font = ImageFont.load_default(size=24)
    tw = d.textlength(LABEL, font=font)
    d.text((120 - tw / 2, 66), LABEL, font=font, fill=(20, 30, 90))
    path = tmp_path / "seed.png"
    img.save(path)
    return path


def _adapter_records(home: Path) -> list[dict[str, Any]]:
    con = sqlite3.connect(home / ".image-gen" / "registry.db")
    try:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
        found: list[dict[str, Any]] = []
        for table in tables:
            cols = [r[1] for r in con.execute(f"pragma table_info({table})")]
            if "adapters" in cols:
                for (raw,) in con.execute(f"select adapters from {table} where adapters is not null"):
                    value = json.loads(raw) if isinstance(raw, str) else raw
                    found += value or []
        return found
    finally:
        con.close()


def test_finish_runs_a_finishing_config_on_an_image(tmp_path: Path, seed_image: Path) -> None:
    cfg = tmp_path / "final.toml"
    cfg.write_text('model = "sd3.5-medium"\nsteps = 20\nupscale = "2x"\nadapters = ["color-match", '
                   '"typography-preserve"]\n', encoding="utf-8")
    out = tmp_path / "out" / "final.png"
    res = invoke("finish", str(seed_image), "--config", str(cfg), "--simulate", "--prompt",
                 f'A bottle, label "{LABEL}"', "--out", str(out), "--json")
    assert res.code == 0, res.stderr
    data = res.json()
    assert data["run"]["simulated"] is True and data["run"]["status"] == "completed"
    assert Path(data["out"]) == out
    assert Image.open(out).size == (480, 320)
    records = _adapter_records(Path(str(tmp_path / "home")))
    names = [r["adapter"] for r in records]
    assert "color-match" in names and "typography-preserve" in names
    typo = next(r for r in records if r["adapter"] == "typography-preserve")
    assert "restored" in typo and "regions" in typo


def test_upscale_blends_one_call_per_tile(tmp_path: Path, seed_image: Path) -> None:
    out = tmp_path / "up.png"
    res = invoke("upscale", str(seed_image), "--factor", "2", "--model", "sd3.5-medium", "--tile-size", "128",
                 "--overlap", "16", "--simulate", "--out", str(out), "--json")
    assert res.code == 0, res.stderr
    stage = res.json()["run"]["stages"][0]
    assert stage["status"] == "done"
    assert stage["calls"] == len(plan_tiles(480, 320, 128, 16))
    assert Image.open(out).size == (480, 320)


@pytest.mark.parametrize(("args", "names"), [
    (["upscale", "{missing}", "--simulate"], ["missing.png", "IMAGE", "not found"]),
    (["upscale", "{garbage}", "--simulate"], ["garbage.png", "IMAGE", "not a readable image"]),
    (["upscale", "{seed}", "--tile-size", "128", "--overlap", "64", "--simulate"], ["--overlap"]),
    (["upscale", "{seed}", "--factor", "3", "--simulate"], ["--factor"]),
    (["upscale", "{seed}", "--out", "{tmp}/up.txt", "--simulate"], ["up.txt", "--out"]),
    (["finish", "{seed}", "--config", "{tmp}/absent.toml"], ["absent.toml", "not found"]),
    (["finish", "{seed}", "--config", "{badcfg}"], ["bad.toml", "steps"]),
    (["finish", "{missing}", "--config", "{badcfg}"], ["missing.png", "IMAGE"]),
])
def test_bad_input_exits_2_naming_file_and_field(tmp_path: Path, seed_image: Path, args: list[str],
                                                 names: list[str]) -> None:
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image")
    badcfg = tmp_path / "bad.toml"
    badcfg.write_text('model = "sd3.5-medium"\nsteps = "many"\n', encoding="utf-8")
    subs = {"{missing}": str(tmp_path / "missing.png"), "{garbage}": str(garbage), "{seed}": str(seed_image),
            "{tmp}": str(tmp_path), "{badcfg}": str(badcfg)}
    argv = []
    for a in args:
        for k, v in subs.items():
            a = a.replace(k, v)
        argv.append(a)
    res = invoke(*argv)
    assert res.code == 2, (res.stdout, res.stderr)
    for name in names:
        assert name in res.stderr + res.stdout
