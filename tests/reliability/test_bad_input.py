"""Bad input at every entry point of the CLI: exit 2, one error naming the file and the field, no traceback,
and nothing changed (the workspace tree and every registry row are the same before and after).

Each case runs in-process against one workspace that already holds a finished (simulated) run, so a command
that wrote anything (a run row, an artifact, a folder) before it noticed the bad input is caught.
"""

from __future__ import annotations

import io
import os
import sqlite3
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from tests.core.helpers import invoke

GOOD_TOML = """
name = "bad-input-suite"
[pipeline]
stages = ["draft:ideogram-v1-turbo", "final:sd3.5-medium"]
width = 256
height = 256
[pipeline.qa]
enabled = false
[stage.final]
strength = 0.4
"""

PROMPT = 'Bottle on a desk, label reads "AQUA"'


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def decompression_bomb(width: int = 40_000, height: int = 40_000) -> bytes:
    """A tiny PNG whose header claims 1.6 gigapixels (a 1-bit grey image), with a few rows of real data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * ((width + 7) // 8 + 1) * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b"")


def _png(size: tuple[int, int] = (96, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (120, 80, 40)).save(buf, "PNG")
    return buf.getvalue()


# name -> file content (str: UTF-8 text; bytes: as is)
FILES: dict[str, str | bytes] = {
    "good.toml": GOOD_TOML,
    "good.png": _png(),
    "prompts.txt": PROMPT + "\n",
    # configs: syntax
    "syntax.toml": '[pipeline\nstages = ["a:sd3.5-medium"]\n',
    "syntax.yaml": "pipeline:\n  stages: [a:sd3.5-medium\n  width: 5\n",
    "syntax.json": '{"model": "sd3.5-medium", "steps": 20,}',
    "latin1.toml": '[pipeline]\nstages = ["a:sd3.5-medium"]\nname = "caf\xe9"\n'.encode("latin-1"),
    "empty.yaml": "",
    "list.yaml": "- model: sd3.5-medium\n",
    "config.ini": "[pipeline]\nmodel = sd3.5-medium\n",
    # configs: schema
    "unknown_field.toml": '[pipeline]\nstages = ["draft:sd3.5-medium"]\n[stage.draft]\nstepz = 20\n',
    "unknown_top.yaml": "pipline:\n  stages: ['a:sd3.5-medium']\n",
    "steps_string.json": '{"model": "sd3.5-medium", "steps": "20"}',
    "steps_bool.toml": '[pipeline]\nstages = ["a:sd3.5-medium"]\nsteps = true\n',
    "steps_inf.toml": '[pipeline]\nstages = ["a:sd3.5-medium"]\nsteps = inf\n',
    "guidance_type.yaml": "pipeline:\n  stages: ['a:sd3.5-medium']\n  guidance_scale: high\n",
    "ratio_zero.toml": '[pipeline]\nstages = ["a:sd3.5-medium"]\naspect_ratio = "16:0"\n',
    "ratio_word.yaml": "pipeline:\n  stages: ['a:sd3.5-medium']\n  aspect_ratio: wide\n",
    "ratio_unquoted.yaml": "model: sd3.5-medium\naspect_ratio: 16:9\n",
    "ratio_extreme.json": '{"model": "sd3.5-medium", "aspect_ratio": "1:100"}',
    "budget_negative.toml": '[pipeline]\nstages = ["a:sd3.5-medium"]\n[budget]\nper_run_usd = -1.0\n',
    "budget_string.yaml": "pipeline:\n  stages: ['a:sd3.5-medium']\nbudget:\n  per_day_usd: ten\n",
    "timezone.toml": '[pipeline]\nstages = ["a:sd3.5-medium"]\n[budget]\ntimezone = "Mars/Olympus_Mons"\n',
    "timezone_path.json": '{"pipeline": {"stages": ["a:sd3.5-medium"]}, "budget": {"timezone": "/etc/passwd"}}',
    "model_unknown.json": '{"model": "imagen-99", "steps": 20}',
    "stage_model_unknown.toml": '[pipeline]\nstages = ["draft:ideogram-v1-turbo", "final:no-such-model"]\n',
    "stage_spec_no_model.toml": '[pipeline]\nstages = ["draft"]\n',
    "stage_spec_twice.yaml": "pipeline:\n  stages: ['a:sd3.5-medium', 'a:ideogram-v2a']\n",
    "stage_orphan.toml": '[pipeline]\nstages = ["a:sd3.5-medium"]\n[stage.b]\nsteps = 4\n',
    "stage_name.toml": '[pipeline]\nstages = ["my stage:sd3.5-medium"]\n',
    "overlap.toml": '[pipeline]\nstages = ["a:sd3.5-medium"]\n[stage.a]\ntile_size = 128\noverlap = 64\n',
    "tile_default_overlap.toml": '[pipeline]\nstages = ["a:sd3.5-medium"]\ntile_size = 64\n',
    "overlap_negative.yaml": "pipeline:\n  stages: ['a:sd3.5-medium']\nstage:\n  a:\n    overlap: -4\n",
    "strength.toml": '[pipeline]\nstages = ["a:sd3.5-medium"]\n[stage.a]\nstrength = 1.5\n',
    "steps_zero.json": '{"model": "sd3.5-medium", "steps": 0}',
    "num_images.toml": '[pipeline]\nstages = ["a:sd3.5-medium"]\n[stage.a]\nnum_images = 50\n',
    "width_zero.yaml": "model: sd3.5-medium\nwidth: 0\n",
    "retry.toml": '[pipeline]\nstages = ["a:sd3.5-medium"]\n[retry]\ninitial_s = -1.0\n',
    "adapter.toml": '[pipeline]\nstages = ["a:sd3.5-medium"]\n[stage.a]\nadapters = ["colour-match"]\n',
    "escalate.toml": '[pipeline]\nstages = ["a:sd3.5-medium"]\n[stage.a]\nescalate_to = "dall-e-9"\n',
    "base_url.toml": '[pipeline]\nstages = ["a:sd3.5-medium"]\n[providers.ideogram]\nbase_url = "ftp://example"\n',
    # prompt files
    "empty.txt": "",
    "comments.txt": "# only a comment\n\n",
    "binary.txt": _png(),
    "latin1.txt": "Caf\xe9 sign\n".encode("latin-1"),
    "object.json": '{"hero": "a bottle", "detail": "a label"}',
    "expect_int.json": '[{"prompt": "a bottle", "expect_text": 42}]',
    "prompt_number.json": '["a bottle", {"prompt": 7}]',
    "scalar.json": '"a bottle"',
    "broken.jsonl": '{"prompt": "a bottle"}\n{"prompt": \n',
    "broken.json": '[{"prompt": "a bottle"',
    # images
    "not_image.png": "this is text, not a PNG\n",
    "truncated.png": _png((256, 256))[:200],
    "bomb.png": decompression_bomb(),
}


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    names: tuple[str, ...]
    """Strings the one error message must contain: the file (where there is one) and the field."""


def _run(config: str, *extra: str) -> tuple[str, ...]:
    return ("run", "--config", f"{{d}}/{config}", "--prompt", PROMPT, "--simulate", "--workspace", "{ws}", *extra)


def _cfg(id: str, config: str, field: str, *more: str) -> Case:
    return Case(id, _run(config), (config, field, *more))


def _prompts(id: str, name: str, field: str | None, *more: str) -> Case:
    args = ("run", "--config", "{d}/good.toml", "--prompt-file", f"{{d}}/{name}", "--simulate", "--workspace", "{ws}")
    return Case(id, args, (name, *([field] if field else []), *more))


CASES = [
    # configs: files and syntax
    _cfg("config-missing", "absent.toml", "absent.toml", "not found"),
    _cfg("config-toml-syntax", "syntax.toml", "cannot parse"),
    _cfg("config-yaml-syntax", "syntax.yaml", "cannot parse"),
    _cfg("config-json-syntax", "syntax.json", "cannot parse"),
    _cfg("config-not-utf8", "latin1.toml", "UTF-8"),
    _cfg("config-yaml-empty", "empty.yaml", "top level"),
    _cfg("config-yaml-list", "list.yaml", "top level"),
    _cfg("config-wrong-extension", "config.ini", ".toml"),
    # configs: schema (TOML, YAML, JSON)
    _cfg("config-unknown-field", "unknown_field.toml", "stage.draft.stepz", "unknown field"),
    _cfg("config-unknown-top-field", "unknown_top.yaml", "pipline", "unknown field"),
    _cfg("config-steps-string", "steps_string.json", "steps", "integer"),
    _cfg("config-steps-bool", "steps_bool.toml", "pipeline.steps", "integer"),
    _cfg("config-steps-inf", "steps_inf.toml", "pipeline.steps"),
    _cfg("config-guidance-type", "guidance_type.yaml", "pipeline.guidance_scale", "number"),
    _cfg("config-ratio-zero", "ratio_zero.toml", "pipeline.aspect_ratio", "greater than 0"),
    _cfg("config-ratio-word", "ratio_word.yaml", "pipeline.aspect_ratio", "W:H"),
    _cfg("config-ratio-yaml-unquoted", "ratio_unquoted.yaml", "aspect_ratio", "quoted"),
    _cfg("config-ratio-extreme", "ratio_extreme.json", "aspect_ratio", "1:16"),
    _cfg("config-budget-negative", "budget_negative.toml", "budget.per_run_usd", "greater than or equal to 0"),
    _cfg("config-budget-string", "budget_string.yaml", "budget.per_day_usd", "number"),
    _cfg("config-timezone", "timezone.toml", "budget.timezone", "time zone"),
    _cfg("config-timezone-path", "timezone_path.json", "budget.timezone", "time zone"),
    _cfg("config-model-unknown", "model_unknown.json", "model", "imagen-99"),
    _cfg("config-stage-model-unknown", "stage_model_unknown.toml", "pipeline.stages[1]", "no-such-model"),
    _cfg("config-stage-spec-no-model", "stage_spec_no_model.toml", "pipeline.stages[0]", "no model"),
    _cfg("config-stage-spec-twice", "stage_spec_twice.yaml", "pipeline.stages[1]", "twice"),
    _cfg("config-stage-orphan", "stage_orphan.toml", "stage.b"),
    _cfg("config-stage-name", "stage_name.toml", "pipeline.stages[0]", "stage name"),
    _cfg("config-overlap-half-tile", "overlap.toml", "stage.a.overlap", "half of tile_size"),
    _cfg("config-tile-default-overlap", "tile_default_overlap.toml", "pipeline.tile_size", "default"),
    _cfg("config-overlap-negative", "overlap_negative.yaml", "stage.a.overlap"),
    _cfg("config-strength", "strength.toml", "stage.a.strength", "1"),
    _cfg("config-steps-zero", "steps_zero.json", "steps", "greater than 0"),
    _cfg("config-num-images", "num_images.toml", "stage.a.num_images", "8"),
    _cfg("config-width-zero", "width_zero.yaml", "width", "greater than 0"),
    _cfg("config-retry-negative", "retry.toml", "retry.initial_s", "greater than or equal to 0"),
    _cfg("config-adapter-unknown", "adapter.toml", "stage.a.adapters", "colour-match"),
    _cfg("config-escalate-unknown", "escalate.toml", "stage.a.escalate_to", "dall-e-9"),
    _cfg("config-base-url", "base_url.toml", "providers.ideogram.base_url", "http"),
    Case("finish-config-bad", ("finish", "{d}/good.png", "--config", "{d}/strength.toml", "--simulate",
                               "--workspace", "{ws}"), ("strength.toml", "stage.a.strength")),
    # prompt files
    _prompts("prompts-missing", "absent.txt", None, "not found"),
    _prompts("prompts-empty", "empty.txt", None, "no prompts"),
    _prompts("prompts-comments-only", "comments.txt", None, "no prompts"),
    _prompts("prompts-binary", "binary.txt", None, "binary"),
    _prompts("prompts-not-utf8", "latin1.txt", None, "UTF-8"),
    _prompts("prompts-json-object", "object.json", "detail", "unknown field"),
    _prompts("prompts-expect-text-int", "expect_int.json", "[0].expect_text", "42"),
    _prompts("prompts-prompt-number", "prompt_number.json", "[1].prompt", "7"),
    _prompts("prompts-json-scalar", "scalar.json", None, "list of briefs"),
    _prompts("prompts-jsonl-broken", "broken.jsonl", "line 2"),
    _prompts("prompts-json-broken", "broken.json", None, "cannot parse"),
    Case("generate-prompts-expect-text-int",
         ("generate", "-m", "sd3.5-medium", "--prompt-file", "{d}/expect_int.json", "--simulate", "--workspace",
          "{ws}"), ("expect_int.json", "[0].expect_text")),
    # images
    Case("qa-image-missing", ("qa", "{d}/absent.png", "--prompt", PROMPT), ("absent.png", "IMAGES", "not found")),
    Case("qa-not-an-image", ("qa", "{d}/not_image.png"), ("not_image.png", "IMAGES", "not a readable image")),
    Case("qa-truncated", ("qa", "{d}/good.png", "{d}/truncated.png"), ("truncated.png", "IMAGES")),
    Case("qa-decompression-bomb", ("qa", "{d}/bomb.png"), ("bomb.png", "IMAGES", "limit")),
    Case("finish-decompression-bomb", ("finish", "{d}/bomb.png", "--config", "{d}/good.toml", "--simulate",
                                       "--workspace", "{ws}"), ("bomb.png", "IMAGE", "limit")),
    Case("finish-truncated", ("finish", "{d}/truncated.png", "--config", "{d}/good.toml", "--simulate",
                              "--workspace", "{ws}"), ("truncated.png", "IMAGE")),
    Case("upscale-decompression-bomb", ("upscale", "{d}/bomb.png", "--simulate", "--workspace", "{ws}"),
         ("bomb.png", "IMAGE", "limit")),
    Case("upscale-not-an-image", ("upscale", "{d}/not_image.png", "--simulate", "--workspace", "{ws}"),
         ("not_image.png", "IMAGE")),
    Case("upscale-missing", ("upscale", "{d}/absent.png", "--simulate", "--workspace", "{ws}"),
         ("absent.png", "IMAGE", "not found")),
    # flags
    Case("upscale-factor", ("upscale", "{d}/good.png", "--factor", "3", "--simulate", "--workspace", "{ws}"),
         ("--factor",)),
    Case("upscale-overlap", ("upscale", "{d}/good.png", "--tile-size", "128", "--overlap", "64", "--simulate",
                             "--workspace", "{ws}"), ("--overlap",)),
    Case("upscale-out-suffix", ("upscale", "{d}/good.png", "--out", "{d}/up.gif", "--simulate", "--workspace",
                                "{ws}"), ("up.gif", "--out")),
    Case("qa-size", ("qa", "{d}/good.png", "--size", "0x64"), ("--size",)),
    Case("generate-aspect-ratio", ("generate", "-m", "sd3.5-medium", "--aspect-ratio", "16:0", "-p", PROMPT,
                                   "--simulate", "--workspace", "{ws}"), ("aspect_ratio", "greater than 0")),
    Case("generate-tile-overlap", ("generate", "-m", "sd3.5-medium", "--tile-size", "64", "-p", PROMPT,
                                   "--simulate", "--workspace", "{ws}"), ("tile_size", "overlap")),
    Case("generate-steps", ("generate", "-m", "sd3.5-medium", "--steps", "0", "-p", PROMPT, "--simulate",
                            "--workspace", "{ws}"), ("--steps",)),
    Case("run-concurrency", _run("good.toml", "--concurrency", "0"), ("--concurrency",)),
    Case("generate-model-unknown", ("generate", "-m", "imagen-99", "-p", PROMPT, "--simulate", "--workspace",
                                    "{ws}"), ("model", "imagen-99")),
]


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bad-input files and a workspace holding one finished simulated run (made in a child process, so every
    registry connection is closed before the cases run)."""
    d = tmp_path_factory.mktemp("bad-input")
    for name, content in FILES.items():
        path = d / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    ws = d / "ws"
    ws.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2] / "src"), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "image_gen.cli", "run", "--config", str(d / "good.toml"), "--prompt", PROMPT,
         "--simulate", "--workspace", str(ws)],
        capture_output=True, text=True, timeout=300, env=env, cwd=d,
    )
    assert done.returncode == 0, done.stderr
    registry_rows(ws)  # the first reader creates SQLite's (empty) WAL file; from here on reads change nothing
    return d


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root``: size and modification time (SQLite's shared-memory index, which
    readers touch, left out)."""
    out: dict[str, tuple[int, int]] = {}
    for path in sorted(root.rglob("*")):
        if path.name.endswith("-shm"):
            continue
        st = path.stat()
        out[str(path.relative_to(root))] = (st.st_size if path.is_file() else 0, st.st_mtime_ns)
    return out


def registry_rows(ws: Path) -> dict[str, list[tuple[object, ...]]]:
    db = ws / ".image-gen" / "registry.db"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type = 'table' order by name")]
        return {t: sorted(con.execute(f"select * from {t}").fetchall(), key=repr) for t in tables}
    finally:
        con.close()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_exits_2_with_one_error_and_changes_nothing(
    case: Case, suite_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = suite_dir / "ws"
    monkeypatch.chdir(suite_dir)  # a stray write into the current folder shows in the tree too
    monkeypatch.setenv("IMAGE_GEN_HOME", str(suite_dir / "home"))
    argv = [a.replace("{d}", str(suite_dir)).replace("{ws}", str(ws)) for a in case.args]
    before_tree, before_rows = tree(suite_dir), registry_rows(ws)
    assert sum(len(r) for r in before_rows.values()) > 0

    res = invoke(*argv)

    assert res.code == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    errors = [line for line in res.stderr.splitlines() if line.lower().startswith("error:")]
    assert len(errors) == 1, res.stderr
    for name in case.names:
        assert name in res.stderr, f"{name!r} not in: {res.stderr}"
    assert tree(suite_dir) == before_tree
    assert registry_rows(ws) == before_rows


def test_cases_cover_every_kind_of_input() -> None:
    kinds = {c.id.split("-")[0] for c in CASES}
    assert {"config", "prompts", "qa", "finish", "upscale", "generate", "run"} <= kinds
    assert len(CASES) >= 30
    suffixes = {Path(a).suffix for c in CASES for a in c.args if a.startswith("{d}/")}
    assert {".toml", ".yaml", ".json", ".jsonl", ".txt", ".png"} <= suffixes


def test_decompression_bomb_through_the_installed_command(suite_dir: Path) -> None:
    """The real process: exit 2, one line on stderr, no traceback (not only the in-process mapping)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    proc = subprocess.run([sys.executable, "-m", "image_gen.cli", "qa", str(suite_dir / "bomb.png")],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "bomb.png" in proc.stderr


@pytest.mark.parametrize("entry", ["generate_pipeline", "upscale_image"])
def test_api_user_image_entry_points_raise_input_error(entry: str, suite_dir: Path, tmp_path: Path) -> None:
    from image_gen import api
    from image_gen.errors import InputError

    bomb = str(suite_dir / "bomb.png")
    with pytest.raises(InputError) as info:
        if entry == "generate_pipeline":
            api.generate_pipeline(bomb, {"model": "sd3.5-medium", "upscale": "2x"}, simulate=True,
                                  workspace=tmp_path / "ws")
        else:
            api.upscale_image(bomb, simulate=True, workspace=tmp_path / "ws")
    assert info.value.exit_code == 2 and info.value.file == bomb
    assert not (tmp_path / "ws").exists()
