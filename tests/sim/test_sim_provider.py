"""The simulator provider: per-attempt transient failures, deterministic defects, quality by model, img2img."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from image_gen.catalog import Catalog
from image_gen.providers.base import ImageRequest, ProviderSettings, Transient
from image_gen.providers.sim import SimProvider, model_quality
from image_gen.qa import sharpness

PROMPT = 'Craft beer can on ice, bold label "HOP STORM IPA"'


def provider(**rates: float) -> SimProvider:
    opts = {"fail_rate": 0.0, "soft_rate": 0.0, "typo_rate": 0.0, **rates}
    return SimProvider(ProviderSettings(options=opts))


def request(model: str = "ideogram-v2a", seed: int = 1, size: int = 384, **kw: object) -> ImageRequest:
    return ImageRequest(model=model, vendor_model=model, prompt=kw.pop("prompt", PROMPT),  # type: ignore[arg-type]
                        seed=seed, width=size, height=size, **kw)  # type: ignore[arg-type]


def image(result_bytes: bytes) -> Image.Image:
    return Image.open(io.BytesIO(result_bytes)).convert("RGB")


def outcomes(p: SimProvider, req: ImageRequest, n: int) -> list[bool]:
    out = []
    for _ in range(n):
        try:
            p.generate(req)
            out.append(True)
        except Transient:
            out.append(False)
    return out


def test_a_transient_failure_can_succeed_on_retry() -> None:
    p = provider(fail_rate=0.5)
    # find a request whose first attempt fails; its retries are drawn afresh
    for seed in range(40):
        req = request(seed=seed, size=64)
        first = outcomes(p, req, 1)[0]
        if not first:
            assert True in outcomes(p, req, 12), "every retry of a transient failure failed again"
            break
    else:
        pytest.fail("no first attempt failed at fail_rate=0.5 in 40 seeds")


def test_attempt_outcomes_are_deterministic_per_provider_instance() -> None:
    req = request(seed=3, size=64)
    a = outcomes(provider(fail_rate=0.5), req, 10)
    b = outcomes(provider(fail_rate=0.5), req, 10)
    assert a == b and True in a and False in a


def test_fail_rate_is_as_configured() -> None:
    assert outcomes(provider(fail_rate=1.0), request(size=64), 3) == [False] * 3
    assert outcomes(provider(fail_rate=0.0), request(size=64), 3) == [True] * 3


def test_same_request_same_image_and_defects() -> None:
    req = request(seed=7)
    r1, r2 = provider(typo_rate=0.5, soft_rate=0.5).generate(req), provider(typo_rate=0.5,
                                                                             soft_rate=0.5).generate(req)
    assert r1.images[0].data == r2.images[0].data
    assert r1.metadata["defects"] == r2.metadata["defects"]


def test_defect_rates_hold_over_seeds() -> None:
    p = provider(typo_rate=0.5, soft_rate=0.0)
    typos = sum("typo" in p.generate(request(seed=s, size=96)).metadata["defects"] for s in range(60))
    assert 15 <= typos <= 45
    p = provider(typo_rate=0.0, soft_rate=0.0)
    assert not any(p.generate(request(seed=s, size=96)).metadata["defects"] for s in range(10))


def test_finisher_is_sharper_and_cleaner_than_turbo_draft() -> None:
    cat = Catalog.load()
    assert model_quality(cat.resolve("ideogram-v1-turbo")) < 0.2 < 0.45 <= model_quality(cat.resolve("sd3.5-medium"))
    p = provider()
    for seed in (1, 2, 3):
        draft = image(p.generate(request("ideogram-v1-turbo", seed=seed, size=768)).images[0].data)
        final = image(p.generate(request("sd3.5-medium", seed=seed, size=768)).images[0].data)
        assert sharpness.measure(final)["laplacian_var"] > sharpness.measure(draft)["laplacian_var"]
        # no banding in the finisher's backdrop: many distinct grey levels down the top rows' gradient
        grey = np.asarray(final.convert("L"), np.float32)[: final.height // 2, :40]
        assert len(np.unique(grey)) > 20


def _corr(a: Image.Image, b: Image.Image) -> float:
    x = np.asarray(a.convert("L").resize((48, 48)), np.float64).ravel()
    y = np.asarray(b.convert("L").resize((48, 48)), np.float64).ravel()
    return float(np.corrcoef(x, y)[0, 1])


def test_img2img_keeps_the_init_composition_without_double_exposure() -> None:
    p = provider()
    # a foreign init image: another brief's composition (a chocolate bar lying flat)
    other = p.generate(request(prompt='Dark chocolate bar wrapper, label "CACAO 72"', size=384)).images[0].data
    own = image(p.generate(request(size=384)).images[0].data)
    for strength in (0.3, 0.6, 0.9):
        out = image(p.generate(request(operation="img2img", init_image=other, strength=strength)).images[0].data)
        assert _corr(out, image(other)) > 0.95  # kept, not blended with its own can
        assert _corr(out, own) < 0.6
    # an earlier stage of the same brief: the model redraws its details on the same composition
    draft = p.generate(request("ideogram-v1-turbo", size=384)).images[0].data
    out = image(p.generate(request("sd3.5-medium", operation="img2img", init_image=draft,
                                   strength=0.6)).images[0].data)
    assert _corr(out, image(draft)) > 0.9
    assert sharpness.measure(out)["laplacian_var"] > sharpness.measure(image(draft))["laplacian_var"]
