"""``batch submit|status|list|cancel|resume``: briefs submitted together, recorded first, resumable anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from image_gen.cli._common import emit_json, json_option, workspace_option


@click.group()
def batch() -> None:
    """Submit a prompt file as a batch, follow it, cancel it, resume it after a crash."""


def _executor_options(f: Any) -> Any:
    f = click.option("--concurrency", type=click.IntRange(1, 256),
                     help="Briefs run at once (default: the config's concurrency, 1).")(f)
    f = click.option("--address", help="Ray cluster address for --executor ray: auto or ray://host:port.")(f)
    return click.option("--executor", type=click.Choice(["local", "ray"]),
                        help="Where briefs run: local threads (default) or a Ray cluster (extra [ray]).")(f)


def _line(st: Any) -> str:
    eta = "-" if st.eta_s is None else f"{st.eta_s:.0f}s"
    return (f"batch {st.batch_id}: {st.done}/{st.total} done, {st.failed} failed, {st.remaining} left, "
            f"${st.spend_usd:.4f}, ETA {eta}")


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[Any], None] | None]:
    """A rich progress bar on a terminal (done, failed, left, spend, ETA); otherwise one plain line per change."""
    if not enabled:
        yield None
        return
    if not sys.stderr.isatty():
        def plain(st: Any) -> None:
            sys.stderr.write(_line(st) + "\n")
            sys.stderr.flush()

        yield plain
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from image_gen.cli._render import console

    with Progress(TextColumn("batch {task.fields[bid]}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console(stderr=True),
                  transient=False) as bar:
        task = bar.add_task("batch", total=None, bid="", info="")

        def update(st: Any) -> None:
            eta = "-" if st.eta_s is None else f"{st.eta_s:.0f}s"
            bar.update(task, total=st.total, completed=st.done + st.failed, bid=st.batch_id,
                       info=f"{st.failed} failed, {st.remaining} left, ${st.spend_usd:.4f}, ETA {eta}")

        yield update


def _print_status(st: Any, as_json: bool) -> None:
    if as_json:
        emit_json(st.to_dict())
        return
    from rich.table import Table

    from image_gen.cli._common import qa_word
    from image_gen.cli._render import console

    click.echo(_line(st) + f" [{st.status}]" + (" (simulated)" if st.simulated else ""))
    if st.items:
        table = Table("#", "status", "run", "cost", "QA", "prompt")
        for it in st.items:
            table.add_row(str(it["idx"]), it["status"], it["run_id"] or "-", f"${it['cost_usd']:.4f}",
                          qa_word(it["qa_passed"]), it["prompt"][:60])
        console().print(table)


def _exit(st: Any) -> None:
    bad = (st.failed or st.errors or st.status == "cancelled" or st.counts.get("rejected")
           or st.counts.get("interrupted"))
    sys.exit(1 if bad else 0)


def _run(ws: Any, batch_id: str, *, executor: str | None, address: str | None, concurrency: int | None,
         as_json: bool) -> None:
    from image_gen import api

    try:
        with _progress(True) as progress:
            st = api.run_batch(batch_id, workspace=ws, executor=executor, address=address, concurrency=concurrency,
                               progress=progress)
    except KeyboardInterrupt:
        click.echo(f"interrupted; finish with: image-gen batch resume {batch_id}", err=True)
        sys.exit(130)
    from image_gen.pipeline.batch import status

    errors = st.errors
    st = status(ws.registry(), st.batch_id, with_items=True)
    st.errors = errors
    _print_status(st, as_json)
    for e in errors:
        click.echo(f"error: {e} (details in {ws.state_dir / 'image-gen.log'})", err=True)
    _exit(st)


def _detach(ws: Any, batch_id: str, *, executor: str | None, address: str | None,
            concurrency: int | None) -> dict[str, Any]:
    """Start ``image-gen batch resume ID`` as a background process in a session of its own; its pid and log."""
    log_dir = ws.state_dir / "batches"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{batch_id}.log"
    argv = [sys.executable, "-m", "image_gen.cli", "batch", "resume", batch_id, "--workspace", str(ws.root)]
    if executor:
        argv += ["--executor", executor]
    if address:
        argv += ["--address", address]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    env = dict(os.environ)
    if ws.registry_url:  # through the environment, never the command line (ps shows that)
        env["IMAGE_GEN_REGISTRY_URL"] = ws.registry_url
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                start_new_session=True, cwd=str(ws.root) if ws.root.is_dir() else None)
    return {"pid": proc.pid, "log": str(log_path)}


@batch.command()
@click.option("--config", "config_path", type=click.Path(), help="Pipeline config (TOML, YAML or JSON); "
              "default: the workspace's image-gen.toml.")
@click.option("--prompt-file", required=True, type=click.Path(),
              help="Briefs: one prompt per line, or CSV (prompt, negative_prompt, expect_text, size, seed, channel), "
                   "JSON or JSONL objects with those fields.")
@click.option("--name", help="A name for the batch.")
@click.option("--simulate", is_flag=True, help="Run every stage on its simulated twin (offline, no key).")
@click.option("--detach", is_flag=True, help="Record the batch, start a background worker and return at once.")
@_executor_options
@workspace_option
@json_option
def submit(config_path: str | None, prompt_file: str, name: str | None, simulate: bool, detach: bool,
           executor: str | None, address: str | None, concurrency: int | None, workspace: str | None,
           registry_url: str | None, as_json: bool) -> None:
    """Record a batch of briefs and run it (wait for it unless --detach). With --json: the batch id and status."""
    from image_gen import api
    from image_gen.cli._common import workspace_of
    from image_gen.config import load_config
    from image_gen.errors import ConfigError
    from image_gen.pipeline.executors import check_executor

    if config_path is None:
        found = workspace_of(workspace, registry_url).default_config()
        if found is None:
            raise ConfigError("no --config given and no image-gen.toml in the workspace", field="--config")
        config_path = str(found)
    cfg = load_config(config_path)
    briefs = api.read_prompt_file(prompt_file)
    check_executor(executor or "local", address)  # an unknown executor, a missing extra: bad input, nothing written
    ws = workspace_of(workspace, registry_url, cfg.registry_url)
    batch_id = api.submit_batch(config_path, briefs, name=name, workspace=ws,
                                simulate=simulate or None, executor=executor or "local")
    if detach:
        worker = _detach(ws, batch_id, executor=executor, address=address, concurrency=concurrency)
        if as_json:
            emit_json({"batch_id": batch_id, "status": "pending", "total": len(briefs), "detached": True, **worker})
        else:
            click.echo(f"batch {batch_id}: {len(briefs)} briefs submitted; worker pid {worker['pid']} "
                       f"(log {worker['log']}); follow with: image-gen batch status {batch_id}")
        return
    if not as_json:
        click.echo(f"batch {batch_id}: {len(briefs)} briefs submitted", err=True)
    _run(ws, batch_id, executor=executor, address=address, concurrency=concurrency, as_json=as_json)


def _existing(workspace: str | None, registry_url: str | None) -> Any:
    from image_gen.cli._common import existing_workspace

    return existing_workspace(workspace, registry_url)


@batch.command()
@click.argument("batch_id", metavar="BATCH")
@workspace_option
@json_option
def status(batch_id: str, workspace: str | None, registry_url: str | None, as_json: bool) -> None:
    """A batch's counts per state, spend so far, ETA and items."""
    from image_gen import api

    _print_status(api.batch_status(batch_id, workspace=_existing(workspace, registry_url)), as_json)


