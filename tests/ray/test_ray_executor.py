"""The Ray executor on a local Ray (2 CPUs): staged batches on the simulator and on the loopback vendors, a worker
killed mid-batch (the batch completes and the vendors saw no request twice), vendor limits held cluster-wide, and
the actor path that keeps local pipelines loaded between briefs (on CPU)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeGoogle, FakeIdeogram, FakeStability
from tests.fakes.fixtures import GEMINI_KEY, IDEOGRAM_KEY, STABILITY_KEY

ray = pytest.importorskip("ray")

# timing: a worker killed while it waits, calls that must overlap, Ctrl-C (make test runs it serially)
pytestmark = [pytest.mark.slow, pytest.mark.timing, pytest.mark.timeout(240)]

BRIEFS = [
    'Hero shot of a water bottle, label reads "AQUA PURE"',
    'Matte black coffee bag on a counter, label reads "NIGHT OWL"',
    'Glass jar of honey on a wooden table, label reads "GOLDEN"',
    'Tin of mints on a desk, label reads "FRESH"',
]

SIM_STAGED = """
name = "ray-sim"
[pipeline]
stages = ["draft:ideogram-v1-turbo", "layout:ideogram-v2a", "final:sd3.5-medium"]
width = 256
height = 256
[pipeline.qa]
enabled = false
[sim]
latency_scale = 0
fail_rate = 0
"""

VENDOR_STAGED = """
name = "ray-vendors"
[pipeline]
stages = ["draft:ideogram-v1-turbo", "final:sd3.5-medium", "hires:gemini-3-pro-image"]
width = 256
height = 256
[pipeline.qa]
enabled = false
[stage.final]
strength = 0.35
[stage.hires]
strength = 0.3
[retry]
initial_s = 0
max_s = 0
[providers.ideogram]
max_concurrency = 1
"""

IDEOGRAM_ONLY = """
[pipeline]
stages = ["draft:ideogram-v1-turbo", "layout:ideogram-v2a"]
width = 256
height = 256
[pipeline.qa]
enabled = false
[retry]
initial_s = 0
max_s = 0
[providers.ideogram]
max_concurrency = 1
"""


@pytest.fixture(scope="module")
def ray_local(
    tmp_path_factory: pytest.TempPathFactory,
    fake_ideogram_server: FakeIdeogram,
    fake_stability_server: FakeStability,
    fake_google_server: FakeGoogle,
) -> Iterator[dict[str, Any]]:
    """A local Ray for the module; its workers get the vendors' keys and URLs and no user keys file."""
    home = tmp_path_factory.mktemp("ray-home")
    env = {
        "IDEOGRAM_API_KEY": IDEOGRAM_KEY, "IDEOGRAM_BASE_URL": fake_ideogram_server.url,
        "STABILITY_API_KEY": STABILITY_KEY, "STABILITY_BASE_URL": fake_stability_server.url,
        "GEMINI_API_KEY": GEMINI_KEY, "GOOGLE_GEMINI_BASE_URL": fake_google_server.url,
        "IMAGE_GEN_HOME": str(home), "IMAGE_GEN_KEYS_FILE": str(home / "no-keys.toml"), "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    started = time.monotonic()
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env}, log_to_driver=False)
    info = {"init_s": round(time.monotonic() - started, 2), "env": env}
    try:
        yield info
    finally:
        ray.shutdown()


def submit(ws: Path, config: Path, briefs: list[str], *, simulate: bool,
           registry_url: str | None = None) -> tuple[Any, str]:
    from image_gen.api import make_runner
    from image_gen.config import load_config
    from image_gen.pipeline.batch import submit as submit_batch
    from image_gen.pipeline.runner import Brief

    runner = make_runner(load_config(config), workspace=ws, simulate=simulate, config_source=str(config),
                         registry_url=registry_url)
    batch_id = submit_batch(runner, [Brief(b, index=i) for i, b in enumerate(briefs)], executor="ray")
    return runner, batch_id


def run(executor: Any, runner: Any, batch_id: str, concurrency: int) -> dict[int, Any]:
    """Run every item of the batch on ``executor``; each item's result as ``on_done`` got it (in this process)."""
    from sqlalchemy import update

    from image_gen.pipeline.batch import find_batch, finish, jobs_for
    from image_gen.store.models import Batch

    ws = runner.workspace
    with ws.registry().session() as s:  # as run_batch does before it hands the jobs to its executor
        s.execute(update(Batch).where(Batch.id == batch_id).values(status="running"))
    jobs = jobs_for(ws, find_batch(ws.registry(), batch_id), registry_url=ws.registry_url)
    got: dict[int, Any] = {}
    caller = threading.get_ident()

    def on_done(job: Any, result: Any) -> None:
        assert threading.get_ident() == caller  # called in the driver's loop, not in a Ray thread
        assert job.idx not in got
        got[job.idx] = result

    executor.run(jobs, concurrency=concurrency, on_done=on_done)
    finish(ws.registry(), batch_id)
    return got


