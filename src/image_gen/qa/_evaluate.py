"""``evaluate``: run the enabled QA checks on one image and give a verdict with reasons and scores."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from image_gen.qa._verdict import Verdict
from image_gen.qa.expected import resolve_expected

if TYPE_CHECKING:
    from PIL import Image

    from image_gen.config import QASettings


def evaluate(
    image: Image.Image,
    *,
    prompt: str | None = None,
    expect_text: Sequence[str] | None = None,
    asked_size: tuple[int, int] | None = None,
    settings: QASettings | None = None,
    safety_flags: Mapping[str, Any] | None = None,
    asked_format: str | None = None,
    ocr_engine: str = "rapidocr",
    thresholds: Mapping[str, Any] | None = None,
) -> Verdict:
    """Check one image: text fidelity (OCR), softness, size/aspect/format and provider safety flags.

    The expected label text is ``expect_text`` when given, else the quoted strings of ``prompt``, else (``prompt``
    None) those of the prompt embedded in the image's metadata; ``details["expected"]`` says which, or why the text
    check was skipped. A label fails when an expected string's edit similarity or the precision of the text read
    at the label is below its calibrated threshold (see ``qa/text.py``). ``asked_format``
    (``"PNG"``, ``"JPEG"``...) is compared with ``image.format`` when the image came from a file;
    ``thresholds`` replaces the calibrated ``thresholds.json`` (tests, calibration).
    """
    from image_gen.config import QASettings
    from image_gen.qa.thresholds import load_thresholds

    settings = settings or QASettings()
    if not settings.enabled:
        return Verdict(passed=True, details={"skipped": "QA disabled for this stage", "failed_checks": []})
    th = dict(thresholds) if thresholds is not None else load_thresholds()
    t0 = time.perf_counter()
    reasons: list[str] = []
    scores: dict[str, float] = {}
    details: dict[str, Any] = {}
    failed: list[str] = []

    def record(check: str, why: list[str]) -> None:
        if why:
            failed.append(check)
            reasons.extend(why)

    # Size, aspect ratio, format and safety first: they are free.
    from image_gen.qa.size import aspect_error, format_reasons, safety_reasons, size_reasons

    scores["width"], scores["height"] = float(image.width), float(image.height)
    if settings.check_size:
        record("size", size_reasons(image.size, asked_size))
        if asked_size is not None:
            scores["aspect_ratio_error"] = aspect_error(image.size, asked_size)
        record("format", format_reasons(image.format, asked_format))
    details["size"] = {
        "delivered": list(image.size),
        "asked": list(asked_size) if asked_size else None,
        "format": image.format,
        "asked_format": asked_format,
    }
    record("safety", safety_reasons(safety_flags))
    if safety_flags:
        details["safety_flags"] = dict(safety_flags)

    if settings.check_sharpness:
        from image_gen.qa.sharpness import measure, soft_reasons

        measures = measure(image)
        scores.update(measures)
        sharp_th = th["sharpness"]
        record("sharpness", soft_reasons(measures, sharp_th, settings.sharpness_min))
        details["sharpness"] = {
            "laplacian_var_min": settings.sharpness_min
            if settings.sharpness_min is not None
            else sharp_th["laplacian_var_min"],
            "hf_energy_min": sharp_th["hf_energy_min"],
            "rule": sharp_th.get("rule") if settings.sharpness_min is None else "laplacian",
            "calibrated": settings.sharpness_min is None,
        }

    exp = resolve_expected(expect_text=expect_text, prompt=prompt, image=image)
    if not settings.check_text:
        exp = replace(exp, skipped="the text check is turned off")
    details["expected_texts"] = exp.texts
    details["expected"] = exp.as_dict()
    details["expected"]["summary"] = exp.describe()
    if settings.check_text and exp.texts:
        from image_gen.qa.text import describe_failures, read_for_qa, score_text

        min_sim = _text_min_similarity(settings, th)
        prec = getattr(settings, "text_min_precision", None)
        min_prec = float(th["text"].get("min_precision", 0.0) if prec is None else prec)
        lines = read_for_qa(image, ocr_engine)
        ts = score_text(exp.texts, lines)
        scores.update(ts.as_scores())
        record("text", describe_failures(ts, min_sim, min_prec))
        details["text"] = {
            "min_similarity": min_sim,
            "min_precision": min_prec,
            "ocr_engine": ocr_engine,
            "read_text": ts.read_text,
            "near_text": ts.near_text,
            "precision": round(ts.precision, 4),
            "matches": [
                {
                    "expected": m.expected,
                    "read": m.read,
                    "distance": m.distance,
                    "similarity": round(m.similarity, 4),
                    "exact": m.exact,
                }
                for m in ts.matches
            ],
            "ocr_lines": ts.ocr_lines,
        }
    details["failed_checks"] = failed
    scores["qa_seconds"] = time.perf_counter() - t0
    return Verdict(passed=not failed, reasons=reasons, scores=scores, details=details)


def _text_min_similarity(settings: QASettings, thresholds: Mapping[str, Any]) -> float:
    value = getattr(settings, "text_min_similarity", None)
    if value is None:
        return float(thresholds["text"]["min_similarity"])
    return float(value)
