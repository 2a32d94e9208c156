"""The real staged example config on the simulator: every example brief shows its own product, and the final
stage is sharper than the draft on every one of them.

The config is examples/staged.toml as shipped, rendered at 512x512 instead of the default 1024x1024 so that the
ten briefs (four stages, a 2x upscale each) fit in a test run, with QA off (its re-rolls would only pick
among renders; the adapters, typography-preserve's OCR included, still run); sharpness is judged at a fixed viewing size
(image_gen.qa.sharpness normalises it), so the comparison holds at either size.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from image_gen import api
from image_gen.providers._sim_scene import parse_scene
from image_gen.providers.sim import quoted_texts
from image_gen.qa import sharpness

from ._measure import body_colour, example_briefs

STAGED = Path(__file__).resolve().parents[2] / "examples" / "staged.toml"

pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def staged_runs(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    from image_gen.workspace import Workspace

    ws = tmp_path_factory.mktemp("staged")
    cfg = tomllib.loads(STAGED.read_text())
    cfg["pipeline"].update(width=512, height=512, qa={"enabled": False})  # sharpness is measured here, not QA
    outcomes = api.run_pipeline(cfg, example_briefs(), workspace=ws, simulate=True)
    assert isinstance(outcomes, list)
    store = Workspace.resolve(ws, None).artifacts()
    runs = []
    for o in outcomes:
        images = {s.name: store.open(s.artifact).convert("RGB") for s in o.stages if s.artifact}
        runs.append({"prompt": o.prompt, "status": o.status, "images": images})
    return runs


def test_final_is_sharper_than_draft_on_every_brief(staged_runs: list[dict[str, object]]) -> None:
    for run in staged_runs:
        images = run["images"]
        assert isinstance(images, dict) and {"draft", "final"} <= set(images), run["status"]
        draft = sharpness.measure(images["draft"])["laplacian_var"]
        final = sharpness.measure(images["final"])["laplacian_var"]
        assert final > draft, (run["prompt"], draft, final)


def test_each_final_shows_its_own_product_in_its_colours(staged_runs: list[dict[str, object]]) -> None:
    colours = []
    for run in staged_runs:
        prompt = str(run["prompt"])
        images = run["images"]
        assert isinstance(images, dict)
        final = images["final"].resize((384, 384))
        colour = body_colour(prompt, final)
        spec = parse_scene(prompt, quoted_texts(prompt))
        # the product's body is drawn in the brief's colour (within the finisher's shading and grain)
        expected = np.array(spec.body, np.float32)
        assert np.abs(colour - expected).max() < 90, (prompt, colour, expected)
        colours.append(colour)
    by_brief = dict(zip(example_briefs(), colours, strict=True))
    black_bag = next(c for b, c in by_brief.items() if "Matte black" in b)
    white_box = next(c for b, c in by_brief.items() if "white sneaker" in b)
    assert black_bag.max() < 60 and white_box.min() > 170
