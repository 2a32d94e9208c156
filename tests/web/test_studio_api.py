"""The studio's JSON API and its security, over real HTTP: the token, CSRF, content-addressed artifacts only,
the library's errors mapped to HTTP (409 for a second decision), the CLI's JSON shapes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.core.helpers import db_rows, invoke
from tests.web.conftest import TOKEN, Served

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _client(studio: Served) -> httpx.Client:
    return httpx.Client(base_url=studio.url, timeout=30)


def _state(studio: Served) -> tuple[dict[str, int], list[tuple[str, str]]]:
    runs = studio.registry.list_runs(limit=1000)
    return db_rows(studio.root), sorted((r.id, r.status) for r in runs)


def test_mutating_requests_without_the_token_are_refused_and_change_nothing(studio: Served) -> None:
    run_id = studio.run_ids[1]
    before = _state(studio)
    bodies: list[tuple[str, dict[str, Any]]] = [
        (f"/api/runs/{run_id}/approve", {"note": "sneaky"}), (f"/api/runs/{run_id}/reject", {"note": "sneaky"}),
        (f"/api/runs/{run_id}/rerun", {"seed": "new"}), ("/api/reruns", {"run_ids": [run_id]}),
        ("/api/batches", {"config": str(studio.config), "prompts": ["x"]}),
        ("/api/report", {"baseline": str(studio.config), "staged": str(studio.config)})]
    with _client(studio) as c:
        session = _signed_in_cookie(c)
        for url, body in bodies:
            assert c.post(url, json=body).status_code == 403, url  # no token at all
            assert c.post(url, json=body, headers={"Authorization": "Bearer wrong-token-0123456789"}
                          ).status_code == 403, url
            # a session cookie without its CSRF token (what a cross-site form post would send)
            r = c.post(url, json=body, cookies={"image_gen_session": session})
            assert r.status_code == 403 and "CSRF" in r.json()["error"], url
            r = c.post(url, json=body, cookies={"image_gen_session": session}, headers={"X-CSRF-Token": "0" * 64})
            assert r.status_code == 403, url
    assert _state(studio) == before
    assert studio.registry.approvals(run_id) == []


def _signed_in_cookie(c: httpx.Client) -> str:
    r = c.post("/login", data={"token": TOKEN, "name": "Eve Reviewer"}, follow_redirects=False)
    assert r.status_code == 303
    value = r.cookies.get("image_gen_session")
    assert value
    c.cookies.clear()
    bad = c.post("/login", data={"token": "not-the-token-000000", "name": "Mallory"}, follow_redirects=False)
    assert bad.status_code == 403 and "image_gen_session" not in bad.cookies
    return str(value)


@pytest.mark.parametrize("path", [
    "/artifacts/../../etc/passwd", "/artifacts/..%2F..%2Fetc%2Fpasswd", "/artifacts/%2e%2e/%2e%2e/etc/passwd",
    "/artifacts/..%2F..%2Fetc%2Fpasswd/thumb", "/artifacts/" + "0" * 64, "/artifacts/" + "0" * 64 + "/thumb",
    "/artifacts/" + "A" * 64, "/artifacts/registry.db", "/report/files/..%2F..%2Fregistry.db",
])
def test_artifact_routes_serve_only_files_the_registry_knows(studio: Served, path: str) -> None:
    with _client(studio) as c:
        r = c.get(path)
    assert r.status_code == 404
    assert b"root:" not in r.content


def test_images_are_immutable_and_thumbnails_are_made_once(studio: Served) -> None:
    sha = studio.registry.get_run(studio.run_ids[1]).final_artifact
    with _client(studio) as c:
        full = c.get(f"/artifacts/{sha}")
        assert full.status_code == 200 and full.headers["content-type"] == "image/png"
        assert "immutable" in full.headers["cache-control"] and full.headers["etag"] == f'"{sha}"'
        assert full.content == studio.app.state.studio.artifacts.read_bytes(sha)
        assert c.get(f"/artifacts/{sha}", headers={"If-None-Match": f'"{sha}"'}).status_code == 304
        t1 = c.get(f"/artifacts/{sha}/thumb")
        assert t1.status_code == 200 and t1.headers["content-type"] == "image/webp" and t1.content[8:12] == b"WEBP"
        assert "immutable" in t1.headers["cache-control"]
        cached = next(studio.app.state.studio.thumb_dir.glob(f"*/{sha}-*.webp"))
        stamp = cached.stat().st_mtime_ns
        t2 = c.get(f"/artifacts/{sha}/thumb")
        assert t2.content == t1.content and cached.stat().st_mtime_ns == stamp  # served from the cache
        assert len(t1.content) < len(full.content)


def test_api_lists_runs_in_the_cli_shape_and_filters(studio: Served) -> None:
    cli = invoke("runs", "list", "--json", "--workspace", str(studio.root), "--limit", "1000")
    assert cli.code == 0
    with _client(studio) as c:
        api_rows = c.get("/api/runs", params={"limit": 1000}).json()["runs"]
        assert [r["run_id"] for r in api_rows] == [r["run_id"] for r in cli.json()["runs"]]
        for ours, theirs in zip(api_rows, cli.json()["runs"], strict=True):
            assert {k: ours[k] for k in theirs} == theirs
        waiting = c.get("/api/runs", params={"awaiting": "1"}).json()["runs"]
        assert waiting and all(r["status"] == "awaiting_approval" for r in waiting)
        found = c.get("/api/runs", params={"q": "HOP STORM"}).json()["runs"]
        assert [r["run_id"] for r in found] == [studio.run_ids[1]]
        shown = c.get(f"/api/runs/{studio.run_ids[1]}").json()
    cli_show = invoke("runs", "show", studio.run_ids[1], "--json", "--workspace", str(studio.root)).json()
    assert set(cli_show) <= set(shown) and [s["stage"] for s in shown["stages"]] == [
        s["stage"] for s in cli_show["stages"]]


def test_a_second_decision_is_a_conflict_and_bad_input_is_400(studio: Served) -> None:
    # a throwaway run at the gate: a re-run of the hires stage (every earlier stage from the cache)
    from image_gen import api

    child = api.rerun(studio.run_ids[1], stage="hires", strength=0.25, workspace=studio.root)
    assert child.status == "awaiting_approval"
    assert studio.registry.get_run(child.run_id).parent_run_id == studio.run_ids[1]
    with _client(studio) as c:
        r = c.post(f"/api/runs/{child.run_id}/reject", json={"note": "off-brand colour"},
                   headers={**AUTH, "X-Image-Gen-User": "chat-ops"})
        assert r.status_code == 200 and r.json()["runs"][0]["status"] == "rejected"
        again = c.post(f"/api/runs/{child.run_id}/approve", json={"note": "too late"}, headers=AUTH)
        assert again.status_code == 409 and "already rejected by chat-ops" in again.json()["error"]
        assert c.post("/api/runs/ffffffffffff/approve", json={}, headers=AUTH).status_code == 404
        assert c.post(f"/api/runs/{child.run_id}/rerun", json={"stage": "nope"}, headers=AUTH).status_code == 400
        assert c.post(f"/api/runs/{child.run_id}/rerun", json={"steps": "many", "stage": "draft"},
                      headers=AUTH).status_code == 400
        assert c.post("/api/batches", json={"config": "/etc/passwd", "prompts": ["x"]}, headers=AUTH
                      ).status_code == 400
        big = c.post(f"/api/runs/{child.run_id}/reject", content=b"x" * 3_000_000,
                     headers={**AUTH, "Content-Type": "application/json"})
        assert big.status_code == 413
    decided = studio.registry.approvals(child.run_id)
    assert [(a.decision, a.decided_by, a.note) for a in decided] == [("rejected", "chat-ops", "off-brand colour")]


def test_serve_refuses_other_hosts_without_a_token_file(tmp_path: Any) -> None:
    r = invoke("serve", "--host", "0.0.0.0", "--workspace", str(tmp_path))
    assert r.code == 2 and "--token-file" in r.stderr and "warning" in r.stderr
    short = tmp_path / "token"
    short.write_text("abc", encoding="utf-8")
    r = invoke("serve", "--host", "0.0.0.0", "--token-file", str(short), "--workspace", str(tmp_path))
    assert r.code == 2 and "16 characters" in r.stderr


def test_a_batch_from_an_uploaded_prompt_file(studio: Served) -> None:
    import time

    from tests.web.conftest import BRIEFS

    with _client(studio) as c:
        bad = c.post("/api/batches", headers=AUTH, data={"config": str(studio.config)},
                     files={"prompt_file": ("briefs.exe", b"MZ", "application/octet-stream")})
        assert bad.status_code == 400
        # the same brief on the same config: every stage before the gate comes from the cache
        r = c.post("/api/batches", headers=AUTH, data={"config": str(studio.config)},
                   files={"prompt_file": ("briefs.txt", f"# launch\n{BRIEFS[1]}\n".encode(), "text/plain")})
        assert r.status_code == 202, r.text
        url = f"/api/batches/{r.json()['batch_id']}"
        deadline = time.monotonic() + 60
        while not (batch := c.get(url).json())["finished"]:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert batch["error"] is None and batch["done"] == 1 and len(batch["run_ids"]) == 1
        assert batch["runs"][0]["status"] == "awaiting_approval" and batch["runs"][0]["prompt"] == BRIEFS[1]
        assert c.get(f"/batches/{batch['batch_id']}").status_code == 200


def test_the_report_page_writes_and_exports_the_before_after_report(studio: Served) -> None:
    import io
    import time
    import zipfile

    with _client(studio) as c:
        assert c.get("/report/export").status_code == 404  # nothing written yet
        # the before/after report of two configs on the briefs both ran (here: the config against itself)
        r = c.post("/api/report", headers=AUTH, json={"baseline": str(studio.config), "staged": str(studio.config)})
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 60
        while studio.app.state.studio.report_job["state"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert studio.app.state.studio.report_job["state"] == "done", studio.app.state.studio.report_job
        page = c.get("/report/files/report.html")
        assert page.status_code == 200 and "SIMULATED" in page.text
        export = c.get("/report/export")
        names = zipfile.ZipFile(io.BytesIO(export.content)).namelist()
        assert "report/report.html" in names and "report/cost_vs_success.png" in names
