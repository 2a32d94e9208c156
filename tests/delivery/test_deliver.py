"""Delivering a run: the CLI (exit codes, JSON), QA and budget failures, files and rows written together,
outpainting through the run's calls and budget, delivery after approval, C2PA end to end, config errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from image_gen import api
from image_gen.config import load_config
from image_gen.delivery.deliver import Deliverer
from image_gen.errors import ConfigError, InputError
from image_gen.pipeline.runner import Runner
from image_gen.store.models import Call, Rendition, Run
from image_gen.workspace import Workspace
from tests.core.helpers import invoke
from tests.delivery.conftest import pipeline_config, scaled_presets

BRIEF = 'Craft beer can on ice, bold label "HOP STORM IPA"'
CHANNELS: dict[str, Any] = {
    **scaled_presets(["square"]),
    "stamp": {"width": 40, "height": 40, "format": "png"},  # too small for the label to be read: QA fails
    "starved": {"width": 200, "height": 200, "format": "jpeg", "max_bytes": 400, "min_quality": 50},
    "tall": {"width": 180, "height": 360, "format": "webp", "fit": "outpaint", "max_bytes": 60_000},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    ws = tmp_path_factory.mktemp("deliver")
    outcome = api.run_pipeline(pipeline_config(channels=CHANNELS), BRIEF, workspace=str(ws))
    assert outcome.status == "completed"
    return {"ws": ws, "run_id": outcome.run_id, "workspace": Workspace.resolve(ws)}


def _rows(ws: Workspace, run_id: str, channel: str | None = None) -> list[Rendition]:
    with ws.registry().reading() as s:
        q = select(Rendition).where(Rendition.run_id == run_id)
        if channel:
            q = q.where(Rendition.channel == channel)
        return list(s.scalars(q.order_by(Rendition.id)))


def _calls(ws: Workspace, run_id: str, purpose: str) -> list[Call]:
    return [c for c in ws.registry().calls(run_id) if c.purpose == purpose]


def test_unknown_channel_is_bad_input_naming_it(run: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = invoke("deliver", run["run_id"], "--channel", "square", "--channel", "web-heroo", "--out-dir", str(out),
                 "--workspace", str(run["ws"]), "--json")
    assert res.code == 2
    err = json.loads(res.stderr)["error"]
    assert err["field"] == "--channel" and "'web-heroo'" in err["message"] and "web-hero" in err["message"]
    assert not out.exists() or not any(out.iterdir())


def test_cli_json_and_exit_1_when_a_rendition_fails_qa(run: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = invoke("deliver", run["run_id"], "--channel", "square", "--channel", "stamp", "--out-dir", str(out),
                 "--workspace", str(run["ws"]), "--json")
    assert res.code == 1, res.stderr
    data = res.json()
    by = {r["channel"]: r for r in data["renditions"]}
    assert data["ok"] is False and by["square"]["qa_passed"] is True and by["stamp"]["qa_passed"] is False
    assert any("HOP STORM IPA" in reason for reason in by["stamp"]["qa"]["reasons"])
    # a rendition that fails QA is still a file with its row, marked failed
    rows = {r.channel: r for r in _rows(run["workspace"], run["run_id"]) if Path(r.path).parent == out.resolve()}
    assert rows["stamp"].qa_passed is False and Path(rows["stamp"].path).is_file()
    plain = invoke("deliver", run["run_id"], "--channel", "square", "--out-dir", str(out),
                   "--workspace", str(run["ws"]), "--sheet", str(tmp_path / "sheet.png"))
    assert plain.code == 0 and "pass square" in plain.stdout
    from PIL import Image

    with Image.open(tmp_path / "sheet.png") as sheet:
        assert sheet.width > 200 and sheet.height > 200


def test_unmeetable_budget_fails_clearly_with_no_file_and_no_row(run: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = invoke("deliver", run["run_id"], "--channel", "starved", "--out-dir", str(out),
                 "--workspace", str(run["ws"]), "--json")
    assert res.code == 1
    (r,) = res.json()["renditions"]
    assert "byte budget" in r["error"] and "over the budget of 400 bytes" in r["error"] and r["path"] is None
    assert list(out.iterdir()) == [] and _rows(run["workspace"], run["run_id"], "starved") == []


@pytest.mark.parametrize("where", ["row", "rename"])
def test_a_failed_write_leaves_neither_file_nor_row(run: dict[str, Any], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    import image_gen.delivery.deliver as deliver_mod
    import image_gen.store.models as models

    def boom(*_a: Any, **_k: Any) -> None:
        raise OSError("disk gone")

    if where == "row":
        monkeypatch.setattr(models, "Rendition", boom)
    else:
        monkeypatch.setattr(deliver_mod.os, "replace", boom)
    out = tmp_path / "out"
    before = len(_rows(run["workspace"], run["run_id"]))
    result = Deliverer(run["workspace"]).deliver(run["run_id"], ["square"], out)
    assert "disk gone" in (result.renditions[0].error or "") and result.renditions[0].path is None
    assert list(out.iterdir()) == []  # neither the file nor its temporary
    assert len(_rows(run["workspace"], run["run_id"])) == before


def test_outpaint_goes_through_the_runs_calls_and_is_not_billed_twice(run: dict[str, Any], tmp_path: Path) -> None:
    ws, run_id = run["workspace"], run["run_id"]
    first = api.deliver(run_id, ["tall"], tmp_path / "out", workspace=ws)
    (r,) = first.renditions
    assert r.error is None and r.size_bytes <= r.max_bytes
    assert r.fit["mode"] == "outpaint" and r.fit["asked"] == "outpaint" and r.fit["outpaint"]["stage"] == "final"
    (call,) = _calls(ws, run_id, "outpaint")
    final = [s for s in ws.registry().stage_runs(run_id) if s.name == "final"][0]
    assert call.state == "ok" and call.stage_run_id == final.id and call.model_id == final.model_id
    assert call.operation == "img2img" and call.request["mask"] is not None
    assert r.provenance["models"][-1] == {"stage": "delivery", "model": call.model_id, "operation": "outpaint"}
    run_row = ws.registry().get_run(run_id)
    assert run_row.cost_usd == pytest.approx(sum(c.cost_usd for c in ws.registry().calls(run_id)))
    again = api.deliver(run_id, ["tall"], tmp_path / "out", workspace=ws)
    assert again.renditions[0].error is None
    assert len(_calls(ws, run_id, "outpaint")) == 1  # the same outpaint is reused, not sent (or billed) again
    rows = [x for x in _rows(ws, run_id, "tall") if Path(x.path).parent == (tmp_path / "out").resolve()]
    assert len(rows) == 1 and rows[0].id == again.renditions[0].rendition_id  # re-delivery replaced the row


def test_outpaint_refused_by_the_budget_is_letterboxed(run: dict[str, Any], tmp_path: Path) -> None:
    ws, run_id = run["workspace"], run["run_id"]
    spent = ws.registry().get_run(run_id).cost_usd
    capped = load_config({**pipeline_config(channels={"wide": {"width": 400, "height": 100, "format": "jpeg",
                                                               "fit": "outpaint"}}),
                          "budget": {"per_run_usd": spent}})
    runner = Runner(ws, capped, simulate=True)
    before = len(_calls(ws, run_id, "outpaint"))
    (r,) = Deliverer(ws, runner=runner, qa=False).deliver(run_id, ["wide"], tmp_path).renditions
    assert r.error is None and r.fit["mode"] == "letterbox" and "budget" in r.fit["outpaint_skipped"]
    assert len(_calls(ws, run_id, "outpaint")) == before


def test_signed_renditions_list_each_model(run: dict[str, Any], tmp_path: Path) -> None:
    c2pa = pytest.importorskip("c2pa")
    from image_gen.delivery.provenance import active_manifest, models_in_manifest, read_c2pa
    from tests.delivery.certs import make_chain

    chain = make_chain(tmp_path)
    cfg = load_config({**pipeline_config(channels=CHANNELS),
                       "provenance": {"c2pa_cert": str(chain.cert), "c2pa_key": str(chain.key)}})
    ws, run_id = run["workspace"], run["run_id"]
    (r,) = Deliverer(ws, config=cfg).deliver(run_id, ["square"], tmp_path / "signed").renditions
    assert r.error is None and r.provenance["c2pa"] is True and r.size_bytes <= r.max_bytes
    store = read_c2pa(Path(r.path).read_bytes(), "image/jpeg")
    stages = [s for s in ws.registry().stage_runs(run_id) if s.status == "done"]
    assert models_in_manifest(active_manifest(store)) == [s.model_id for s in stages]
    assert store["validation_state"] == "Valid" and c2pa is not None


def test_pipeline_delivers_after_approval(tmp_path: Path) -> None:
    cfg = pipeline_config(gate=True, deliver=["square"], channels=scaled_presets(["square"]))
    waiting = api.run_pipeline(cfg, BRIEF, workspace=str(tmp_path))
    ws = Workspace.resolve(tmp_path)
    assert waiting.status == "awaiting_approval" and _rows(ws, waiting.run_id) == []
    with pytest.raises(InputError, match="awaiting_approval: only a completed run"):
        api.deliver(waiting.run_id, ["square"], workspace=ws)
    done = api.approve(waiting.run_id, workspace=ws)
    assert done.status == "completed" and not done.warnings
    (row,) = _rows(ws, waiting.run_id)
    assert row.channel == "square" and row.qa_passed is True and (tmp_path / row.path).is_file()
    assert Path(row.path).parts[0] == "deliveries"
    with ws.registry().reading() as s:
        assert s.get(Run, waiting.run_id).status == "completed"


@pytest.mark.parametrize(("data", "field", "words"), [
    ({"pipeline": {"model": "sim:sd3.5-medium", "deliver": ["squar"]}}, "pipeline.deliver[0]", "'squar'"),
    ({"channels": {"hero": {"width": 1920, "height": 1080, "format": "gif"}}}, "channels.hero.format", "'avif'"),
    ({"channels": {"hero": {"width": 1920, "height": "1080"}}}, "channels.hero.height", "integer"),
    ({"channels": {"hero": {"width": 10, "height": 10, "fit": "stretch"}}}, "channels.hero.fit", "'crop'"),
    ({"channels": {"hero": {"width": 10, "height": 10, "max_bytes": 0}}}, "channels.hero.max_bytes", "greater"),
    ({"provenance": {"c2pa_key": "k.pem"}}, "provenance.c2pa_cert", "together"),
])
def test_config_errors_name_the_field(data: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(data)
    assert exc.value.field == field and words in str(exc.value)


def test_user_channel_replaces_a_preset_and_jpg_reads_as_jpeg() -> None:
    cfg = load_config({"pipeline": {"model": "sim:sd3.5-medium", "deliver": ["square", "banner"]},
                       "channels": {"square": {"width": 800, "height": 800, "format": "JPG"},
                                    "banner": {"width": 600, "height": 200, "format": "webp", "dpi": 150}}})
    assert cfg.channels["square"].width == 800 and cfg.channels["square"].format == "jpeg"
    assert [s.model for _, s in cfg.stage_specs()] == ["sim:sd3.5-medium"]  # deliver is no stage setting


def test_no_workspace_or_no_run_is_bad_input_and_creates_nothing(run: dict[str, Any], tmp_path: Path) -> None:
    r = invoke("deliver", "abcd", "--channel", "square", "--workspace", str(tmp_path / "missing"),
               "--out-dir", str(tmp_path / "out"))
    assert r.code == 2 and not (tmp_path / "missing").exists() and not (tmp_path / "out").exists()
    r = invoke("deliver", "nope", "--channel", "square", "--workspace", str(run["ws"]), "--out-dir",
               str(tmp_path / "out"), "--json")
    assert r.code == 2 and "nope" in json.loads(r.stderr)["error"]["message"] and not (tmp_path / "out").exists()
