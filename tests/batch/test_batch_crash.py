"""A batch killed anywhere resumes and completes with no finished call paid twice (the loopback vendor's own
request log shows it), on SQLite and on PostgreSQL; two processes resuming the same batch never both run an item;
a cancel under concurrency stops running items before their next call and never starts the rest."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from pathlib import Path

import pytest

from image_gen import api
from image_gen.store.models import utcnow
from tests.batch._support import IDEOGRAM, prompts, rows, sim_config, sqlite_url, write
from tests.core.helpers import invoke
from tests.fakes import FakeIdeogram
from tests.fakes.fixtures import IDEOGRAM_KEY
from tests.reliability._support import cli, popen, run_together, wait_for

# timing: SIGKILL of a batch worker and cancel while calls are in flight (make test runs it serially)
pytestmark = pytest.mark.timing

BRIEFS, STAGES = 6, 2


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_killed_batch_resumes_with_no_call_paid_twice(backend: str, request: pytest.FixtureRequest, tmp_path: Path,
                                                      ws_path: Path, fake_ideogram: FakeIdeogram,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else sqlite_url(ws_path)
    fake_ideogram.latency_s = 0.25
    extra = {"IDEOGRAM_API_KEY": IDEOGRAM_KEY, "IDEOGRAM_BASE_URL": fake_ideogram.url, "COLUMNS": "200"}
    if backend == "postgres":
        extra["IMAGE_GEN_REGISTRY_URL"] = url
    cfg, pf, ws = write(tmp_path / "ideo.toml", IDEOGRAM), prompts(tmp_path, BRIEFS), str(ws_path)

    def posts() -> list:
        return [r for r in fake_ideogram.request_log if r.method == "POST"]

    proc = popen(cli("batch", "submit", "--config", str(cfg), "--prompt-file", str(pf), "--concurrency", "2",
                     "--workspace", ws, "--json"), **extra)
    wait_for(lambda: len(posts()) >= 5, 120, "five vendor calls", proc)  # mid-batch: some briefs done, some not
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    at_kill = rows(url, "select status, count(*) from batch_items group by status")
    assert dict(at_kill).get("completed", 0) < BRIEFS, at_kill
    (bid,) = rows(url, "select id from batches")[0]

    for k, v in extra.items():  # resumed in this process (the CLI in-process), with the same environment
        monkeypatch.setenv(k, v)
    r = invoke("batch", "resume", bid[:8], "--workspace", ws, "--json")
    assert r.code == 0, r.stderr
    out = r.json()
    assert out["status"] == "completed" and out["counts"] == {"completed": BRIEFS}

    # one run per brief; every item points at its run
    assert rows(url, "select count(*), count(distinct i.run_id) from batch_items i join runs r on r.id = i.run_id "
                     "where i.batch_id = :b", b=bid) == [(BRIEFS, BRIEFS)]
    calls = Counter(s for (s,) in rows(url, "select state from calls"))
    assert set(calls) <= {"ok", "interrupted"}
    log = posts()
    by_digest = Counter(r.digest for r in log)
    # the vendor saw each distinct request once, except those in flight at the kill: the registry shows each of
    # those as interrupted (charged as may-have-been-billed) and resume sent it again; a call recorded as sent may
    # not have reached the vendor before the kill, so the vendor's repeats are at most the interrupted calls.
    # Nothing that finished was sent twice.
    assert len(by_digest) == calls["ok"] == BRIEFS * STAGES
    assert len(log) - len(by_digest) <= calls["interrupted"]
    assert fake_ideogram.billed_calls == len(log)
    ok_digests = [d for (d,) in rows(url, "select request_digest from calls where state = 'ok'")]
    assert len(ok_digests) == len(set(ok_digests))
    spend = rows(url, "select coalesce(sum(cost_usd), 0) from calls")[0][0]
    maybe = rows(url, "select coalesce(sum(cost_usd), 0) from calls where state = 'interrupted'")[0][0]
    assert abs(out["spend_usd"] - spend) < 1e-6
    assert fake_ideogram.billed_usd - 1e-6 <= spend <= fake_ideogram.billed_usd + maybe + 1e-6  # never under-counted
    with capsys.disabled():
        print(f"\n[batch kill/resume {backend}] items at the kill={dict(at_kill)} vendor requests={len(log)} "
              f"distinct={len(by_digest)} interrupted calls={calls['interrupted']} repeated ok calls=0 "
              f"registry spend=${spend:.4f} vendor billed=${fake_ideogram.billed_usd:.4f}")


@pytest.mark.slow
def test_two_processes_resuming_one_batch_never_both_run_an_item(tmp_path: Path, ws_path: Path) -> None:
    bid = api.submit_batch(sim_config(tmp_path, latency=0.02), prompts(tmp_path, 4), workspace=ws_path,
                           simulate=True)
    done = run_together([("batch", "resume", bid, "--workspace", str(ws_path), "--concurrency", "2", "--json")] * 2,
                        tmp_path / "go")
    assert [d.code for d in done] == [0, 0], [d.stderr[-800:] for d in done]
    url = sqlite_url(ws_path)
    assert rows(url, "select count(*) from runs where batch_id = :b", b=bid) == [(4,)]  # no item started twice
    ok = [d for (d,) in rows(url, "select request_digest from calls where state = 'ok'")]
    assert len(ok) == len(set(ok)) == 4 * 2
    assert rows(url, "select status from batches") == [("completed",)]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_cancel_under_concurrency(backend: str, request: pytest.FixtureRequest, tmp_path: Path,
                                  ws_path: Path) -> None:
    pg_url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    url = pg_url or sqlite_url(ws_path)
    bid = api.submit_batch(sim_config(tmp_path, latency=0.05), prompts(tmp_path, 10), workspace=ws_path,
                           simulate=True, registry_url=pg_url)
    result: list = []
    worker = threading.Thread(target=lambda: result.append(api.run_batch(bid, workspace=ws_path, concurrency=3,
                                                                         registry_url=pg_url)))
    worker.start()
    wait_for(lambda: bool(rows(url, "select 1 from calls where state = 'ok'")), 60, "a first finished call")
    st = api.cancel_batch(bid, "wrong prompts", workspace=ws_path, registry_url=pg_url)
    cancelled_at = utcnow()
    assert st.status == "cancelled"
    worker.join(120)
    assert not worker.is_alive()
    end = api.batch_status(bid, workspace=ws_path, registry_url=pg_url)
    assert end.status == "cancelled" and result[0].status == "cancelled"
    assert not {"pending", "running"} & set(end.counts), end.counts
    unstarted = [i for i in end.items if i["run_id"] is None]
    assert unstarted and all(i["status"] == "cancelled" for i in unstarted)
    # running items stopped before their next call: nothing was sent after the cancel, nothing is left in flight
    assert rows(url, "select count(*) from calls where created_at > :t", t=cancelled_at) == [(0,)]
    assert rows(url, "select count(*) from calls where state = 'sent'") == [(0,)]
    assert set(rows(url, "select status from runs where batch_id = :b", b=bid)) <= {("cancelled",), ("completed",)}
    again = api.run_batch(bid, workspace=ws_path, registry_url=pg_url)  # resuming a cancelled batch starts nothing
    assert again.status == "cancelled" and rows(url, "select count(*) from runs where batch_id = :b", b=bid) == [
        (len(end.items) - len(unstarted),)]
