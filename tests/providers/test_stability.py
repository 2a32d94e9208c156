"""Stability provider against the loopback Stability: SD3.5 modes, upscalers (creative polled), errors."""

from __future__ import annotations

import hashlib

import pytest

from image_gen.providers.base import (
    AuthenticationFailed,
    BadRequest,
    ContentFiltered,
    ImageRequest,
    ProviderSettings,
    RateLimited,
    Transient,
    decode_image,
)
from image_gen.providers.stability import StabilityProvider
from tests.fakes import FakeStability, render_png
from tests.fakes.fixtures import STABILITY_KEY

PROMPT = 'Studio photo of a bottle, label reads "AQUA PURE"'


@pytest.fixture
def provider(fake_stability: FakeStability, monkeypatch: pytest.MonkeyPatch) -> StabilityProvider:
    monkeypatch.setenv("STABILITY_API_KEY", STABILITY_KEY)
    monkeypatch.setenv("STABILITY_BASE_URL", fake_stability.url)
    return StabilityProvider(ProviderSettings(timeout_s=1.0))


def _init_png() -> bytes:
    return render_png('"AQUA PURE"', (80, 48), tag="layout")


def test_text_to_image_multipart(provider: StabilityProvider, fake_stability: FakeStability) -> None:
    result = provider.generate(
        ImageRequest(
            model="sd3.5-large",
            vendor_model="sd3.5-large",
            prompt=PROMPT,
            width=2000,
            height=860,
            seed=11,
            guidance_scale=6.0,
            steps=40,
            negative_prompt="blur",
        )
    )
    (call,) = fake_stability.calls("/generate/sd3")
    assert call.auth_ok and call.status == 200
    assert call.form == {
        "prompt": PROMPT,
        "model": "sd3.5-large",
        "output_format": "png",
        "mode": "text-to-image",
        "aspect_ratio": "21:9",
        "seed": "11",
        "negative_prompt": "blur",
        "cfg_scale": "6.0",
    }
    assert result.seed == 11 and result.request_id
    img = decode_image(result.images[0].data)
    assert result.metadata["actual_size"] == f"{img.width}x{img.height}"
    assert result.metadata["credits"] == 6.5 and result.cost_usd is None
    assert any("steps" in m for m in result.metadata["ignored"])


def test_image_to_image_sends_the_handoff_image_and_strength(
    provider: StabilityProvider, fake_stability: FakeStability
) -> None:
    init = _init_png()
    provider.generate(
        ImageRequest(
            model="sd3.5-medium",
            vendor_model="sd3.5-medium",
            prompt=PROMPT,
            operation="img2img",
            init_image=init,
            strength=0.35,
            width=1024,
            height=1024,
        )
    )
    (call,) = fake_stability.calls("/generate/sd3")
    assert call.file_sha("image") == hashlib.sha256(init).hexdigest()
    assert call.form["mode"] == "image-to-image" and call.form["strength"] == "0.35"
    assert "aspect_ratio" not in call.form  # not valid in image-to-image mode


def test_guidance_is_clamped_to_the_vendor_range(
    provider: StabilityProvider, fake_stability: FakeStability
) -> None:
    result = provider.generate(
        ImageRequest(model="sd3.5-medium", vendor_model="sd3.5-medium", prompt=PROMPT, guidance_scale=15.0)
    )
    assert fake_stability.calls("/generate/sd3")[0].form["cfg_scale"] == "10.0"
    assert "clamped" in result.metadata["ignored"][0]


def test_content_filtered_finish_reason(provider: StabilityProvider, fake_stability: FakeStability) -> None:
    fake_stability.faults.force("filter")
    with pytest.raises(ContentFiltered) as info:
        provider.generate(ImageRequest(model="sd3.5-medium", vendor_model="sd3.5-medium", prompt=PROMPT))
    assert info.value.billed is True and info.value.request_id


