"""Automatic QA: checks that read pixels (text fidelity by OCR, softness, size); a verdict with reasons.

Importing this package is cheap: numpy, OpenCV and the OCR engine load inside the checks that need them.
"""

from image_gen.qa._evaluate import evaluate
from image_gen.qa._verdict import Verdict
from image_gen.qa.expected import ExpectedText, embedded_prompt, resolve_expected
from image_gen.qa.text import expected_texts, label_texts

__all__ = [
    "ExpectedText",
    "Verdict",
    "embedded_prompt",
    "evaluate",
    "expected_texts",
    "label_texts",
    "resolve_expected",
]
