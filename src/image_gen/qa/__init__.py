"""Automatic QA: checks that read pixels (text fidelity by OCR, softness, size); a verdict with reasons.

Importing this package is cheap: numpy, OpenCV and the OCR engine load inside the checks that need them.
"""

from image_gen.qa._evaluate import evaluate
from image_gen.qa._verdict import Verdict
from image_gen.qa.text import expected_texts

__all__ = ["Verdict", "evaluate", "expected_texts"]
