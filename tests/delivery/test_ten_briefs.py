"""The ten demo briefs (examples/prompts.txt) through the simulator's staged pipeline with ``deliver`` set to four
channel presets: every rendition is made when its run completes, keeps its label legible (QA passes on every file),
stays within its byte budget and carries its provenance.

To keep the test fast the pipeline's final is 384 px (the demo's is 2048) and the four channels are the presets
scaled to that final (same names, aspect ratios, formats and bytes per pixel, sized to their crop window of the
384 px final: ``[channels.NAME]`` replaces a preset), as the full-size presets are near 1:1 crops of a 2048 final.
``tools/delivery_demo.py`` runs the full-size demo.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from image_gen import api
from image_gen.channels import ChannelSettings
from image_gen.delivery.provenance import TRAINED_ALGORITHMIC_MEDIA, digital_source_type, read_xmp
from image_gen.store.models import Rendition
from tests.delivery.conftest import FOUR, pipeline_config, scaled_presets


@pytest.fixture(scope="module")
def delivered(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> dict[str, Any]:
    ws = tmp_path_factory.mktemp("ten")
    briefs = api.read_prompt_file(repo_root / "examples" / "prompts.txt")
    outcomes = api.run_pipeline(pipeline_config(deliver=FOUR, channels=scaled_presets()), briefs, workspace=str(ws))
    from image_gen.workspace import Workspace

    registry = Workspace.resolve(ws).registry()
    with registry.reading() as s:
        rows = list(s.query(Rendition).order_by(Rendition.id))
    return {"ws": ws, "outcomes": outcomes, "rows": rows, "briefs": briefs}


def test_every_run_completes_with_four_renditions(delivered: dict[str, Any]) -> None:
    outcomes, rows = delivered["outcomes"], delivered["rows"]
    assert len(outcomes) == 10 and all(o.status == "completed" for o in outcomes)
    assert not [w for o in outcomes for w in o.warnings if w.startswith(("rendition", "delivery"))]
    by_run: dict[str, list[str]] = {}
    for r in rows:
        by_run.setdefault(r.run_id, []).append(r.channel)
    assert by_run == {o.run_id: FOUR for o in outcomes}


def test_every_rendition_passes_qa_with_its_label(delivered: dict[str, Any]) -> None:
    for r in delivered["rows"]:
        assert r.qa_passed is True, (r.run_id, r.channel, r.qa["reasons"])
        matches = r.qa["details"]["text"]["matches"]
        assert matches and all(m["similarity"] >= r.qa["details"]["text"]["min_similarity"] for m in matches)
        assert r.qa["details"]["size"]["delivered"] == [r.width, r.height]


SMALL = {name: ChannelSettings(**spec) for name, spec in scaled_presets().items()}


def test_every_file_is_within_budget_and_is_what_the_row_says(delivered: dict[str, Any]) -> None:
    ws = delivered["ws"]
    for r in delivered["rows"]:
        preset = SMALL[r.channel]
        path = ws / r.path
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == r.sha256 and len(data) == r.size_bytes
        assert r.max_bytes == preset.max_bytes and r.size_bytes <= preset.max_bytes
        assert r.encodes is not None and r.encodes >= 1
        with Image.open(path) as img:
            assert img.size == (preset.width, preset.height) == (r.width, r.height)
            assert img.format.lower() == preset.format == r.format
            assert digital_source_type(read_xmp(img.info)) == TRAINED_ALGORITHMIC_MEDIA
            assert img.info.get("icc_profile")
        assert r.fit["mode"] in ("crop", "resize") and r.fit["asked"] == "crop"
        assert [m["stage"] for m in r.provenance["models"]] == ["draft", "final"]
        assert r.provenance["simulated"] is True


def test_no_stray_files(delivered: dict[str, Any]) -> None:
    files = sorted(p.name for p in (delivered["ws"] / "deliveries").iterdir())
    assert files == sorted(Path(r.path).name for r in delivered["rows"])


def test_the_export_bundle_of_the_ten_runs_matches_their_renditions(delivered: dict[str, Any],
                                                                     tmp_path: Path) -> None:
    """``image-gen export`` of the ten delivered runs: the bundle's manifest describes exactly the files in the zip
    (checked byte for byte), and they are the forty renditions the registry recorded, each with its passing QA."""
    from tests.export.test_bundle import check_bundle

    runs = [o.run_id for o in delivered["outcomes"]]
    bundle = api.export_bundle(runs, tmp_path / "bundle.zip", workspace=str(delivered["ws"]))
    manifest, zf = check_bundle(bundle.path)
    rows = {(r.run_id, r.channel): r for r in delivered["rows"]}
    assert len(manifest["files"]) == len(rows) == 40
    for f in manifest["files"]:
        rendition = rows[(f["run_id"], f["channel"])]
        assert f["sha256"] == rendition.sha256 and f["bytes"] == rendition.size_bytes
        assert (f["width"], f["height"]) == (rendition.width, rendition.height)
        assert f["rendition_qa"] == "pass"
    zf.close()
