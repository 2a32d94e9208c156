"""The studio in Debian's Chromium: gallery, a run at the gate approved with a note until the hires image
appears, a stage re-run with a new seed shown as a child, compare. Screenshots go to build/studio-screenshots."""

from __future__ import annotations

import re
from typing import Any

from tests.web.conftest import Served, screenshot


def test_gallery_lists_runs_newest_first_with_waiting_count(page: Any, studio: Served) -> None:
    page.goto(studio.url + "/")
    tiles = page.locator("[data-testid=gallery] .tile")
    assert tiles.count() >= len(studio.run_ids)
    shown = [tiles.nth(i).get_attribute("data-run") for i in range(tiles.count())]
    newest_first = [r.id for r in studio.registry.list_runs(limit=100)]
    assert shown == newest_first[: len(shown)]
    waiting = len(studio.registry.list_runs(status="awaiting_approval", limit=100))
    assert page.locator("[data-testid=awaiting-count] b").inner_text() == str(waiting)
    first = tiles.first
    assert first.locator(".badge.sim").inner_text() == "SIMULATED"
    assert first.locator("img").evaluate("img => img.complete && img.naturalWidth > 0")
    # search over the prompt text narrows the gallery
    page.fill("input[name=q]", "beer")
    page.click("[data-testid=filters] button[type=submit]")
    found = page.locator("[data-testid=gallery] .tile").evaluate_all("ts => ts.map(t => t.dataset.run)")
    assert found == [r.id for r in studio.registry.list_runs(search="beer", limit=100)]
    assert found and studio.run_ids[0] not in found
    page.goto(studio.url + "/")
    screenshot(page, "gallery")


def test_approve_at_the_gate_with_a_note_until_the_hires_image_appears(page: Any, studio: Served) -> None:
    run_id = studio.run_ids[0]
    page.goto(studio.url + "/?awaiting=1")
    page.click(f".tile[data-run='{run_id}'] a.thumb")
    page.wait_for_url(re.compile(f"/runs/{run_id}$"))
    gate = page.locator("[data-testid=gate]")
    assert "hires" in gate.inner_text()
    for stage in ("draft", "layout", "final"):
        assert page.locator(f"[data-testid=img-{stage}]").count() == 1
    assert page.locator("[data-testid=img-hires]").count() == 0
    assert page.locator("[data-testid=qa-layout]").inner_text().count("GLOW SERUM") >= 1  # expected vs OCR text
    screenshot(page, "run-at-gate")
    # full size, then 1:1 for the typography
    page.click("[data-testid=stage-layout] .imgbtn")
    viewer = page.locator("[data-testid=viewer]")
    viewer.locator("img").wait_for()
    page.wait_for_function("document.querySelector('#viewer img').naturalWidth > 0")
    viewer.locator("[data-zoom='1']").click()
    shown, natural = viewer.locator("img").evaluate("i => [i.getBoundingClientRect().width, i.naturalWidth]")
    assert natural == 256 and round(shown) == natural
    viewer.locator("[data-close]").click()
    page.fill("[data-testid=note]", "type is crisp, go large")
    page.click("[data-testid=approve]")
    page.locator("[data-testid=img-hires]").wait_for(timeout=60_000)  # live progress until the hires image
    page.locator("[data-testid=run-status] .st-completed").wait_for(timeout=30_000)
    decisions = page.locator("[data-testid=approvals]").inner_text()
    assert "approved" in decisions and "Dana Designer" in decisions and "type is crisp, go large" in decisions
    approvals = studio.registry.approvals(run_id)
    assert [(a.decision, a.decided_by, a.note) for a in approvals] == [
        ("approved", "Dana Designer", "type is crisp, go large")]
    run = studio.registry.get_run(run_id)
    assert run.status == "completed" and run.final_artifact
    hires = [s for s in studio.registry.stage_runs(run_id) if s.name == "hires"][0]
    assert hires.status == "done" and run.final_artifact == hires.artifact_sha
    screenshot(page, "run-approved")


def test_rerun_a_stage_with_a_new_seed_shows_the_child(page: Any, studio: Served) -> None:
    parent = studio.run_ids[1]
    page.goto(f"{studio.url}/runs/{parent}")
    page.click("[data-testid=stage-final] .rerun-from")
    assert page.locator("[data-testid=tweak-stage]").input_value() == "final"
    page.check("[data-testid=new-seed]")
    page.click("[data-testid=rerun-submit]")
    page.wait_for_url(re.compile(r"/runs/(?!" + parent + r")[0-9a-f]{12}$"))
    child = page.url.rsplit("/", 1)[1]
    assert page.locator("[data-testid=parent-link]").inner_text() == parent
    try:
        page.locator("[data-testid=run-status] .st-awaiting_approval").wait_for(timeout=60_000)
    except Exception:
        screenshot(page, "debug-child")
        print(studio.registry.get_run(child).status, page.content()[:3000])
        raise
    page.reload()
    assert page.locator("[data-testid=img-final]").count() == 1
    rec = studio.registry.get_run(child)
    assert rec is not None and rec.parent_run_id == parent
    before = {s.name: s for s in studio.registry.stage_runs(parent)}
    after = {s.name: s for s in studio.registry.stage_runs(child)}
    for name in ("draft", "layout"):  # before the change: the cache, no new call
        assert after[name].cache_hit and after[name].artifact_sha == before[name].artifact_sha
        assert studio.registry.calls(stage_run_id=after[name].id) == []
    assert after["final"].seed != before["final"].seed and not after["final"].cache_hit
    page.goto(f"{studio.url}/runs/{parent}")
    assert child in page.locator("[data-testid=children]").inner_text()
    # compare parent and child side by side, parameters diffed
    page.goto(f"{studio.url}/compare?ids={parent},{child}&stage=final")
    cols = page.locator("[data-testid=compare] .col")
    assert cols.count() == 2
    page.wait_for_function("[...document.querySelectorAll('.compare img')].every(i => i.complete && i.naturalWidth)")
    differing = page.locator("[data-testid=diff-table] tr.differs").all_inner_texts()
    assert any(row.startswith("final\tseed") for row in differing), differing
    assert not any(row.startswith("draft\tseed") for row in differing)
    screenshot(page, "compare")
    page.fill("[data-testid=zoom]", "2")
    page.locator("[data-testid=zoom]").dispatch_event("input")
    widths = page.eval_on_selector_all(".compare img", "imgs => imgs.map(i => i.getBoundingClientRect().width)")
    assert len(set(round(w) for w in widths)) == 1 and widths[0] >= 500  # synchronised zoom at 2x of 256 px
