from __future__ import annotations

import pytest
from PIL import Image

from image_gen.qa.sharpness import laplacian_variance, measure, soft_reasons
from image_gen.qa.thresholds import load_thresholds
from tools.calibrate_qa import blur


@pytest.mark.parametrize("size", [(512, 512), (1024, 768), (2048, 2048)])
def test_blur_lowers_both_measures_and_crosses_the_calibrated_thresholds(render, size):
    th = load_thresholds()["sharpness"]
    sharp = render(["NORDIC FROST"], size=size, seed=3)
    soft = blur(sharp, 2.0)  # the simulator's soft focus at the normalised scale
    ms, mb = measure(sharp), measure(soft)
    assert mb["laplacian_var"] < ms["laplacian_var"] / 5
    assert mb["hf_energy"] < ms["hf_energy"] / 5
    assert soft_reasons(ms, th) == []
    (reason,) = soft_reasons(mb, th)
    assert reason.startswith("soft focus:")


def test_measures_are_size_normalised(render):
    import numpy as np

    small = render(["GOLDEN HONEY"], size=(512, 512), seed=5)
    large = small.resize((2048, 2048), Image.Resampling.LANCZOS)
    a, b = measure(small), measure(large)
    # Upscaling 4x then normalising back to 512 gives nearly the same image (grain is smoothed a little)...
    assert a["laplacian_var"] / 2 < b["laplacian_var"] < a["laplacian_var"] * 2
    assert a["hf_energy"] / 2 < b["hf_energy"] < a["hf_energy"] * 2
    # ...whereas measured at full size the upscale would look many times softer.
    raw = laplacian_variance(np.asarray(large.convert("L"), dtype=np.float32))
    assert raw < a["laplacian_var"] / 5


def test_explicit_laplacian_threshold_overrides_the_calibrated_rule(render):
    th = load_thresholds()["sharpness"]
    m = measure(render(["WILD BERRY"], seed=1))
    assert soft_reasons(m, th, laplacian_min=m["laplacian_var"] * 2)
    assert not soft_reasons(m, th, laplacian_min=m["laplacian_var"] / 2)


def test_stored_thresholds_carry_their_calibration_figures():
    th = load_thresholds()
    cal = th["calibration"]
    assert cal["in_sample"]["images"] >= 200
    for verdict in ("soft", "typography_broken"):
        assert cal["held_out"][verdict]["precision"] >= 0.95
        assert cal["held_out"][verdict]["recall"] >= 0.95
    assert 0 < th["text"]["min_similarity"] < 1
    assert th["sharpness"]["rule"] in ("laplacian", "hf", "any", "all")
