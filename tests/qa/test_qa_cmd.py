from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.core.helpers import run_captured
from tools.calibrate_qa import blur


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


def _save(img, path: Path, meta: dict | None = None, parameters: str | None = None) -> Path:
    from PIL.PngImagePlugin import PngInfo

    from image_gen.store.artifacts import encode_with_metadata

    if meta is not None:
        path.write_bytes(encode_with_metadata(img, meta))
    else:
        info = PngInfo()
        if parameters is not None:
            info.add_text("parameters", parameters)
        img.save(path, pnginfo=info)
    return path


def test_extra_text_at_the_label_fails_the_issue_case(tmp_path, render, capsys):
    path = _save(render(["STRIDE ONE E"], seed=31), tmp_path / "extra.png")
    code, out, _ = run_captured(["qa", str(path), "--expect-text", "STRIDE ONE"], capsys)
    assert code == 1, out
    lines = out.splitlines()
    assert lines[0].startswith(f"fail {path}") and "text similarity 1.00" in lines[0]
    prefix = '  - extra text at label "STRIDE ONE": read "'
    assert lines[1].startswith(prefix) and "(precision 0." in lines[1] and "similarity 1.00)" in lines[1]
    read = lines[1][len(prefix) :].split('" there')[0]
    assert read.replace(" ", "").upper() == "STRIDEONEE"  # OCR may or may not keep the spaces
    assert lines[2] == '  expected text "STRIDE ONE" given'


@pytest.mark.parametrize("chunk", ["image-gen", "parameters"])
def test_without_expect_text_the_embedded_prompt_is_used_and_named(tmp_path, render, capsys, chunk):
    prompt = "a bottle labelled “AQUA PURE”, don't crop"
    good, typo = render(["AQUA PURE"], seed=21), render(["AQUA PUE"], seed=22)
    if chunk == "image-gen":
        meta = {"prompt": prompt, "seed": 1, "model": "sim:ideogram-v2a", "simulated": True}
        files = [_save(good, tmp_path / "good.png", meta), _save(typo, tmp_path / "typo.png", meta)]
    else:  # another tool's PNG: only the A1111 parameters chunk
        params = f"{prompt}\nSteps: 20, Seed: 1"
        files = [_save(good, tmp_path / "good.png", parameters=params),
                 _save(typo, tmp_path / "typo.png", parameters=params)]
    code, out, _ = run_captured(["qa", *map(str, files), "--json"], capsys)
    assert code == 1
    good_v, typo_v = json.loads(out)["images"]
    assert good_v["passed"] is True and typo_v["passed"] is False
    for v in (good_v, typo_v):
        expected = v["details"]["expected"]
        assert expected["source"] == "embedded_prompt" and expected["chunk"] == chunk
        assert expected["texts"] == ["AQUA PURE"] and expected["prompt"] == prompt
    code, out, _ = run_captured(["qa", str(files[0])], capsys)
    assert code == 0
    assert f'  expected text "AQUA PURE" from the prompt embedded in the image ({chunk} chunk)' in out.splitlines()


def test_with_no_expected_text_anywhere_the_skip_is_said(tmp_path, render, capsys):
    path = _save(render(["AQUA PURE"], seed=21), tmp_path / "plain.png")
    code, out, _ = run_captured(["qa", str(path), "--json"], capsys)
    assert code == 0
    (v,) = json.loads(out)["images"]
    assert "text" not in v["details"] and "text_similarity_min" not in v["scores"]
    assert v["details"]["expected"]["source"] == "none"
    assert "no embedded prompt" in v["details"]["expected"]["skipped"]
    code, out, _ = run_captured(["qa", str(path), "--prompt", "a plain bottle"], capsys)
    assert code == 0
    assert "  text check skipped: the prompt has no quoted label text" in out.splitlines()


def test_qa_reads_the_chunks_the_store_writes():
    from image_gen.qa import expected as qa_expected
    from image_gen.store import artifacts

    assert (qa_expected.JSON_CHUNK, qa_expected.PARAMS_CHUNK) == (artifacts.JSON_CHUNK, artifacts.PARAMS_CHUNK)
