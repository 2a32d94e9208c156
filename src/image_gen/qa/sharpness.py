"""Softness: two focus measures on a size-normalised grey image, compared with calibrated thresholds.

1. Variance of the Laplacian (Pech-Pacheco et al., 2000): second derivatives vanish where detail is blurred.
2. High-frequency energy of the spectrum: the share of the (Hann-windowed, DC-free) power spectrum above
   a quarter of the sampling frequency; a Gaussian blur removes it. It is a ratio, so it does not depend on
   contrast the way the Laplacian does.

Images are first reduced so that their shorter side is ``NORMALISE_SIDE`` pixels (area averaging; smaller
images are left as they are), so a 2048-pixel render and a 512-pixel render of the same scene score alike:
softness is judged at a fixed viewing size, as a reviewer would see the asset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

NORMALISE_SIDE = 512
HF_CUTOFF = 0.25
"""Radial frequency (cycles/pixel; Nyquist is 0.5) above which spectral energy counts as high-frequency."""

RULES = ("laplacian", "hf", "any", "all")
"""How the two measures make a "soft" verdict: one alone, soft when either is low, or when both are."""


def normalised_grey(image: Image.Image) -> np.ndarray:
    """Grey levels 0..255 as float32, reduced so the shorter side is at most ``NORMALISE_SIDE``."""
    import cv2
    import numpy as np

    grey = np.asarray(image.convert("L"), dtype=np.float32)
    h, w = grey.shape
    short = min(h, w)
    if short > NORMALISE_SIDE:
        scale = NORMALISE_SIDE / short
        grey = cv2.resize(  # type: ignore[assignment]
            grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
    return grey


def laplacian_variance(grey: np.ndarray) -> float:
    import cv2

    return float(cv2.Laplacian(grey, cv2.CV_32F).astype("float64").var())


def high_frequency_energy(grey: np.ndarray, cutoff: float = HF_CUTOFF) -> float:
    """Share of the non-DC spectral power above ``cutoff`` cycles/pixel (0..1)."""
    import numpy as np

    g = grey.astype(np.float64)
    g = g - g.mean()
    h, w = g.shape
    window = np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.rfft2(g * window)) ** 2
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    radius = np.sqrt(fx**2 + fy**2)
    power[0, 0] = 0.0
    total = float(power.sum())
    if total <= 0.0:
        return 0.0
    return float(power[radius > cutoff].sum() / total)


def measure(image: Image.Image) -> dict[str, float]:
    """Both focus measures of an image: ``laplacian_var`` and ``hf_energy``."""
    grey = normalised_grey(image)
    return {"laplacian_var": laplacian_variance(grey), "hf_energy": high_frequency_energy(grey)}


def soft_reasons(
    measures: dict[str, float], thresholds: dict[str, Any], laplacian_min: float | None = None
) -> list[str]:
    """Why an image is soft under the calibrated rule; empty when it is sharp.

    ``laplacian_min`` overrides the calibrated Laplacian threshold (a stage's ``qa.sharpness_min``).
    """
    lap_min = float(thresholds["laplacian_var_min"] if laplacian_min is None else laplacian_min)
    hf_min = float(thresholds["hf_energy_min"])
    rule = thresholds.get("rule", "any") if laplacian_min is None else "laplacian"
    lap_low = measures["laplacian_var"] < lap_min
    hf_low = measures["hf_energy"] < hf_min
    soft = {"laplacian": lap_low, "hf": hf_low, "any": lap_low or hf_low, "all": lap_low and hf_low}[rule]
    if not soft:
        return []
    parts = []
    if lap_low:
        parts.append(f"Laplacian variance {measures['laplacian_var']:.1f} < {lap_min:.1f}")
    if hf_low and rule != "laplacian":
        parts.append(f"high-frequency energy {measures['hf_energy']:.2e} < {hf_min:.2e}")
    return ["soft focus: " + ", ".join(parts)]
