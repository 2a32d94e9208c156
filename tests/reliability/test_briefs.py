"""Prompt files: every form that is meant is read; anything else is an InputError naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from image_gen.api import read_prompt_file as api_read_prompt_file
from image_gen.briefs import read_prompt_file
from image_gen.errors import InputError
from image_gen.pipeline.runner import Brief


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_api_re_exports_the_reader() -> None:
    assert api_read_prompt_file is read_prompt_file


def test_text_lines_and_comments(tmp_path: Path) -> None:
    briefs = read_prompt_file(_write(tmp_path, "p.txt", '# header\nA bottle "AQUA"\n\n  A can  \n'))
    assert [(b.prompt, b.index) for b in briefs] == [('A bottle "AQUA"', 0), ("A can", 1)]
    assert all(isinstance(b, Brief) for b in briefs)


def test_one_json_object_is_one_brief(tmp_path: Path) -> None:
    (brief,) = read_prompt_file(_write(tmp_path, "p.json", '{"prompt": "A bottle", "expect_text": "AQUA"}'))
    assert (brief.prompt, brief.expect_text, brief.index) == ("A bottle", ["AQUA"], 0)


def test_json_list_and_jsonl(tmp_path: Path) -> None:
    briefs = read_prompt_file(_write(tmp_path, "p.json", '["A can", {"prompt": "A box", "negative_prompt": "blur", '
                                                         '"expect_text": ["BOX", "CO"]}]'))
    assert [(b.prompt, b.negative_prompt, b.expect_text) for b in briefs] == [
        ("A can", None, None), ("A box", "blur", ["BOX", "CO"])]
    lines = read_prompt_file(_write(tmp_path, "p.jsonl", '{"prompt": "A"}\n\n"B"\n'))
    assert [b.prompt for b in lines] == ["A", "B"]


@pytest.mark.parametrize(("name", "text", "field"), [
    ("p.json", '[{"prompt": "a", "expect_text": 42}]', "[0].expect_text"),
    ("p.json", '[{"prompt": "a", "expect_text": ["A", 3]}]', "[0].expect_text"),
    ("p.json", '{"prompt": "a", "expect_text": ""}', "expect_text"),
    ("p.json", '["a", {"prompt": ["x"]}]', "[1].prompt"),
    ("p.json", '[{"prompt": "a", "negative_prompt": 1}]', "[0].negative_prompt"),
    ("p.json", '{"hero": "a bottle"}', "hero"),
    ("p.json", "[1]", "[0]"),
    ("p.jsonl", '{"prompt": "a"}\n{"prompt": 5}\n', "line 2: prompt"),
    ("p.jsonl", '{"prompt": "a"}\nnot json\n', "line 2"),
])
def test_wrong_types_name_the_field(tmp_path: Path, name: str, text: str, field: str) -> None:
    p = _write(tmp_path, name, text)
    with pytest.raises(InputError) as err:
        read_prompt_file(p)
    assert err.value.field == field and err.value.file == str(p) and err.value.exit_code == 2


@pytest.mark.parametrize("content", [b"", b"# nothing\n", b"\xff\xfe\x00a", "caf\xe9".encode("latin-1"), b"[]"])
def test_unusable_files(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / ("p.json" if content == b"[]" else "p.txt")
    p.write_bytes(content)
    with pytest.raises(InputError) as err:
        read_prompt_file(p)
    assert err.value.file == str(p)
