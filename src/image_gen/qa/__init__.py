"""Automatic QA: checks that read pixels (text fidelity by OCR, softness, size) and give a verdict with reasons."""