def batch_state(runner: Any, batch_id: str) -> tuple[str, list[str]]:
    from image_gen.pipeline.batch import find_batch, items

    reg = runner.workspace.registry()
    return find_batch(reg, batch_id).status, [it.status for it in items(reg, batch_id)]


def ok_digests_repeated(runner: Any) -> list[str]:
    from image_gen.store.models import Call

    with runner.workspace.registry().reading() as s:
        rows = [(c.run_id, c.request_digest) for c in s.query(Call).filter(Call.state == "ok")]
    return [f"{r}:{d}" for (r, d), n in Counter(rows).items() if n > 1]


def test_a_staged_batch_runs_on_ray_tasks_on_the_simulator(ray_local: dict[str, Any], tmp_path: Path) -> None:
    """``run_batch`` with ``executor="ray"`` joins the running Ray; each brief is a task in a worker process."""
    from image_gen.pipeline.batch import run_batch
    from image_gen.pipeline.executors import get_executor
    from image_gen.pipeline.executors_ray import RayExecutor, batch_uses_local

    cfg = tmp_path / "sim.toml"
    cfg.write_text(SIM_STAGED)
    runner, batch_id = submit(tmp_path / "ws", cfg, BRIEFS[:3], simulate=True)
    assert isinstance(get_executor("ray"), RayExecutor)
    assert not batch_uses_local(_jobs(runner, batch_id)[0])
    seen: list[int] = []
    started = time.monotonic()
    st = run_batch(runner.workspace, batch_id, executor="ray", concurrency=2,
                   progress=lambda s: seen.append(s.done))
    took = time.monotonic() - started
    print(f"ray init {ray_local['init_s']} s; simulated batch of 3 briefs x 3 stages on Ray: {took:.2f} s")

    assert st.status == "completed" and seen[-1] == 3 and len(seen) == 4  # once before, then once per brief
    assert batch_state(runner, batch_id) == ("completed", ["completed"] * 3)
    from image_gen.pipeline.batch import items

    runs = [runner.registry.find_run(it.run_id) for it in items(runner.registry, batch_id)]
    assert [r.brief_index for r in runs] == [0, 1, 2]
    assert all(r.status == "completed" and r.simulated and r.final_artifact for r in runs)
    assert all(runner.workspace.artifacts().path_for(r.final_artifact).is_file() for r in runs)
    assert ok_digests_repeated(runner) == []
    # a job that raises (no such item) reaches on_done as its exception, raised in the worker and not retried
    from image_gen.errors import InputError
    from image_gen.pipeline.executors import BriefJob

    bad = BriefJob(batch_id, 99, str(runner.workspace.root), None, simulate=True)
    failed: dict[int, Any] = {}
    RayExecutor(limits_name="limits-sim").run([bad], concurrency=1, on_done=lambda j, r: failed.__setitem__(j.idx, r))
    assert isinstance(failed[99], InputError) and "no item 99" in str(failed[99])


def _jobs(runner: Any, batch_id: str) -> list[Any]:
    from image_gen.pipeline.batch import find_batch, jobs_for

    return jobs_for(runner.workspace, find_batch(runner.workspace.registry(), batch_id))


def _digests_billed_twice(*servers: FakeIdeogram | FakeStability | FakeGoogle) -> list[str]:
    seen = Counter(r.digest for s in servers for r in s.request_log if r.billed)
    return [d for d, n in seen.items() if n > 1]


@pytest.fixture(params=["sqlite", "postgres"])
def registry_url(request: pytest.FixtureRequest) -> str | None:
    """The registry every worker shares: the workspace's SQLite file, or a PostgreSQL database."""
    return None if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))