@pytest.mark.parametrize("kind", ["fast", "conservative"])
def test_sync_upscalers(provider: StabilityProvider, fake_stability: FakeStability, kind: str) -> None:
    init = _init_png()
    result = provider.generate(
        ImageRequest(
            model=f"stability-upscale-{kind}",
            vendor_model=f"upscale-{kind}",
            prompt=PROMPT,
            operation="upscale",
            init_image=init,
        )
    )
    (call,) = fake_stability.calls(f"/upscale/{kind}")
    assert call.file_sha("image") == hashlib.sha256(init).hexdigest()
    assert ("prompt" in call.form) is (kind == "conservative")
    factor = 4 if kind == "fast" else 2
    assert decode_image(result.images[0].data).size == (80 * factor, 48 * factor)


def test_creative_upscale_is_polled_until_done(
    provider: StabilityProvider, fake_stability: FakeStability
) -> None:
    fake_stability.creative_polls = 3
    result = provider.generate(
        ImageRequest(
            model="stability-upscale-creative",
            vendor_model="upscale-creative",
            prompt=PROMPT,
            operation="upscale",
            init_image=_init_png(),
            options={"poll_interval_s": 0.01},
        )
    )
    polls = fake_stability.calls("/v2beta/results/")
    assert [p.status for p in polls] == [202, 202, 202, 200]
    assert all(p.auth_ok for p in polls)
    assert result.metadata["polls"] == 4
    assert all(p.path.endswith(result.metadata["generation_id"]) for p in polls)


def test_creative_upscale_times_out_billed(
    provider: StabilityProvider, fake_stability: FakeStability
) -> None:
    fake_stability.creative_polls = -1
    with pytest.raises(Transient, match="not done") as info:
        provider.generate(
            ImageRequest(
                model="stability-upscale-creative",
                vendor_model="upscale-creative",
                prompt=PROMPT,
                operation="upscale",
                init_image=_init_png(),
                options={"poll_interval_s": 0.02, "poll_timeout_s": 0.1},
            )
        )
    assert info.value.billed is True and info.value.request_id
    assert len(fake_stability.calls("/upscale/creative")) == 1


@pytest.mark.parametrize(
    ("fault", "error"),
    [("500", Transient), ("503", Transient), ("429", RateLimited), ("truncate", Transient)],
)
def test_faults_map_to_the_error_tree(
    provider: StabilityProvider, fake_stability: FakeStability, fault: str, error: type[Exception]
) -> None:
    fake_stability.faults.force(fault)
    with pytest.raises(error) as info:
        provider.generate(ImageRequest(model="sd3.5-medium", vendor_model="sd3.5-medium", prompt=PROMPT))
    assert len(fake_stability.calls("/generate/sd3")) == 1
    # Refusals are free; an answer cut off after a 200 may have been billed (the runner charges it as such).
    assert info.value.billed is False  # type: ignore[attr-defined]
    assert info.value.maybe_billed is (fault == "truncate")  # type: ignore[attr-defined]


def test_hang_is_transient(fake_stability: FakeStability, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STABILITY_API_KEY", STABILITY_KEY)
    fake_stability.faults.force("hang")
    provider = StabilityProvider(ProviderSettings(base_url=fake_stability.url, timeout_s=0.3))
    with pytest.raises(Transient, match="timed out"):
        provider.generate(ImageRequest(model="sd3.5-medium", vendor_model="sd3.5-medium", prompt=PROMPT))


def test_bad_key(fake_stability: FakeStability, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STABILITY_API_KEY", "sk-wrong-999")
    provider = StabilityProvider(ProviderSettings(base_url=fake_stability.url))
    with pytest.raises(AuthenticationFailed) as info:
        provider.generate(ImageRequest(model="sd3.5-medium", vendor_model="sd3.5-medium", prompt=PROMPT))
    assert "sk-wrong-999" not in str(info.value)
    assert fake_stability.records[0].status == 401


def test_unknown_model_is_refused_before_sending(
    provider: StabilityProvider, fake_stability: FakeStability
) -> None:
    with pytest.raises(BadRequest):
        provider.generate(ImageRequest(model="sd4", vendor_model="sd4", prompt=PROMPT))
    assert fake_stability.records == []
