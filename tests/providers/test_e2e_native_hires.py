"""The seed's staged pipeline with its hires stage on a large-format model, end to end through the CLI (in-process:
the SDK imports are shared with the other tests), on loopback
vendors that return the vendors' real sizes: ``hires:flux-pro-1.1-ultra`` (BFL, about 4 MP by aspect ratio) and
``hires:gemini-3-pro-image`` at 4096x4096 (``imageSize: "4K"``). The delivered image is the model's own: one call,
no tiled or native upscale, no resampling in the record, and the call costs what the catalog says for that size.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from image_gen.catalog import Catalog
from image_gen.store.artifacts import JSON_CHUNK, read_metadata
from tests.fakes import FakeBFL, FakeGoogle, FakeIdeogram, FakeStability
from tests.fakes.fixtures import BFL_KEY, GEMINI_KEY, IDEOGRAM_KEY, STABILITY_KEY
from tests.providers._cli import as_json, assert_no_key_anywhere, rows

BRIEF = 'Product hero shot: stainless steel water bottle, studio lighting, label reading "AQUA PURE"'
KEYS = (IDEOGRAM_KEY, STABILITY_KEY, GEMINI_KEY, BFL_KEY)

STAGED = """
name = "staged-native-hires"
[pipeline]
model = "staged-selection"
stages = ["draft:ideogram-v1-turbo", "layout:ideogram-v2a", "final:sd3.5-medium", "hires:{hires}"]
width = 256
height = 256
[pipeline.qa]
enabled = false

[stage.draft]
steps = 20
guidance_scale = 6.0
seed = 42

[stage.layout]
strength = 0.6

[stage.final]
steps = 40
strength = 0.35
upscale = "2x"

[stage.hires]
strength = 0.3
width = {side}
height = {side}

[budget]
per_run_usd = 1.00