def test_a_worker_killed_mid_batch_loses_nothing_and_repeats_no_call(
    ray_local: dict[str, Any],
    tmp_path: Path,
    registry_url: str | None,
    vendor_env: dict[str, str],
    fake_ideogram: FakeIdeogram,
    fake_stability: FakeStability,
    fake_google: FakeGoogle,
) -> None:
    """Two workers share one place at Ideogram (``max_concurrency = 1``, held cluster-wide); the one waiting for it
    is killed (SIGKILL). Its brief's task is retried and resumes the run: the batch completes, Ideogram never had
    two requests in flight, and no vendor saw a billed request twice."""
    from image_gen.pipeline.executors_ray import RayExecutor

    fake_ideogram.latency_s = 1.0  # a wait for the one place long enough for the poll below on a loaded machine
    fake_ideogram.peak_inflight = 0
    cfg = tmp_path / "vendors.toml"
    cfg.write_text(VENDOR_STAGED)
    runner, batch_id = submit(tmp_path / "ws", cfg, BRIEFS, simulate=False, registry_url=registry_url)
    assert runner.registry.dialect == ("sqlite" if registry_url is None else "postgresql")
    exe = RayExecutor(limits_name="limits-kill", hold_ttl_s=3.0)
    limits = exe.limits()
    outcome: dict[str, Any] = {}

    def drive() -> None:
        try:
            outcome["got"] = run(exe, runner, batch_id, concurrency=2)
        except BaseException as exc:  # surfaced below
            outcome["error"] = exc

    started = time.monotonic()
    driver = threading.Thread(target=drive)
    driver.start()
    killed: int | None = None
    while killed is None and driver.is_alive() and time.monotonic() - started < 60:
        st = ray.get(limits.stats.remote())
        holding = {pid for _, pid in st["holding"]}
        waiting = [pid for name, pid in st["waiting"] if name == "slots:ideogram" and pid not in holding]
        if waiting:
            killed = waiting[0]
            os.kill(killed, signal.SIGKILL)
        else:
            time.sleep(0.05)
    driver.join(120)
    took = time.monotonic() - started
    print(f"vendor batch of 4 briefs x 3 stages on Ray ({runner.registry.dialect}), a worker killed: {took:.2f} s")
    assert not driver.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert killed is not None and killed != os.getpid(), "no worker was waiting for Ideogram: nothing was killed"

    got = outcome["got"]
    assert sorted(got) == [0, 1, 2, 3]
    assert all(isinstance(r, dict) and r["status"] == "completed" for r in got.values()), got
    assert batch_state(runner, batch_id) == ("completed", ["completed"] * 4)
    # the killed worker's run was taken over: its call that waited for Ideogram is recorded interrupted, sent again
    from image_gen.store.models import Call

    with runner.registry.reading() as s:
        states = Counter(c.state for c in s.query(Call))
    assert states["interrupted"] >= 1 and states["ok"] == 12, states
    # the vendors' own logs: every billed request once, and never two at once at Ideogram
    assert _digests_billed_twice(fake_ideogram, fake_stability, fake_google) == []
    assert fake_ideogram.billed_calls == 4 and fake_stability.billed_calls == 4 and fake_google.billed_calls == 4
    assert fake_ideogram.peak_inflight == 1
    st = ray.get(limits.stats.remote())
    assert st["peak"]["slots:ideogram"] == 1 and st["capacity"]["slots:ideogram"] == 1
    assert st["used"].get("slots:ideogram", 0) == 0  # the dead worker's place was given back
    assert ok_digests_repeated(runner) == []


def test_without_the_cluster_limit_two_workers_exceed_it(
    ray_local: dict[str, Any],
    tmp_path: Path,
    vendor_env: dict[str, str],
    fake_ideogram: FakeIdeogram,
) -> None:
    """The control: each worker's own in-process limit of one lets two requests reach Ideogram at once."""
    from image_gen.pipeline.executors_ray import RayExecutor

    fake_ideogram.latency_s = 2.0  # long enough that the two workers' calls overlap even when one starts late
    fake_ideogram.peak_inflight = 0
    cfg = tmp_path / "one.toml"
    cfg.write_text(IDEOGRAM_ONLY)
    runner, batch_id = submit(tmp_path / "ws", cfg, BRIEFS[:2], simulate=False)
    got = run(RayExecutor(cluster_limits=False), runner, batch_id, concurrency=2)
    assert all(isinstance(r, dict) and r["status"] == "completed" for r in got.values()), got
    assert fake_ideogram.peak_inflight == 2


LOCAL_STAGED = """
name = "ray-local"
[pipeline]
stages = ["draft:sim:ideogram-v1-turbo", "final:sd3.5-medium"]
width = 64
height = 64
[pipeline.qa]
enabled = false
[sim]
latency_scale = 0
[stage.final]
provider = "local"
steps = 2
strength = 0.5
[providers.local.options]
device = "cpu"
models = {{ "sd3.5-medium" = "{sd3}" }}
"""


