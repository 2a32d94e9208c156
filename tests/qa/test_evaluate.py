from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from PIL import Image

from image_gen.config import QASettings
from image_gen.qa import Verdict, evaluate
from tools.calibrate_qa import blur


def test_importing_qa_is_cheap():
    code = (
        "import sys, image_gen.qa; heavy = {'numpy', 'cv2', 'rapidocr_onnxruntime', 'onnxruntime'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_correct_render_passes_with_scores(render):
    img = render(["AQUA PURE", "Spring Water"], seed=11)
    v = evaluate(img, prompt='a bottle labelled "AQUA PURE" and "Spring Water"', asked_size=img.size)
    assert isinstance(v, Verdict)
    assert v.passed, v.reasons
    assert v.scores["text_similarity_min"] == 1.0
    assert v.scores["text_exact_match"] == 1.0
    assert v.details["expected_texts"] == ["AQUA PURE", "Spring Water"]
    json.dumps(v.to_dict())


def test_misspelt_label_fails_naming_the_string_and_the_reading(render):
    img = render(["AQUA PRUE"], seed=12)
    v = evaluate(img, prompt='a bottle labelled "AQUA PURE"')
    assert not v.passed
    assert v.failed_checks == ["text"]
    (reason,) = v.reasons
    assert reason.startswith('label "AQUA PURE" read as "AQUA')
    assert "PRUE" in reason.replace(" ", "")


def test_missing_label_fails(render):
    img = render(["SPRING"], seed=13)
    v = evaluate(img, prompt="label", expect_text=["SPRING", "MOUNTAIN DEW"])
    assert not v.passed
    assert any(r.startswith('label "MOUNTAIN DEW" missing') for r in v.reasons)


def test_soft_render_fails_on_sharpness_only_when_text_checks_are_off(render):
    img = blur(render(["CITRUS GLOW"], size=(1024, 1024), seed=14), 2.5)
    v = evaluate(img, prompt='"CITRUS GLOW"', settings=QASettings(check_text=False))
    assert v.failed_checks == ["sharpness"]
    assert "text" not in v.details


def test_size_aspect_format_and_safety(render):
    img = render(["OAK"], size=(512, 512), seed=15)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    loaded = Image.open(buf)
    settings = QASettings(check_text=False, check_sharpness=False)
    v = evaluate(
        loaded,
        prompt="",
        asked_size=(1024, 576),
        asked_format="png",
        settings=settings,
        safety_flags={"nsfw": False, "rai_reason": "violence"},
    )
    assert sorted(v.failed_checks) == ["format", "safety", "size"]
    text = " | ".join(v.reasons)
    assert "512x512 differs from the asked 1024x576" in text
    assert "aspect ratio" in text and "format JPEG differs from the asked PNG" in text
    assert "rai_reason: violence" in text and "nsfw" not in text
    ok = evaluate(
        loaded,
        prompt="",
        asked_size=(512, 512),
        asked_format="jpg",
        settings=settings,
        safety_flags={"nsfw": False},
    )
    assert ok.passed


def test_disabled_qa_passes_without_reading_pixels():
    v = evaluate(
        Image.new("RGB", (8, 8)), prompt='"X"', asked_size=(64, 64), settings=QASettings(enabled=False)
    )
    assert v.passed and v.details["skipped"]


@pytest.mark.parametrize("min_sim, passes", [(0.5, True), (None, False)])
def test_text_threshold_from_settings_or_calibration(render, min_sim, passes):
    img = render(["MAPLE CREST"], seed=16)
    v = evaluate(img, prompt='"MAPLE CRESTS"', settings=QASettings(text_min_similarity=min_sim))
    assert v.passed is passes


def test_extra_word_or_glyph_at_the_label_fails_with_what_was_read(render):
    for drawn in (["STRIDE ONE E"], ["STRIDE ONE", "FRESH"]):
        v = evaluate(render(drawn, seed=17), prompt='a shoe box labelled "STRIDE ONE"')
        assert not v.passed and v.failed_checks == ["text"], (drawn, v.reasons)
        (reason,) = v.reasons
        assert reason.startswith('extra text at label "STRIDE ONE": read "') and "precision" in reason
        assert v.scores["text_similarity_min"] == 1.0
        assert v.scores["text_precision"] < v.details["text"]["min_precision"]


def test_split_label_and_far_corner_text_pass(render):
    for drawn, corner in ((["STRIDE", "ONE"], None), (["STRIDE ONE"], "SIMULATED"), (["STRIDE ONE"], "Since 1921")):
        img = render(drawn, seed=18, corner=corner)
        v = evaluate(img, prompt='a shoe box labelled "STRIDE ONE"')
        assert v.passed, (drawn, corner, v.reasons, v.details["text"]["read_text"])
        assert v.scores["text_precision"] == 1.0
        if corner:  # the corner text was read, and left out of the label's text
            assert corner.split()[0].casefold() in v.details["text"]["read_text"].casefold()
            assert corner.split()[0].casefold() not in v.details["text"]["near_text"].casefold()


def test_expected_text_source_is_recorded(render):
    img = render(["AQUA PURE"], seed=11)
    v = evaluate(img, prompt='label "AQUA PURE"')
    assert v.details["expected"]["source"] == "prompt"
    v = evaluate(img, prompt="", expect_text=["AQUA PURE"])
    assert v.details["expected"]["source"] == "expect_text"
    img.info["image-gen"] = json.dumps({"prompt": 'label "AQUA PURE"'})
    v = evaluate(img)
    assert v.details["expected"] == {
        "texts": ["AQUA PURE"], "source": "embedded_prompt", "prompt": 'label "AQUA PURE"', "chunk": "image-gen",
        "summary": 'expected text "AQUA PURE" from the prompt embedded in the image (image-gen chunk)',
    }
    assert v.passed
