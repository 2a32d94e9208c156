"""PNG metadata in the AUTOMATIC1111 format, read back by a grammar written from the format and by sd-parsers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from image_gen import api
from image_gen.store.artifacts import JSON_CHUNK, PARAMS_CHUNK, a1111_parameters, encode_with_metadata

# The A1111 "parameters" text: the prompt (any lines), an optional "Negative prompt: " part, and a last line of
# comma-separated "key: value" pairs, where a value may be a JSON-quoted string.
PAIR = re.compile(r'\s*([\w][\w ]*?):\s*("(?:\\.|[^"\\])*"|[^,]*)(?:,|$)')
REQUIRED = ("Steps", "Sampler", "CFG scale", "Seed", "Size", "Model")


def parse_a1111(text: str) -> tuple[str, str, dict[str, str]]:
    *head, last = text.split("\n")
    pairs: dict[str, str] = {}
    pos = 0
    while pos < len(last):
        m = PAIR.match(last, pos)
        assert m and m.end() > pos, f"not a key: value pair at {last[pos:]!r}"
        key, value = m.group(1), m.group(2).strip()
        pairs[key] = json.loads(value) if value.startswith('"') else value
        pos = m.end()
    body = "\n".join(head)
    prompt, _, negative = body.partition("\nNegative prompt: ")
    if body.startswith("Negative prompt: "):
        prompt, negative = "", body[len("Negative prompt: "):]
    return prompt, negative, pairs


def check_settings(pairs: dict[str, str]) -> None:
    for key in REQUIRED:
        assert key in pairs, (key, pairs)
    int(pairs["Steps"])
    float(pairs["CFG scale"])
    int(pairs["Seed"])
    assert re.fullmatch(r"\d+x\d+", pairs["Size"])
    assert not set(pairs["Model"]) & set(":,\n")


BRIEF = 'Sunscreen tube on beach sand, label reads "SUN SHIELD 50"'


@pytest.fixture(scope="module")
def staged_pngs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from image_gen.workspace import Workspace

    ws = tmp_path_factory.mktemp("ws")
    cfg = {"name": "meta", "pipeline": {"model": "staged-selection", "width": 384, "height": 384,
                                         "stages": ["draft:ideogram-v1-turbo", "layout:ideogram-v2a",
                                                    "final:sd3.5-medium"]},
           "stage": {"draft": {"steps": 20, "guidance_scale": 6.0, "seed": 42, "negative_prompt": "blurry, text"},
                     "final": {"steps": 40, "strength": 0.35}}}
    outcome = api.run_pipeline(cfg, BRIEF, workspace=ws, simulate=True)
    assert not isinstance(outcome, list)
    store = Workspace.resolve(ws, None).artifacts()
    return [store.path_for(s.artifact) for s in outcome.stages if s.artifact]


def test_our_pngs_parse_with_the_a1111_grammar(staged_pngs: list[Path]) -> None:
    assert len(staged_pngs) == 3
    seen_strength = False
    for path in staged_pngs:
        with Image.open(path) as img:
            text = img.info[PARAMS_CHUNK]
            record = json.loads(img.info[JSON_CHUNK])
            size = f"{img.width}x{img.height}"
        prompt, _negative, pairs = parse_a1111(text)
        assert prompt == BRIEF
        check_settings(pairs)
        assert pairs["Size"] == size and pairs["Simulated"] == "true"
        assert record["model"].startswith("sim:") and pairs["Model"] == record["model"].replace(":", "-")
        if record.get("strength") is not None:
            assert float(pairs["Denoising strength"]) == pytest.approx(record["strength"])
            seen_strength = True
        else:
            assert "Denoising strength" not in pairs
    assert seen_strength
    # the draft states its steps and guidance; the layout has none in the config: its vendor's stated defaults
    draft = parse_a1111(Image.open(staged_pngs[0]).info[PARAMS_CHUNK])[2]
    assert (draft["Steps"], draft["CFG scale"], draft["Seed"]) == ("20", "6.0", "42")


def test_values_that_would_break_the_line_are_quoted_or_cleaned() -> None:
    meta = {"prompt": 'Bottle, "label": X\nsecond line', "negative_prompt": "blurry, low", "model": "sim:x,y",
            "seed": 5, "steps": None, "guidance_scale": None, "size": "64x64", "stage": "a: b, c",
            "sampler": "DPM++ 2M Karras", "strength": 0.5}
    prompt, negative, pairs = parse_a1111(a1111_parameters(meta))
    assert prompt == meta["prompt"] and negative == "blurry, low"
    check_settings(pairs)
    assert pairs["Sampler"] == "DPM++ 2M Karras" and pairs["Model"] == "sim-x y"
    assert pairs["Steps"] == "30" and pairs["CFG scale"] == "7.0"  # stated defaults for an unknown model
    known = parse_a1111(a1111_parameters({"prompt": "p", "model": "sd3.5-medium", "seed": 1}))[2]
    assert known["Steps"] == "40" and known["Sampler"] == "stability"  # the catalog's default, the vendor


def test_sd_parsers_reads_our_pngs(staged_pngs: list[Path], tmp_path: Path) -> None:
    sd_parsers = pytest.importorskip("sd_parsers")
    manager = sd_parsers.ParserManager()
    for path in staged_pngs:
        info = manager.parse(path)
        assert info is not None, path
        assert info.generator.name == "AUTOMATIC1111"
        sampler = info.samplers[0]
        params = sampler.parameters
        assert sampler.name and {"steps", "cfg_scale", "seed"} <= set(params)
        assert sampler.model is not None and ":" not in sampler.model.name
        assert [p.value for p in sampler.prompts] == [BRIEF]
    # a negative prompt stays out of the prompt
    img = Image.new("RGB", (32, 32))
    png = tmp_path / "neg.png"
    png.write_bytes(encode_with_metadata(img, {"prompt": "a can", "negative_prompt": "blurry", "model":
                                               "sim:sd3.5-medium", "seed": 3, "steps": 40}))
    info = manager.parse(png)
    assert info is not None and [p.value for p in info.samplers[0].negative_prompts] == ["blurry"]
    assert [p.value for p in info.samplers[0].prompts] == ["a can"]


def test_vendor_png_gets_the_same_metadata_without_reencoding(tmp_path: Path) -> None:
    """A stage image that is the vendor's PNG unchanged is stored by adding our chunks to its bytes: the pixels
    and the vendor's own chunks stay byte for byte, a stale ``parameters`` chunk is replaced, readers see exactly
    what ``encode_with_metadata`` would write."""
    import io

    import numpy as np
    from PIL.PngImagePlugin import PngInfo

    from image_gen.store.artifacts import ArtifactStore, png_with_metadata

    rng = np.random.default_rng(3)
    img = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    stale = PngInfo()
    stale.add_text(PARAMS_CHUNK, "old prompt\nSteps: 1")
    stale.add_text("vendor", "kept")
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=stale)
    vendor = buf.getvalue()
    meta = {"prompt": 'Tin labelled "ÖL – 5€"', "model": "sd3.5-medium", "seed": 9, "steps": 40,
            "negative_prompt": "blurry"}
    spliced = png_with_metadata(vendor, meta, img.size)
    idat = vendor.index(b"IDAT") - 4
    assert vendor[idat:] in spliced  # pixel data (and everything after) untouched
    with Image.open(io.BytesIO(spliced)) as got, Image.open(io.BytesIO(encode_with_metadata(img, meta))) as want:
        assert np.array_equal(np.asarray(got.convert("RGB")), np.asarray(img))
        assert got.info[PARAMS_CHUNK] == want.info[PARAMS_CHUNK]
        assert json.loads(got.info[JSON_CHUNK]) == json.loads(want.info[JSON_CHUNK])
        assert got.info["vendor"] == "kept" and "old prompt" not in got.info[PARAMS_CHUNK]
    store = ArtifactStore(tmp_path)
    sha, _where, data = store.put_png(vendor, meta)
    path = store.path_for(sha)  # put_png answers the location as recorded (a string), not the file
    assert path.read_bytes() == data == spliced
    info = pytest.importorskip("sd_parsers").ParserManager().parse(path)
    assert info is not None and [p.value for p in info.samplers[0].prompts] == [meta["prompt"]]
    with pytest.raises(ValueError):
        png_with_metadata(b"GIF89a" + vendor[6:], meta, img.size)
