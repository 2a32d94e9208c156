from __future__ import annotations

import json
from pathlib import Path

import pytest

from image_gen.qa.calibrate import blur
from tests.core.helpers import run_captured


@pytest.fixture
def files(tmp_path: Path, render) -> dict[str, Path]:
    good = render(["AQUA PURE"], size=(640, 640), seed=21)
    typo = render(["AQUA PUE"], size=(640, 640), seed=22)
    out = {"good": tmp_path / "good.png", "typo": tmp_path / "typo.png", "soft": tmp_path / "soft.png"}
    good.save(out["good"])
    typo.save(out["typo"])
    blur(good, 2.5).save(out["soft"])
    return out


def test_all_pass_exit_0_with_json_verdicts(files, capsys):
    code, out, _ = run_captured(
        ["qa", str(files["good"]), "--expect-text", "AQUA PURE", "--size", "640x640", "--json"], capsys
    )
    assert code == 0
    (verdict,) = json.loads(out)["images"]
    assert verdict["image"] == str(files["good"]) and verdict["passed"] is True
    assert verdict["scores"]["text_exact_match"] == 1.0


def test_any_failure_exits_1_with_reasons_per_image(files, capsys):
    argv = ["qa", str(files["good"]), str(files["typo"]), str(files["soft"]), "--prompt", 'label "AQUA PURE"']
    code, out, _ = run_captured(argv, capsys)
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith(f"pass {files['good']}")
    typo_at = next(i for i, ln in enumerate(lines) if ln.startswith(f"fail {files['typo']}"))
    assert lines[typo_at + 1].startswith('  - label "AQUA PURE" read as')
    soft_at = next(i for i, ln in enumerate(lines) if ln.startswith(f"fail {files['soft']}"))
    assert any("soft focus" in ln for ln in lines[soft_at + 1 :])
    assert lines[-1] == "1/3 passed"


def test_wrong_size_fails(files, capsys):
    code, out, _ = run_captured(["qa", str(files["good"]), "--no-text", "--size", "1024x1024", "--json"], capsys)
    assert code == 1
    (verdict,) = json.loads(out)["images"]
    assert verdict["details"]["failed_checks"] == ["size"]


@pytest.mark.parametrize("kind", ["missing", "unreadable"])
def test_bad_image_exits_2_naming_the_file(files, tmp_path, capsys, kind):
    bad = tmp_path / ("nope.png" if kind == "missing" else "broken.png")
    if kind == "unreadable":
        bad.write_bytes(b"not an image at all")
    code, out, err = run_captured(["qa", str(files["good"]), str(bad)], capsys)
    assert code == 2
    assert out == ""  # nothing is checked when an input is bad
    assert err.count("\n") == 1 and str(bad) in err


def test_bad_size_option_exits_2(files, capsys):
    code, _, err = run_captured(["qa", str(files["good"]), "--size", "big"], capsys)
    assert code == 2 and "--size" in err
