"""Exported simulator images carry a visible SIMULATED mark; the stored artifacts that QA reads do not."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from image_gen import api
from image_gen.imaging.marks import has_mark, mark_simulated
from image_gen.store.artifacts import JSON_CHUNK, PARAMS_CHUNK
from tests.core.helpers import invoke

PROMPT = 'Olive oil tin with vintage styling, label text "GOLDEN GROVE"'


def test_mark_simulated_draws_a_corner_badge() -> None:
    plain = Image.new("RGB", (320, 200), (40, 120, 200))
    assert not has_mark(plain)
    marked = mark_simulated(plain)
    assert has_mark(marked) and marked.size == plain.size
    # only the corner changes
    a, b = plain.load(), marked.load()
    assert a is not None and b is not None
    assert all(a[x, y] == b[x, y] for x in range(0, 160, 7) for y in range(0, 100, 7))


def test_save_marks_the_export_not_the_artifact(ws_path: Path, tmp_path: Path) -> None:
    result = api.generate(model="ideogram-v2a", prompt=PROMPT, width=384, height=384, simulate=True,
                          workspace=ws_path)
    stored = result.path
    assert stored is not None
    with Image.open(stored) as art:
        art_info = dict(art.info)
        assert not has_mark(art)
    out = result.save(tmp_path / "final.png")
    with Image.open(out) as exp:
        assert has_mark(exp)
        assert exp.info[PARAMS_CHUNK] == art_info[PARAMS_CHUNK]
        assert "Simulated: true" in exp.info[PARAMS_CHUNK]
        record = json.loads(exp.info[JSON_CHUNK])
        assert record["simulated"] is True and record["visible_mark"] == "SIMULATED"
    jpg = result.save(tmp_path / "final.jpg")
    with Image.open(jpg) as exp:
        assert has_mark(exp)


def test_cli_export_marks_every_simulated_file(ws_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = invoke("--workspace", str(ws_path), "--model", "ideogram-v2a", "--prompt", PROMPT, "--batch", "2",
               "--out-dir", str(out), "--width", "384", "--height", "384", "--simulate", "--json")
    assert r.code == 0, r.stderr
    exported = sorted(out.glob("*.png"))
    assert len(exported) == 2
    store = ws_path / ".image-gen"
    artifacts = list(store.rglob("*.png"))
    assert artifacts
    for png in exported:
        with Image.open(png) as img:
            assert has_mark(img) and PARAMS_CHUNK in img.info and JSON_CHUNK in img.info
    for art in artifacts:
        with Image.open(art) as img:
            assert not has_mark(img)
