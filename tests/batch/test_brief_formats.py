"""Prompt files for batches: text, CSV and JSONL with per-brief expect_text, size, seed and channel; malformed files
name the file, line and field. A brief's size and seed reach its run; its channel is recorded on its item."""

from __future__ import annotations

from pathlib import Path

import pytest

from image_gen import api
from image_gen.briefs import read_prompt_file
from image_gen.errors import InputError
from tests.batch._support import rows, sim_config, sqlite_url, write


def test_csv_and_jsonl_fields(tmp_path: Path) -> None:
    csv = write(tmp_path / "p.csv", 'prompt,expect_text,size,seed,channel,negative_prompt\n'
                                    '"Can, label ""FIZZ""",FIZZ|LIME,256x128,7,web,blur\n'
                                    'Plain bottle,,,,,\n')
    a, b = read_prompt_file(csv)
    assert (a.prompt, a.expect_text, a.width, a.height, a.seed, a.channel, a.negative_prompt) == (
        'Can, label "FIZZ"', ["FIZZ", "LIME"], 256, 128, 7, "web", "blur")
    assert (b.prompt, b.expect_text, b.width, b.seed, b.channel, b.index) == ("Plain bottle", None, None, None,
                                                                               None, 1)
    jl = write(tmp_path / "p.jsonl", '{"prompt": "A", "size": "64x64", "seed": 3, "channel": "print"}\n\n'
                                     '{"prompt": "B", "expect_text": ["B"]}\n')
    x, y = read_prompt_file(jl)
    assert (x.width, x.height, x.seed, x.channel) == (64, 64, 3, "print") and y.expect_text == ["B"]


@pytest.mark.parametrize(("name", "text", "field"), [
    ("p.csv", "prompt,size\na,12x\n", "line 2: size"),
    ("p.csv", "prompt,seed\na,1\nb,seven\n", "line 3: seed"),
    ("p.csv", "prompt,colour\na,red\n", "line 1"),
    ("p.csv", "size\n64x64\n", "line 1"),
    ("p.csv", "prompt,channel\na,web,extra\n", "line 2"),
    ("p.csv", "prompt,size\na,100000x64\n", "line 2: size"),
    ("p.jsonl", '{"prompt": "a", "size": [64]}\n', "line 1: size"),
    ("p.jsonl", '{"prompt": "a"}\n{"prompt": "b", "seed": -1}\n', "line 2: seed"),
    ("p.jsonl", '{"prompt": "a", "channel": 5}\n', "line 1: channel"),
    ("p.jsonl", '{"prompt": "a", "seed": true}\n', "line 1: seed"),
    ("p.json", '[{"prompt": "a", "size": "64by64"}]', "[0].size"),
])
def test_malformed_files_name_file_line_and_field(tmp_path: Path, name: str, text: str, field: str) -> None:
    p = write(tmp_path / name, text)
    with pytest.raises(InputError) as err:
        read_prompt_file(p)
    assert err.value.file == str(p) and err.value.field == field and err.value.exit_code == 2


def test_size_and_seed_reach_the_run_and_channel_the_item(tmp_path: Path, ws_path: Path) -> None:
    pf = write(tmp_path / "p.jsonl", '{"prompt": "Tin \\"OLIVE\\"", "size": "192x128", "seed": 1234, '
                                     '"channel": "social"}\n{"prompt": "Jar \\"HONEY\\""}\n')
    bid = api.submit_batch(sim_config(tmp_path), pf, workspace=ws_path, simulate=True, name="formats")
    st = api.run_batch(bid, workspace=ws_path)
    assert st.status == "completed"
    url = sqlite_url(ws_path)
    got = rows(url, "select i.idx, s.name, s.seed, a.width, a.height from batch_items i join stage_runs s "
                    "on s.run_id = i.run_id join artifacts a on a.sha256 = s.artifact_sha where i.batch_id = :b "
                    "order by i.idx, s.idx", b=bid)
    sized = [g for g in got if g[0] == 0]
    assert sized and all((g[2], g[3], g[4]) == (1234, 192, 128) for g in sized)
    other = [g for g in got if g[0] == 1]
    assert other and all((g[3], g[4]) == (128, 128) and g[2] != 1234 for g in other)
    status = api.batch_status(bid, workspace=ws_path)
    assert [i["channel"] for i in status.items] == ["social", None]


def test_a_runs_own_size_and_seed_survive_a_gate(tmp_path: Path, ws_path: Path) -> None:
    """``run --prompt-file`` records a brief's size and seed with its run, so ``approve`` (like ``resume``) continues
    with them rather than the config's."""
    from tests.core.helpers import invoke

    cfg = write(tmp_path / "gated.toml", '[pipeline]\nstages = ["draft:ideogram-v1-turbo", "hires:imagen-4"]\n'
                                         'width = 128\nheight = 128\n[pipeline.qa]\nenabled = false\n'
                                         '[stage.hires]\ngate = "approval"\n[sim]\nlatency_scale = 0\n')
    pf = write(tmp_path / "p.jsonl", '{"prompt": "Jar \\"HONEY\\"", "size": "96x64", "seed": 77}\n')
    r = invoke("run", "--config", str(cfg), "--prompt-file", str(pf), "--simulate", "--workspace", str(ws_path),
               "--json")
    rid = r.json()["runs"][0]["run_id"]
    assert r.json()["runs"][0]["status"] == "awaiting_approval"
    assert invoke("approve", rid, "--workspace", str(ws_path), "--json").code == 0
    got = rows(sqlite_url(ws_path), "select s.name, s.seed, a.width, a.height from stage_runs s join artifacts a "
                                    "on a.sha256 = s.artifact_sha order by s.idx")
    assert got == [("draft", 77, 96, 64), ("hires", 77, 96, 64)]
