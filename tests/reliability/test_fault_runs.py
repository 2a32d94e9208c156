"""Fifty staged runs through the CLI against loopback vendors that fail on purpose.

Faults on every vendor call: 20% 5xx (half 500, half 503), 10% 429 with ``Retry-After``, 5% hangs past the
call's deadline, 5% cut-off bodies, 5% trickled bodies, 5% non-image bytes, 2% oversized images (seeded). Every run
must complete or end with a recorded reason; nothing crashes; every generation a vendor billed (its own honest
bill, ``billed_calls``) is charged in the registry, as billed or as "may have been billed", and nothing the vendor
refused is charged as billed; no run and no day passes its budget.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import FakeGoogle, FakeIdeogram, FakeStability
from tests.providers._cli import as_json, assert_no_key_anywhere, image_gen, rows

# timing: 0.3 s call deadlines with exact counts of what timed out (make test runs it serially)
pytestmark = pytest.mark.timing

RUNS = 50
PER_RUN_USD = 0.30
PER_DAY_USD = 9.00
FAULTS = {
    "rate_5xx": 0.20,
    "rate_429": 0.10,
    "rate_hang": 0.05,
    "rate_truncate": 0.05,
    "rate_trickle": 0.05,
    "rate_garbage": 0.05,
    "rate_oversize": 0.02,
}
KEYS = {"ideogram": "ideo-fault-key-1", "stability": "sk-fault-key-2", "google": "AIza-fault-key-3"}

CONFIG = f"""
name = "staged-faults"
[pipeline]
model = "staged-selection"
stages = ["draft:ideogram-v1-turbo", "layout:ideogram-v2a", "final:sd3.5-medium", "hires:gemini-3-pro-image"]
width = 64
height = 64
[pipeline.qa]
enabled = false
[stage.draft]
seed = 42
[budget]
per_run_usd = {PER_RUN_USD}
per_day_usd = {PER_DAY_USD}
[retry]
initial_s = 0
max_s = 0
max_retry_after_s = 0
[providers.ideogram]
timeout_s = 0.3
[providers.stability]
timeout_s = 0.3
[providers.google]
timeout_s = 0.3
"""

GENERATION_PATHS = ("/generate", "/remix", "/generate/sd3", ":generateContent")


@pytest.fixture
def faulty_vendors() -> Iterator[tuple[FakeIdeogram, FakeStability, FakeGoogle]]:
    vendors = (
        FakeIdeogram(KEYS["ideogram"], hang_s=0.6, size_scale=1 / 16, seed=1),
        FakeStability(KEYS["stability"], hang_s=0.6, size_scale=1 / 16, seed=2),
        FakeGoogle(KEYS["google"], hang_s=0.6, size_scale=1 / 16, seed=3),
    )
    for seed, v in enumerate(vendors, start=1):
        v.set_faults(**FAULTS, seed=seed)
        v.start()
    yield vendors
    for v in vendors:
        v.stop()


def test_fifty_runs_under_faults(
    tmp_path: Path,
    faulty_vendors: tuple[FakeIdeogram, FakeStability, FakeGoogle],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ideogram, stability, google = faulty_vendors
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    env = {
        "IDEOGRAM_API_KEY": KEYS["ideogram"],
        "IDEOGRAM_BASE_URL": ideogram.url,
        "STABILITY_API_KEY": KEYS["stability"],
        "STABILITY_BASE_URL": stability.url,
        "GEMINI_API_KEY": KEYS["google"],
        "GOOGLE_GEMINI_BASE_URL": google.url,
    }
    (tmp_path / "staged.toml").write_text(CONFIG)
    (tmp_path / "prompts.txt").write_text(
        "".join(f'Bottle number {i} on a shelf, label reading "BATCH {i:02d}"\n' for i in range(RUNS))
    )
    ws = tmp_path / "ws"

    proc = image_gen(
        "run",
        "--config",
        str(tmp_path / "staged.toml"),
        "--prompt-file",
        str(tmp_path / "prompts.txt"),
        "--workspace",
        str(ws),
        "--json",
        env=env,
    )

    # No crash: a normal exit code, a JSON report, no traceback.
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    report = as_json(proc)["runs"]
    assert len(report) == RUNS

    # Every run completes or ends with a recorded reason.
    runs = rows(ws, "SELECT id, status, reason, cost_usd FROM runs")
    assert len(runs) == RUNS
    for run in runs:
        assert run["status"] in ("completed", "failed", "budget_stopped"), run
        if run["status"] != "completed":
            assert run["reason"], run

    calls = rows(ws, "SELECT * FROM calls")
    assert not [c for c in calls if c["state"] == "sent"]  # every call finished and was recorded

    # The vendors' own bills against the registry: every generation a vendor billed is charged, as billed or as
    # "may have been billed" (an answer lost on the wire); a call charged as billed was billed by its vendor.
    for name, vendor in (("ideogram", ideogram), ("stability", stability), ("google", google)):
        mine = [c for c in calls if c["provider"] == name]
        billed = sum(1 for c in mine if c["billed"])
        charged = [c for c in mine if c["billed"] or c.get("maybe_billed")]
        assert billed <= vendor.billed_calls <= len(charged), (name, billed, vendor.billed_calls, len(charged))
        # exactly: a hang past the deadline is the one lost answer the vendor did not bill (it never answered), and
        # the registry charges it as "may have been billed"; every other charge is a generation the vendor billed
        hangs = sum(1 for r in vendor.request_log if r.outcome == "hang")
        assert vendor.billed_calls + hangs == len(charged), (name, vendor.billed_calls, hangs, len(charged))
        assert sum(c["cost_usd"] for c in charged) >= vendor.billed_usd - 1e-9, name
    # A finished stage was paid for by exactly one successful call.
    done = rows(ws, "SELECT id FROM stage_runs WHERE status = 'done'")
    ok_per_stage = Counter(c["stage_run_id"] for c in calls if c["state"] == "ok")
    assert all(ok_per_stage[s["id"]] == 1 for s in done)
    assert sum(ok_per_stage.values()) == len(done)

    # The budget is never passed: not by any run, not by the day.
    spend: Counter[str] = Counter()
    for c in calls:
        spend[c["run_id"]] += c["cost_usd"]
    assert max(spend.values()) <= PER_RUN_USD + 1e-9
    assert sum(spend.values()) <= PER_DAY_USD + 1e-9

    procs = [proc]
    assert_no_key_anywhere(ws, procs, KEYS.values())

    statuses = Counter(r["status"] for r in runs)
    reasons = Counter((r["reason"] or "").split(":")[0] for r in runs if r["status"] != "completed")
    errors = Counter(c["error_kind"] for c in calls if c["state"] == "failed")
    vendor_billed = sum(v.billed_calls for v in (ideogram, stability, google))
    charged_all = sum(1 for c in calls if c["billed"] or c.get("maybe_billed"))
    print(f"\n[faults] runs: {dict(statuses)}; reasons: {dict(reasons)}; vendors billed {vendor_billed} calls, "
          f"registry charged {charged_all} (billed + may have been billed); left sent: 0")
    print(f"calls: {len(calls)} ({dict(Counter(c['state'] for c in calls))}); errors: {dict(errors)}")
    print(
        f"spend: ${sum(spend.values()):.3f} of ${PER_DAY_USD:.2f}/day; max run ${max(spend.values()):.3f} "
        f"of ${PER_RUN_USD:.2f}"
    )
    assert statuses["completed"] >= RUNS // 3  # faults are survived by retries, not only recorded
    assert sum(errors.values()) > 0  # the faults really happened
