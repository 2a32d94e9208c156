"""``image-gen export ... --out bundle.zip``: the manifest matches the files in the zip, byte for byte."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

from PIL import Image

from image_gen.imaging.marks import has_mark
from image_gen.reporting.export import COLUMNS, csv_cell
from tests.core.helpers import invoke
from tests.export.conftest import PROMPTS, Made


def export(made: Made, out: Path, *ids: str) -> dict[str, Any]:
    res = invoke("export", *ids, "--out", str(out), "--workspace", str(made.ws), "--json")
    assert res.code == 0, res.stderr
    data: dict[str, Any] = res.json()["bundle"]
    return data


def check_bundle(path: Path) -> tuple[dict[str, Any], zipfile.ZipFile]:
    """The zip's manifest, after checking that it describes exactly the files in the zip."""
    zf = zipfile.ZipFile(path)
    assert zf.testzip() is None
    manifest = json.loads(zf.read("manifest.json"))
    listed = [row["file"] for row in manifest["files"]] + [e["file"] for e in manifest["extras"]]
    assert len(listed) == len(set(listed))
    assert sorted(zf.namelist()) == sorted([*listed, "manifest.json"])  # nothing unlisted, nothing missing
    for row in manifest["files"]:
        data = zf.read(row["file"])
        assert row["bytes"] == len(data)
        assert row["sha256"] == hashlib.sha256(data).hexdigest()
        with Image.open(io.BytesIO(data)) as img:
            assert (img.width, img.height) == (row["width"], row["height"])
            assert row["size"] == f"{img.width}x{img.height}"
            assert row["format"] == img.format.lower()  # type: ignore[union-attr]
        assert list(row) == list(COLUMNS)
    for extra in manifest["extras"]:
        data = zf.read(extra["file"])
        assert (extra["bytes"], extra["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    # the CSV says what the JSON says, row for row
    rows = list(csv.reader(io.StringIO(zf.read("manifest.csv").decode("utf-8"))))
    assert rows[0] == list(COLUMNS)
    assert rows[1:] == [[csv_cell(r[c]) for c in COLUMNS] for r in manifest["files"]]
    return manifest, zf


def test_manifest_matches_files(made: Made, tmp_path: Path) -> None:
    out = tmp_path / "bundle.zip"
    summary = export(made, out, *made.runs)
    manifest, zf = check_bundle(out)
    assert summary["files"] == len(manifest["files"]) == 4 and summary["simulated"] is True
    by_run: dict[str, list[dict[str, Any]]] = {}
    for row in manifest["files"]:
        by_run.setdefault(row["run_id"], []).append(row)
    r0, r1, r2 = (by_run[r] for r in made.runs)
    # renditions where the run has them, with their own size and QA; the final image only where it has none
    assert [(r["channel"], r["size"], r["format"], r["rendition_qa"]) for r in r0] == [
        ("banner", "200x100", "png", "fail"), ("social", "128x128", "jpeg", "pass")]
    assert r0[0]["rendition_qa_reasons"] == "over the byte budget"
    assert [(r["channel"], r["size"], r["rendition_qa"]) for r in r1] == [("final", "256x256", None)]
    assert [(r["channel"], r["size"], r["format"]) for r in r2] == [("social", "96x96", "webp")]
    for i, rows in enumerate((r0, r1, r2)):
        for row in rows:
            assert row["brief"] == PROMPTS[i] and row["simulated"] is True
            assert row["models"] == "draft:sim:ideogram-v1-turbo > final:sim:sd3.5-medium"
            assert row["qa_verdict"] in ("pass", "fail") and row["cost_usd"] > 0
    # the rendition files are the delivered bytes; the simulated final image carries its visible mark
    with Image.open(io.BytesIO(zf.read(r1[0]["file"]))) as img:
        assert has_mark(img)
    assert "contact_sheet.png" in zf.namelist()
    with Image.open(io.BytesIO(zf.read("contact_sheet.png"))) as sheet:
        assert sheet.height > 3 * 240  # a row per run
    assert [r["run_id"] for r in manifest["runs"]] == made.runs and manifest["note"]


def test_batch_export_picks_exactly_its_runs(made: Made, tmp_path: Path) -> None:
    out = tmp_path / "batch.zip"
    summary = export(made, out, made.batch[:6])  # a prefix of the batch id
    manifest, _ = check_bundle(out)
    assert summary["batches"] == [made.batch]
    assert [r["run_id"] for r in manifest["runs"]] == made.runs[:2]
    assert {r["run_id"] for r in manifest["files"]} == set(made.runs[:2])
    assert {r["batch_id"] for r in manifest["files"]} == {made.batch}
    assert manifest["batches"] == [{"batch_id": made.batch, "name": "test batch", "status": "completed",
                                    "runs": made.runs[:2]}]
    # a batch and one of its own runs: each run once
    both = tmp_path / "both.zip"
    export(made, both, made.other_batch, made.runs[2], made.batch)
    manifest, _ = check_bundle(both)
    assert [r["run_id"] for r in manifest["runs"]] == [made.runs[2], *made.runs[:2]]


def test_bad_id_writes_nothing(made: Made, tmp_path: Path) -> None:
    out = tmp_path / "bundle.zip"
    res = invoke("export", made.runs[0], "nosuchid", "--out", str(out), "--workspace", str(made.ws))
    assert res.code == 2 and "nosuchid" in res.stderr
    assert list(tmp_path.iterdir()) == []  # no zip, no temporary file
    out.write_bytes(b"an earlier bundle")
    res = invoke("export", "zz", "--out", str(out), "--workspace", str(made.ws), "--json")
    assert res.code == 2 and json.loads(res.stderr)["error"]["field"] == "ID"
    assert out.read_bytes() == b"an earlier bundle" and list(tmp_path.iterdir()) == [out]
    out.unlink()
    assert invoke("export", made.runs[0], "--workspace", str(made.ws)).code == 2  # neither --out nor --mlflow
    empty = tmp_path / "empty"
    empty.mkdir()
    res = invoke("export", made.runs[0], "--out", str(empty / "b.zip"), "--workspace", str(empty))
    assert res.code == 2 and list(empty.iterdir()) == []  # no registry there: nothing created


def test_changed_rendition_fails_and_writes_nothing(made: Made, tmp_path: Path) -> None:
    """A rendition file that no longer matches its recorded sha256 stops the export (a bundle never carries
    bytes the registry does not vouch for)."""
    from image_gen.reporting.export import renditions
    from image_gen.workspace import Workspace

    ws = Workspace.resolve(made.ws)
    try:
        rend = renditions(ws.registry(), made.runs[2])[0]
    finally:
        ws.close()
    path = Path(rend.path)
    if not path.is_absolute():  # the store records its own files relative to the workspace
        path = made.ws / path
    original = path.read_bytes()
    out = tmp_path / "out" / "bundle.zip"
    try:
        path.write_bytes(original[:-10] + b"tampered!!")
        res = invoke("export", made.runs[2], "--out", str(out), "--workspace", str(made.ws))
    finally:
        path.write_bytes(original)
    assert res.code == 1 and "sha256" in res.stderr
    assert list(tmp_path.iterdir()) == []  # not even the folder made for it