[retry]
initial_s = 0
max_s = 0
"""


def image_gen(*args: str) -> SimpleNamespace:
    """The ``image-gen`` command run in this process: its exit code, stdout and stderr."""
    from image_gen.cli import main

    runner = CliRunner()
    code = 0
    with runner.isolation() as (out, err, _):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return SimpleNamespace(returncode=code, stdout=out.getvalue().decode(), stderr=err.getvalue().decode())


@pytest.fixture(scope="module")
def vendors() -> Iterator[dict[str, object]]:
    """Small drafts from Ideogram and Stability; the large-format vendors answer at their real sizes."""
    with (
        FakeIdeogram(IDEOGRAM_KEY) as ideogram,
        FakeStability(STABILITY_KEY) as stability,
        FakeGoogle(GEMINI_KEY, size_scale=1.0) as google,
        FakeBFL(BFL_KEY, size_scale=1.0) as bfl,
    ):
        yield {"ideogram": ideogram, "stability": stability, "google": google, "bfl": bfl}


@pytest.fixture(scope="module")
def shared_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("native-hires") / "ws"


@pytest.fixture
def env(vendors: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    for v in vendors.values():
        v.reset()  # type: ignore[attr-defined]
    settings = {
        "IDEOGRAM_API_KEY": IDEOGRAM_KEY,
        "IDEOGRAM_BASE_URL": vendors["ideogram"].url,  # type: ignore[attr-defined]
        "STABILITY_API_KEY": STABILITY_KEY,
        "STABILITY_BASE_URL": vendors["stability"].url,  # type: ignore[attr-defined]
        "GEMINI_API_KEY": GEMINI_KEY,
        "GOOGLE_GEMINI_BASE_URL": vendors["google"].url,  # type: ignore[attr-defined]
        "BFL_API_KEY": BFL_KEY,
        "BFL_BASE_URL": vendors["bfl"].url,  # type: ignore[attr-defined]
    }
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    for k, v in settings.items():
        monkeypatch.setenv(k, v)
    return vendors


@pytest.mark.parametrize(
    ("hires", "side", "vendor", "wire"),
    [
        ("flux-pro-1.1-ultra", 2048, "bfl", {"aspect_ratio": "1:1", "raw": False}),
        ("gemini-3-pro-image", 4096, "google", {"imageSize": "4K", "aspectRatio": "1:1"}),
    ],
)
def test_hires_renders_natively_at_the_asked_size(
    tmp_path: Path, shared_ws: Path, env: dict[str, object], hires: str, side: int, vendor: str,
    wire: dict[str, object]
) -> None:
    ws = shared_ws  # the second case reuses the first one's cached draft, layout and final stages
    cfg = tmp_path / "staged.toml"
    cfg.write_text(STAGED.format(hires=hires, side=side))
    (tmp_path / "prompts.txt").write_text(BRIEF + "\n")
    proc = image_gen("run", "--config", str(cfg), "--prompt-file", str(tmp_path / "prompts.txt"),
                     "--workspace", str(ws), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = as_json(proc)["runs"]
    stages = {r["name"]: r for r in rows(ws, "SELECT * FROM stage_runs WHERE run_id = ?", run["run_id"])}
    assert all(s["status"] == "done" for s in stages.values()), stages

    # What the large-format vendor was asked: its native size, with the final stage's image as input.
    fake = env[vendor]
    if vendor == "bfl":
        (sent,) = fake.calls("/v1/flux-pro-1.1-ultra")  # type: ignore[attr-defined]
        body = sent.json
        assert sent.file_sha("image_prompt") == stages["final"]["artifact_sha"]
    else:
        (sent,) = fake.calls(":generateContent")  # type: ignore[attr-defined]
        body = sent.json["generationConfig"]["imageConfig"]
        assert sent.file_sha("inline_image") == stages["final"]["artifact_sha"]
    assert {k: body[k] for k in wire} == wire

    # The record: one call for the hires stage (no tiles, no upscaler), its image the asked size, nothing resampled.
    hires_calls = rows(ws, "SELECT purpose, state, cost_usd, model_id, meta FROM calls WHERE stage_run_id = ?",
                       stages["hires"]["id"])
    assert [(c["purpose"], c["state"], c["model_id"]) for c in hires_calls] == [("stage", "ok", hires)]
    (art,) = rows(ws, "SELECT width, height, path FROM artifacts WHERE sha256 = ?", stages["hires"]["artifact_sha"])
    assert (art["width"], art["height"]) == (side, side)
    record = json.loads(read_metadata(ws / art["path"])[JSON_CHUNK])
    assert record["size"] == f"{side}x{side}" and record["size_fixes"] == []
    assert json.loads(hires_calls[0]["meta"])["actual_size"] == f"{side}x{side}"

    # Cost per the catalog for that size (BFL also reports it; Google's is the catalog's 4K price).
    price = Catalog.load().resolve(hires).price_for(side, side)
    assert hires_calls[0]["cost_usd"] == pytest.approx(price)
    assert stages["hires"]["cost_usd"] == pytest.approx(price)
    assert fake.billed_usd == pytest.approx(price)  # type: ignore[attr-defined]
    assert price == {"flux-pro-1.1-ultra": 0.06, "gemini-3-pro-image": 0.24}[hires]

    assert_no_key_anywhere(ws, [proc], KEYS)


def test_the_4k_example_is_estimated_as_one_native_render() -> None:
    """examples/staged-4k.toml: the estimate plans the hires stage as one 4096x4096 Gemini call at the 4K price."""
    from image_gen.pipeline.estimate import estimate

    est = estimate(Path(__file__).resolve().parents[2] / "examples" / "staged-4k.toml", simulate=True)
    hires = next(s for s in est.stages if s.stage == "hires")
    assert [(g.purpose, g.calls, g.width, g.height) for g in hires.groups] == [("render", 1, 4096, 4096)]
    assert hires.groups[0].unit_cost_usd == pytest.approx(0.24)
