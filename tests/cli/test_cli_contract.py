"""What a user sees is true: JSON shapes and errors, read-only commands, global options, tables at 80 columns,
one word for QA, runs filters, config check on retired models, models --all, estimates that spend nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import fast_config
from tests.core.helpers import db_rows, invoke, write

GATED = """
name = "gated"
[pipeline]
stages = ["draft:ideogram-v1-turbo", "hires:imagen4"]
width = 256
height = 256
on_retired = "successor"
qa = { enabled = false }
[stage.hires]
gate = "approval"
[sim]
fail_rate = 0.0
"""

PROMPT = 'A very long prompt about an olive oil tin on a marble counter in morning light, label "GOLDEN GROVE"'


def tree(p: Path) -> list[str]:
    return sorted(str(x.relative_to(p)) for x in p.rglob("*")) if p.exists() else []


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One workspace with two runs: one waiting at a gate (gated pipeline), one completed (fast pipeline)."""
    tmp = tmp_path_factory.mktemp("contract")
    ws = tmp / "ws"
    ws.mkdir()
    gated = write(tmp / "gated.toml", GATED)
    r1 = invoke("run", "--config", str(gated), "--prompt", PROMPT, "--simulate", "--workspace", str(ws), "--json")
    assert r1.code == 0, r1.stderr
    r2 = invoke("--json", "--workspace", str(ws), "run", "--config", str(fast_config(tmp)), "--prompt",
                'Coffee bag, label "DARK"', "--simulate")
    assert r2.code == 0, r2.stderr
    return {"ws": ws, "gated": r1.json()["runs"][0], "fast": r2.json()["runs"][0], "tmp": tmp}


def test_json_top_level_is_an_object_for_every_command(made: dict[str, Any]) -> None:
    ws = str(made["ws"])
    rid = made["gated"]["run_id"]
    shapes = {
        ("runs", "list"): "runs",
        ("runs", "compare", rid, made["fast"]["run_id"]): "runs",
        ("models",): "models",
        ("providers",): "providers",
        ("keys", "list"): "keys",
        ("keys", "path"): "path",
        ("run", "--config", str(made["tmp"] / "gated.toml"), "--prompt", "x", "--simulate", "--estimate"):
            "estimate",
    }
    for args, key in shapes.items():
        r = invoke(*args, "--workspace", ws, "--json")
        assert r.code == 0, (args, r.stderr)
        data = r.json()
        assert isinstance(data, dict) and key in data, (args, data)
    for args in (("runs", "show", rid), ("runs", "latest")):
        data = invoke(*args, "--workspace", ws, "--json").json()
        assert isinstance(data, dict) and data["run_id"] and isinstance(data["stages"], list)
    assert invoke("runs", "latest", "--workspace", ws, "--json").json()["run_id"] == made["fast"]["run_id"]