def test_local_stages_run_on_an_actor_that_keeps_its_pipeline_loaded(
    ray_local: dict[str, Any], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A batch with a local (diffusers) stage: with no GPU in the cluster it would run as tasks; with actors forced
    on CPU (``actor_gpus=0``), every brief runs in the one actor's process, which loads the pipeline once."""
    pytest.importorskip("diffusers")
    from image_gen.pipeline.executors_ray import RayExecutor, batch_uses_local
    from tests.local._tiny import save_tiny_sd3

    sd3 = save_tiny_sd3(tmp_path_factory.mktemp("tiny-sd3"))
    cfg = tmp_path / "local.toml"
    cfg.write_text(LOCAL_STAGED.format(sd3=sd3))
    runner, batch_id = submit(tmp_path / "ws", cfg, BRIEFS[:2], simulate=False)
    jobs = _jobs(runner, batch_id)
    assert batch_uses_local(jobs[0])
    assert RayExecutor()._use_actors(jobs) is False  # no GPU in this cluster: ordinary tasks

    exe = RayExecutor(gpu_actors=True, actor_gpus=0, actors=1, limits_name="limits-local")
    started = time.monotonic()
    got = run(exe, runner, batch_id, concurrency=2)
    print(f"local-stage batch of 2 briefs on one CPU actor: {time.monotonic() - started:.2f} s")
    assert exe.mode == "actors" and len(exe.workers) == 1
    assert all(isinstance(r, dict) and r["status"] == "completed" for r in got.values()), got
    info = ray.get(exe.workers[0].info.remote())
    assert info["briefs"] == 2 and info["pid"] != os.getpid()
    assert info["loaded"] == [str(sd3)]  # one pipeline, loaded once, kept from brief to brief
    runs = [runner.registry.find_run(r["run_id"]) for r in got.values()]
    assert all(r.status == "completed" for r in runs)
    finals = [s for r in runs for s in runner.registry.stage_runs(r.id) if s.name == "final"]
    assert len(finals) == 2 and all(s.provider == "local" and s.status == "done" for s in finals)
    exe.shutdown_workers()


def test_ctrl_c_stops_running_briefs_before_their_next_call_and_resume_finishes(
    ray_local: dict[str, Any], tmp_path: Path
) -> None:
    """Ctrl-C in the driver: the running briefs' tasks are cancelled, each run stops and is recorded
    ``interrupted`` (nothing left ``running``); ``run_batch`` later finishes the batch, reusing finished calls."""
    import _thread

    from image_gen.pipeline.batch import run_batch
    from image_gen.pipeline.executors_ray import RayExecutor
    from image_gen.store.models import Call, Run

    cfg = tmp_path / "slow.toml"
    # slow enough that the briefs are still running when the interrupt lands, on a loaded machine too
    cfg.write_text(SIM_STAGED.replace("latency_scale = 0", "latency_scale = 1"))
    runner, batch_id = submit(tmp_path / "ws", cfg, BRIEFS[:2], simulate=True)
    reg = runner.registry

    seen: dict[str, Any] = {}

    def interrupt_once_a_call_is_done() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with reg.reading() as s:
                    ok = s.query(Call).filter(Call.state == "ok").count()
                    running = s.query(Run).filter(Run.status == "running").count()
            except Exception as exc:  # a busy SQLite file: look again
                seen["error"] = exc
                continue
            if running >= 1 and ok >= 1:
                seen["running"] = running
                _thread.interrupt_main()
                return
            time.sleep(0.02)

    # interrupt_main() does nothing where SIGINT is ignored (pytest started as a background job): Ctrl-C's handler
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        watcher = threading.Thread(target=interrupt_once_a_call_is_done, daemon=True)
        watcher.start()
        with pytest.raises(KeyboardInterrupt):
            run(RayExecutor(limits_name="limits-ctrl-c"), runner, batch_id, concurrency=2)
        watcher.join(5)
    finally:
        signal.signal(signal.SIGINT, previous)
    with reg.reading() as s:
        states = sorted(r.status for r in s.query(Run))
        ok_before = {(c.run_id, c.request_digest) for c in s.query(Call).filter(Call.state == "ok")}
    assert "running" in seen, seen
    assert "running" not in states and "interrupted" in states, states
    assert ok_before

    st = run_batch(runner.workspace, batch_id, executor="ray", concurrency=2)
    with reg.reading() as s:
        why = [(r.status, r.reason) for r in s.query(Run)]
    assert st.status == "completed", (st, why)
    assert ok_digests_repeated(runner) == []  # the calls finished before Ctrl-C were reused, not sent again
    with reg.reading() as s:
        ok_after = {(c.run_id, c.request_digest) for c in s.query(Call).filter(Call.state == "ok")}
    assert ok_before < ok_after and len(ok_after) == 6
    with reg.reading() as s:
        assert sorted(r.status for r in s.query(Run)) == ["completed", "completed"]
