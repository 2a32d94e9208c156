"""The executor interface: a BriefJob is plain and picklable; run_job is safe to call again for the same job (it
resumes or returns the item's one run, paying nothing twice); executors are chosen by name."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from image_gen import api
from image_gen.errors import InputError
from image_gen.pipeline.batch import forget_contexts, jobs_for
from image_gen.pipeline.executors import BriefJob, LocalExecutor, check_executor, get_executor, run_job
from image_gen.workspace import Workspace
from tests.batch._support import prompts, rows, sim_config, sqlite_url


def test_run_job_twice_runs_the_item_once(tmp_path: Path, ws_path: Path) -> None:
    bid = api.submit_batch(sim_config(tmp_path), prompts(tmp_path, 2), workspace=ws_path, simulate=True)
    ws = Workspace.resolve(ws_path)
    from image_gen.pipeline.batch import find_batch

    jobs = jobs_for(ws, find_batch(ws.registry(), bid))
    assert [j.idx for j in jobs] == [0, 1]
    job = pickle.loads(pickle.dumps(jobs[0]))
    assert job == jobs[0] and job.simulate is True and job.workspace == str(ws_path.resolve())
    try:
        first = run_job(job)
        url = sqlite_url(ws_path)
        calls = rows(url, "select count(*) from calls")[0][0]
        again = run_job(BriefJob(bid, 0, str(ws_path), None, simulate=True))  # a retried task, another process
    finally:
        forget_contexts(bid)
    assert first["status"] == "completed" and first["item_status"] == "completed" and first["idx"] == 0
    assert again["run_id"] == first["run_id"] and rows(url, "select count(*) from calls")[0][0] == calls
    assert rows(url, "select count(*) from runs") == [(1,)]


def test_local_executor_reports_every_job(tmp_path: Path, ws_path: Path) -> None:
    bid = api.submit_batch(sim_config(tmp_path), prompts(tmp_path, 3), workspace=ws_path, simulate=True)
    done: dict[int, object] = {}
    bad = BriefJob(bid, 99, str(ws_path), None, simulate=True)  # no such item: an exception, handed to on_done
    jobs = [BriefJob(bid, i, str(ws_path), None, simulate=True) for i in range(3)] + [bad]
    try:
        LocalExecutor().run(jobs, concurrency=2, on_done=lambda j, r: done.__setitem__(j.idx, r))
    finally:
        forget_contexts(bid)
    assert sorted(done) == [0, 1, 2, 99]
    assert all(isinstance(done[i], dict) and done[i]["status"] == "completed" for i in range(3))  # type: ignore
    assert isinstance(done[99], InputError)


def test_executor_names() -> None:
    assert get_executor("local").name == "local"
    with pytest.raises(InputError) as err:
        get_executor("dask")
    assert err.value.field == "--executor"
    with pytest.raises(InputError):
        check_executor("local", "ray://head:10001")


def test_gated_briefs_wait_and_the_batch_completes_once_approved(tmp_path: Path, ws_path: Path) -> None:
    from tests.batch._support import write

    cfg = write(tmp_path / "gated.toml", '[pipeline]\nstages = ["draft:ideogram-v1-turbo", "hires:imagen-4"]\n'
                                         'width = 64\nheight = 64\n[pipeline.qa]\nenabled = false\n'
                                         '[stage.hires]\ngate = "approval"\n[sim]\nlatency_scale = 0\n')
    bid = api.submit_batch(cfg, prompts(tmp_path, 2), workspace=ws_path, simulate=True)
    st = api.run_batch(bid, workspace=ws_path)
    assert st.status == "awaiting_approval" and st.counts == {"awaiting_approval": 2} and st.failed == 0
    for item in api.batch_status(bid, workspace=ws_path).items:
        assert api.approve(item["run_id"], workspace=ws_path).status == "completed"
    assert api.batch_status(bid, workspace=ws_path).counts == {"completed": 2}  # items read their runs' state
    calls = rows(sqlite_url(ws_path), "select count(*) from calls")
    assert api.run_batch(bid, workspace=ws_path).status == "completed"
    assert rows(sqlite_url(ws_path), "select count(*) from calls") == calls


@pytest.mark.slow
def test_run_job_in_another_process(tmp_path: Path, ws_path: Path) -> None:
    """What a remote executor does: the job crosses a process boundary (pickled), the worker opens the registry
    itself and runs the brief; the result comes back as plain data."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    bid = api.submit_batch(sim_config(tmp_path), prompts(tmp_path, 1), workspace=ws_path, simulate=True)
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        out = pool.submit(run_job, BriefJob(bid, 0, str(ws_path), None, simulate=True)).result(timeout=120)
    assert out["status"] == "completed" and out["item_status"] == "completed"
    assert rows(sqlite_url(ws_path), "select status, run_id from batch_items") == [("completed", out["run_id"])]