def test_json_errors_are_objects_on_stderr_with_exit_codes_kept(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.toml", '[pipeline]\nstages = ["draft:ideogram-v1-turbo"]\nsteps = "many"\n')
    r = invoke("config", "check", str(bad), "--json")
    assert r.code == 2 and r.stdout == ""
    err = json.loads(r.stderr)["error"]
    assert set(err) >= {"kind", "message", "file", "field"} and err["file"] == str(bad)
    r = invoke("--json", "runs", "show", "abc", "--workspace", str(tmp_path / "nowhere"))
    assert r.code == 2 and json.loads(r.stderr)["error"]["field"] == "--workspace"
    r = invoke("runs", "list", "--limit", "zero", "--json")
    assert r.code == 2 and json.loads(r.stderr)["error"]["kind"] == "usage"
    plain = invoke("runs", "list", "--workspace", str(tmp_path / "nowhere"))
    assert plain.code == 2 and plain.stderr.startswith("error: ")


def test_read_only_commands_and_bad_input_create_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = tmp_path / "missing"
    for args in (("runs", "list"), ("runs", "show", "abc"), ("runs", "latest"), ("runs", "compare", "a", "b"),
                 ("approve", "abc"), ("reject", "abc", "--note", "no"), ("resume", "abc")):
        for ws in (empty, missing):
            r = invoke(*args, "--workspace", str(ws))
            assert r.code == 2, (args, r.stderr)
            assert tree(empty) == [] and not missing.exists(), args


def test_unknown_run_in_a_real_registry_changes_nothing(made: dict[str, Any]) -> None:
    before = db_rows(made["ws"])
    for args in (("runs", "show", "nope"), ("approve", "nope"), ("resume", "nope"), ("reject", "nope", "--note", "x")):
        r = invoke(*args, "--workspace", str(made["ws"]))
        assert r.code == 2 and "nope" in r.stderr
    assert db_rows(made["ws"]) == before


def test_global_options_before_or_after_the_command(made: dict[str, Any]) -> None:
    ws = str(made["ws"])
    after = invoke("runs", "list", "--workspace", ws, "--json").json()
    before = invoke("--workspace", ws, "--json", "runs", "list").json()
    assert after == before and len(after["runs"]) == 2
    for args in (("models",), ("providers",), ("config", "schema"), ("keys", "path"), ("qa", "--help"),
                 ("config", "check", str(made["tmp"] / "gated.toml"))):
        r = invoke(*args, "--workspace", ws, "--registry-url", "sqlite:///nothing.db", "--json")
        assert r.code == 0, (args, r.stderr)
    url = f"sqlite:///{made['ws'] / '.image-gen' / 'registry.db'}"
    by_url = invoke("--registry-url", url, "runs", "list", "--json", "--workspace", str(made["tmp"]))
    assert by_url.code == 0 and len(by_url.json()["runs"]) == 2


def test_tables_keep_ids_models_and_statuses_whole_at_80_columns(made: dict[str, Any], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    ws = str(made["ws"])
    gated, fast = made["gated"], made["fast"]
    listing = invoke("runs", "list", "--workspace", ws)
    compare = invoke("runs", "compare", gated["run_id"], fast["run_id"], "--workspace", ws)
    shown = invoke("runs", "show", gated["run_id"], "--workspace", ws)
    rerun = invoke("run", "--config", str(made["tmp"] / "gated.toml"), "--prompt", PROMPT, "--simulate",
                   "--workspace", str(tmp_path))
    models = invoke("models", "--all")
    for r in (listing, compare, shown, rerun, models):
        assert r.code == 0, r.stderr
        assert all(len(line) <= 80 for line in r.stdout.splitlines()), r.stdout
    for word in (gated["run_id"], fast["run_id"], "awaiting_approval", "completed"):
        assert word in listing.stdout and word in compare.stdout
    for word in ("sim:ideogram-v1-turbo", "sim:gemini-3-pro-image", "awaiting_approval"):
        assert word in rerun.stdout and word in compare.stdout
    assert "gemini-3-pro-image" in models.stdout and "imagen-4" in models.stdout
    assert "None" not in shown.stdout and "NonexNone" not in shown.stdout


def test_one_word_for_a_qa_result(made: dict[str, Any]) -> None:
    ws = str(made["ws"])
    texts = [invoke(*a, "--workspace", ws).stdout for a in (("runs", "list"), ("runs", "show", made["gated"]["run_id"]),
                                                           ("runs", "compare", made["gated"]["run_id"]))]
    for text in texts:
        assert "True" not in text and "False" not in text and "None" not in text and "FAIL" not in text


def test_runs_list_filters(made: dict[str, Any]) -> None:
    ws = str(made["ws"])

    def ids(*args: str) -> list[str]:
        r = invoke("runs", "list", *args, "--workspace", ws, "--json")
        assert r.code == 0, r.stderr
        return [x["run_id"] for x in r.json()["runs"]]

    gated, fast = made["gated"]["run_id"], made["fast"]["run_id"]
    assert ids() == [fast, gated]
    assert ids("-n", "1") == [fast]
    assert ids("--status", "awaiting_approval") == [gated]
    assert ids("--model", "imagen4") == [] and ids("--model", "gemini-3-pro-image") == [gated]
    assert ids("--model", "sd3.5-medium") == [fast]
    assert ids("--config", "gated") == [gated] and ids("--config", "fast") == [fast]
    assert ids("--search", "olive marble") == [gated]
    assert ids("--since", "1h") == [fast, gated] and ids("--since", "2999-01-01") == []
    bad = invoke("runs", "list", "--since", "yesterday-ish", "--workspace", ws)
    assert bad.code == 2 and "--since" in bad.stderr


def test_config_check_tells_the_truth_about_retired_models(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    staged = invoke("config", "check", str(repo / "examples" / "staged.toml"), "--json").json()
    assert staged["warnings"] == []
    hires = next(s for s in staged["stages"] if s["stage"] == "hires")
    assert hires["model"] == "gemini-3-pro-image" and "successor" in hires["note"]
    fails = write(tmp_path / "fails.toml", GATED.replace('on_retired = "successor"\n', ""))
    (warning,) = invoke("config", "check", str(fails), "--json").json()["warnings"]
    assert "imagen-4" in warning and "gemini-3-pro-image" in warning


def test_models_lists_active_by_default_and_all_with_retired() -> None:
    active = {m["id"] for m in invoke("models", "--json").json()["models"]}
    everything = {m["id"]: m for m in invoke("models", "--all", "--json").json()["models"]}
    assert "imagen-4" not in active and everything["imagen-4"]["retired"]
    assert active < set(everything) and all(not everything[i]["retired"] for i in active)


def test_generate_help_shows_no_default_that_fails() -> None:
    r = invoke("generate", "--help")
    assert r.code == 0 and "staged-selection" not in r.stdout
    assert invoke("generate", "--prompt", "x", "--simulate").code == 2


def test_estimate_counts_tiles_and_spends_nothing(tmp_path: Path) -> None:
    from PIL import Image

    ws = tmp_path / "ws"
    ws.mkdir()
    img = tmp_path / "photo.png"
    Image.new("RGB", (1024, 1024), (200, 120, 40)).save(img)
    r = invoke("upscale", str(img), "--factor", "2", "--model", "sd3.5-medium", "--tile-size", "512",
               "--overlap", "32", "--out", str(tmp_path / "big.png"), "--simulate", "--estimate", "--workspace",
               str(ws), "--json")
    assert r.code == 0, r.stderr
    est = r.json()["estimate"]
    # 2048 px with tiles of 512 overlapping by 32: ceil((2048 - 32) / 480) = 5 per side, 25 tiles
    assert est["calls"] == 25 and est["cost_usd"] == pytest.approx(25 * 0.035)
    gated = write(tmp_path / "gated.toml", GATED)
    run = invoke("run", "--config", str(gated), "--prompt", "a", "--prompt", "b", "--simulate", "--estimate",
                 "--workspace", str(ws), "--json").json()["estimate"]
    assert run["briefs"] == 2 and run["calls"] == 2 * run["calls_per_brief"]
    assert [s["stage"] for s in run["stages"]] == ["draft", "hires"] and run["stages"][1]["gate"] == "approval"
    assert run["after_gate_cost_usd"] == pytest.approx(2 * run["stages"][1]["cost_usd"])
    text = invoke("finish", str(img), "--config", str(gated), "--simulate", "--estimate", "--workspace", str(ws))
    assert text.code == 0 and "total:" in text.stdout
    assert tree(ws) == [] and not (tmp_path / "big.png").exists()


def test_upscale_announces_its_calls_before_it_starts(tmp_path: Path) -> None:
    from PIL import Image

    img = tmp_path / "photo.png"
    Image.new("RGB", (256, 256), (200, 120, 40)).save(img)
    r = invoke("upscale", str(img), "--tile-size", "256", "--overlap", "32", "--simulate", "--out",
               str(tmp_path / "big.png"), "--json")
    assert r.code in (0, 1), r.stderr
    head = r.stderr.splitlines()[0]
    assert head.startswith("upscale: 9 calls, about $0.3150"), r.stderr
    assert r.json()["run"]["provider_calls"] == 9


def test_a_registry_url_naming_no_database_is_bad_input_for_readers(tmp_path: Path) -> None:
    db = tmp_path / "none.db"
    r = invoke("runs", "list", "--registry-url", f"sqlite:///{db}", "--json")
    assert r.code == 2 and json.loads(r.stderr)["error"]["field"] == "--registry-url"
    assert not db.exists()