@batch.command(name="list")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@workspace_option
@json_option
def list_(limit: int, workspace: str | None, registry_url: str | None, as_json: bool) -> None:
    """Batches, newest first."""
    from image_gen import api

    rows = api.list_batches(workspace=_existing(workspace, registry_url), limit=limit)
    if as_json:
        emit_json({"batches": [r.to_dict() for r in rows]})
        return
    if not rows:
        click.echo("no batches")
    for r in rows:
        click.echo(f"{r.batch_id}  {r.status:<10} {r.done}/{r.total} done  {r.failed} failed  ${r.spend_usd:.4f}  "
                   f"{r.created_at}  {r.name or ''}")


@batch.command()
@click.argument("batch_id", metavar="BATCH")
@click.option("--note", help="Why (recorded).")
@workspace_option
@json_option
def cancel(batch_id: str, note: str | None, workspace: str | None, registry_url: str | None, as_json: bool) -> None:
    """Cancel a batch: unstarted briefs never start; running ones stop before their next call."""
    from image_gen import api

    st = api.cancel_batch(batch_id, note, workspace=_existing(workspace, registry_url))
    _print_status(st, as_json)


@batch.command()
@click.argument("batch_id", metavar="BATCH")
@_executor_options
@workspace_option
@json_option
def resume(batch_id: str, executor: str | None, address: str | None, concurrency: int | None,
           workspace: str | None, registry_url: str | None, as_json: bool) -> None:
    """Run a batch's unfinished briefs (after a crash, Ctrl-C or failures); no finished call is paid again."""
    from image_gen.pipeline.batch import find_batch

    ws = _existing(workspace, registry_url)
    bid = find_batch(ws.registry(), batch_id).id
    _run(ws, bid, executor=executor, address=address, concurrency=concurrency, as_json=as_json)
