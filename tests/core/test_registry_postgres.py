"""The registry on a real PostgreSQL server (a throwaway cluster on loopback), and on a blank SQLite file."""

from __future__ import annotations

from pathlib import Path

from image_gen import api
from image_gen.store.registry import HEAD_REVISION, Registry

# ``postgres_url`` (a fresh database on a throwaway server) comes from tests/conftest.py


def test_staged_run_on_postgres(postgres_url: str, ws_path: Path) -> None:
    from sqlalchemy import text

    cfg = {"registry_url": postgres_url, "pipeline": {"stages": ["draft:ideogram-v1-turbo", "final:sd3.5-medium"],
                                                      "width": 256, "height": 256},
           "stage": {"draft": {"seed": 3000000000}}}
    out = api.run_pipeline(cfg, 'Sparkling water can, label "FIZZ LIME"', simulate=True, workspace=ws_path)
    assert not isinstance(out, list)
    assert out.status == "completed"
    reg = Registry(postgres_url)
    try:
        run = reg.get_run(out.run_id)
        assert run is not None and run.status == "completed"
        stages = reg.stage_runs(out.run_id)
        assert stages[0].seed == 3000000000  # seeds beyond 2**31 fit (BIGINT)
        with reg.engine.connect() as conn:
            assert conn.execute(text("select version_num from alembic_version")).scalar() == HEAD_REVISION
        assert reg.list_runs(search="fizz")[0].id == out.run_id
    finally:
        reg.close()
    assert not (ws_path / ".image-gen" / "registry.db").exists()


def test_blank_sqlite_is_migrated_to_head(tmp_path: Path) -> None:
    from sqlalchemy import inspect, text

    reg = Registry.for_path(tmp_path / "r.db")
    try:
        with reg.engine.connect() as conn:
            assert conn.execute(text("select version_num from alembic_version")).scalar() == HEAD_REVISION
            assert conn.execute(text("pragma journal_mode")).scalar() == "wal"
        names = set(inspect(reg.engine).get_table_names())
        assert {"runs", "stage_runs", "calls", "artifacts", "metrics", "approvals", "cache_entries"} <= names
    finally:
        reg.close()
