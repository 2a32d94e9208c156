"""The ``image-gen batch`` contract: submit (waiting, or detached), status, list, cancel, resume, each with --json;
exit 0 ok, 1 failed work, 2 bad input (and bad input writes nothing)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.batch._support import prompts, rows, sim_config, sqlite_url, write
from tests.core.helpers import invoke


def test_submit_waits_then_status_list_resume(tmp_path: Path, ws_path: Path) -> None:
    cfg, pf, ws = sim_config(tmp_path), prompts(tmp_path, 3), str(ws_path)
    r = invoke("batch", "submit", "--config", str(cfg), "--prompt-file", str(pf), "--simulate", "--name", "spring",
               "--concurrency", "2", "--workspace", ws, "--json")
    assert r.code == 0, r.stderr
    out = r.json()
    bid = out["batch_id"]
    assert out["status"] == "completed" and out["total"] == 3 and out["done"] == 3 and out["remaining"] == 0
    assert out["counts"] == {"completed": 3} and out["eta_s"] == 0
    url = sqlite_url(ws_path)
    runs = rows(url, "select id, cost_usd from runs where batch_id = :b", b=bid)
    assert len(runs) == 3 and {i["run_id"] for i in out["items"]} == {r[0] for r in runs}
    assert out["spend_usd"] > 0 and abs(out["spend_usd"] - sum(r[1] for r in runs)) < 1e-6
    assert "batch " + bid in r.stderr  # progress on stderr: counts, spend, ETA
    assert "3/3 done" in r.stderr and "ETA" in r.stderr

    st = invoke("batch", "status", bid[:6], "--workspace", ws, "--json")
    assert st.code == 0 and st.json()["batch_id"] == bid and st.json()["name"] == "spring"
    listed = invoke("batch", "list", "--workspace", ws, "--json")
    assert listed.code == 0 and [b["batch_id"] for b in listed.json()["batches"]] == [bid]

    calls = rows(url, "select count(*) from calls")[0][0]
    again = invoke("batch", "resume", bid, "--workspace", ws, "--json")
    assert again.code == 0 and again.json()["status"] == "completed"
    assert rows(url, "select count(*) from calls")[0][0] == calls  # a finished batch pays nothing again

    assert invoke("batch", "cancel", bid, "--workspace", ws, "--json").code == 1  # nothing left to cancel
    assert invoke("batch", "status", "nope1234", "--workspace", ws, "--json").code == 2


def test_bad_input_writes_nothing(tmp_path: Path, ws_path: Path) -> None:
    cfg, ws = sim_config(tmp_path), str(ws_path)
    bad_file = write(tmp_path / "p.jsonl", '{"prompt": "a"}\n{"prompt": "b", "seed": "x"}\n')
    r = invoke("batch", "submit", "--config", str(cfg), "--prompt-file", str(bad_file), "--simulate",
               "--workspace", ws, "--json")
    assert r.code == 2 and '"line 2: seed"' in r.stderr
    bad_cfg = write(tmp_path / "bad.toml", '[pipeline]\nstages = ["draft:no-such-model"]\n')
    r = invoke("batch", "submit", "--config", str(bad_cfg), "--prompt-file", str(prompts(tmp_path, 2)),
               "--simulate", "--workspace", ws, "--json")
    assert r.code == 2
    r = invoke("batch", "submit", "--config", str(cfg), "--prompt-file", str(tmp_path / "missing.txt"),
               "--workspace", ws, "--json")
    assert r.code == 2
    db = ws_path / ".image-gen" / "registry.db"
    assert not db.exists() or rows(sqlite_url(ws_path), "select count(*) from batches")[0][0] == 0
    assert invoke("batch", "list", "--workspace", str(tmp_path / "nowhere"), "--json").code == 2


@pytest.mark.timing
def test_detach_returns_at_once_and_the_worker_finishes(tmp_path: Path, ws_path: Path) -> None:
    cfg, pf, ws = sim_config(tmp_path), prompts(tmp_path, 2), str(ws_path)
    t0 = time.monotonic()
    r = invoke("batch", "submit", "--config", str(cfg), "--prompt-file", str(pf), "--simulate", "--detach",
               "--workspace", ws, "--json")
    assert r.code == 0, r.stderr
    out = r.json()
    assert out["detached"] and out["status"] == "pending" and out["total"] == 2
    bid = out["batch_id"]
    assert rows(sqlite_url(ws_path), "select count(*) from batch_items where batch_id = :b", b=bid)[0][0] == 2
    assert time.monotonic() - t0 < 30
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        st = invoke("batch", "status", bid, "--workspace", ws, "--json").json()
        if st["status"] in ("completed", "failed"):
            break
        time.sleep(0.3)
    assert st["status"] == "completed", (st, Path(out["log"]).read_text())


def test_resume_without_the_providers_key_is_bad_input(tmp_path: Path, ws_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from image_gen import api
    from tests.batch._support import IDEOGRAM

    cfg = write(tmp_path / "ideo.toml", IDEOGRAM)
    monkeypatch.setenv("IDEOGRAM_API_KEY", "ideo-test-key")
    monkeypatch.setenv("IDEOGRAM_BASE_URL", "http://127.0.0.1:9")  # never reached: nothing runs
    bid = api.submit_batch(cfg, prompts(tmp_path, 2), workspace=ws_path)
    monkeypatch.delenv("IDEOGRAM_API_KEY")
    r = invoke("batch", "resume", bid, "--workspace", str(ws_path), "--json")
    assert r.code == 2 and "NotConfigured" in r.stderr and "ideogram" in r.stderr
    assert rows(sqlite_url(ws_path), "select count(*) from runs") == [(0,)]
    assert invoke("batch", "submit", "--config", str(cfg), "--prompt-file", str(prompts(tmp_path, 1)),
                  "--workspace", str(ws_path), "--json").code == 2  # submit checks it too, writing nothing
    assert rows(sqlite_url(ws_path), "select count(*) from batches") == [(1,)]
