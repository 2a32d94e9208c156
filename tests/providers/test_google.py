"""Google provider (google-genai 3.6.1) on the loopback Gemini API: Gemini image models, retired Imagen."""

from __future__ import annotations

import hashlib
from importlib.metadata import version

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
from image_gen.providers.google import SDK_VERSION, GoogleProvider
from tests.fakes import FakeGoogle, render_png
from tests.fakes.fixtures import GEMINI_KEY

PROMPT = 'Billboard photo of a bottle, label reads "AQUA PURE"'


@pytest.fixture
def provider(fake_google: FakeGoogle, monkeypatch: pytest.MonkeyPatch) -> GoogleProvider:
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake_google.url)
    return GoogleProvider(ProviderSettings(timeout_s=1.0))


def test_pinned_sdk_is_the_one_installed() -> None:
    assert version("google-genai") == SDK_VERSION


def test_gemini_text_to_image(provider: GoogleProvider, fake_google: FakeGoogle) -> None:
    result = provider.generate(
        ImageRequest(
            model="gemini-3-pro-image",
            vendor_model="gemini-3-pro-image",
            prompt=PROMPT,
            width=2048,
            height=1152,
            seed=5,
        )
    )
    (call,) = fake_google.records
    assert call.path == "/models/gemini-3-pro-image:generateContent" and call.auth_ok
    gen = call.json["generationConfig"]
    assert gen["responseModalities"] == ["IMAGE"] and gen["seed"] == 5
    assert gen["imageConfig"] == {"aspectRatio": "16:9", "imageSize": "2K"}
    img = decode_image(result.images[0].data)
    assert result.metadata["actual_size"] == f"{img.width}x{img.height}" and img.width > img.height
    assert result.metadata["usage"]["output_tokens"] == 1290 and result.cost_usd is None


def test_gemini_image_to_image_sends_the_image(provider: GoogleProvider, fake_google: FakeGoogle) -> None:
    init = render_png('"AQUA PURE"', (64, 64), tag="final")
    result = provider.generate(
        ImageRequest(
            model="gemini-2.5-flash-image",
            vendor_model="gemini-2.5-flash-image",
            prompt=PROMPT,
            operation="img2img",
            init_image=init,
            strength=0.3,
            width=1024,
            height=1024,
        )
    )
    (call,) = fake_google.records
    assert call.file_sha("inline_image") == hashlib.sha256(init).hexdigest()
    assert "imageSize" not in call.json["generationConfig"]["imageConfig"]  # not for 2.5 flash
    assert result.metadata["strength_not_sent"] == 0.3


def test_retired_imagen_names_the_successor(provider: GoogleProvider, fake_google: FakeGoogle) -> None:
    with pytest.raises(BadRequest, match="retired.*gemini-3-pro-image"):
        provider.generate(
            ImageRequest(model="imagen-4", vendor_model="imagen-4.0-generate-001", prompt=PROMPT)
        )
    assert fake_google.records[0].status == 404


def test_imagen_wire_format_when_served(provider: GoogleProvider, fake_google: FakeGoogle) -> None:
    fake_google.serve_imagen = True
    result = provider.generate(
        ImageRequest(
            model="imagen-4-fast",
            vendor_model="imagen-4.0-fast-generate-001",
            prompt=PROMPT,
            width=768,
            height=1024,
            num_images=2,
        )
    )
    (call,) = fake_google.records
    assert call.path.endswith(":predict")
    assert call.json == {
        "instances": [{"prompt": PROMPT}],
        "parameters": {"sampleCount": 2, "outputOptions": {"mimeType": "image/png"}, "aspectRatio": "3:4"},
    }
    assert len(result.images) == 2 and result.metadata["endpoint"] == "predict"


def test_bad_key(fake_google: FakeGoogle, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-wrong-77")
    provider = GoogleProvider(ProviderSettings(base_url=fake_google.url))
    with pytest.raises(AuthenticationFailed) as info:
        provider.generate(
            ImageRequest(model="gemini-3-pro-image", vendor_model="gemini-3-pro-image", prompt=PROMPT)
        )
    assert "AIza-wrong-77" not in str(info.value)


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("500", Transient),
        ("503", Transient),
        ("429", RateLimited),
        ("filter", ContentFiltered),
        ("truncate", Transient),
    ],
)
def test_faults_map_to_the_error_tree(
    provider: GoogleProvider, fake_google: FakeGoogle, fault: str, error: type[Exception]
) -> None:
    fake_google.faults.force(fault)
    with pytest.raises(error) as info:
        provider.generate(
            ImageRequest(model="gemini-3-pro-image", vendor_model="gemini-3-pro-image", prompt=PROMPT)
        )
    assert len(fake_google.records) == 1  # the SDK's own retries are off
    assert info.value.billed is (fault == "filter")  # type: ignore[attr-defined]
    assert info.value.maybe_billed is (fault == "truncate")  # type: ignore[attr-defined]
    assert str(info.value).startswith("google: ") and len(str(info.value)) > 20
    if fault == "429":
        assert info.value.retry_after == 0.0  # type: ignore[attr-defined]  # the Retry-After header


def test_hang_is_transient(fake_google: FakeGoogle, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    fake_google.faults.force("hang")
    provider = GoogleProvider(ProviderSettings(base_url=fake_google.url, timeout_s=0.3))
    with pytest.raises(Transient, match="timed out"):
        provider.generate(
            ImageRequest(model="gemini-3-pro-image", vendor_model="gemini-3-pro-image", prompt=PROMPT)
        )


def test_google_api_key_also_works(fake_google: FakeGoogle, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", GEMINI_KEY)
    provider = GoogleProvider(ProviderSettings(base_url=fake_google.url))
    assert provider.is_configured()
    provider.generate(
        ImageRequest(model="gemini-3-pro-image", vendor_model="gemini-3-pro-image", prompt=PROMPT)
    )
    assert fake_google.records[0].auth_ok


@pytest.mark.parametrize(("side", "size"), [(1024, "1K"), (1536, "2K"), (4096, "4K")])
def test_gemini_asks_the_image_size_that_covers_the_asked_size(
    provider: GoogleProvider, fake_google: FakeGoogle, side: int, size: str
) -> None:
    result = provider.generate(
        ImageRequest(model="gemini-3-pro-image", vendor_model="gemini-3-pro-image", prompt=PROMPT, width=side,
                     height=side)
    )
    (call,) = fake_google.records
    assert call.json["generationConfig"]["imageConfig"] == {"aspectRatio": "1:1", "imageSize": size}
    times = {"1K": 1, "2K": 2, "4K": 4}[size]
    assert result.metadata["actual_size"] == "x".join(map(str, fake_google.scaled((1024 * times, 1024 * times))))
    assert fake_google.billed_usd == {"1K": 0.134, "2K": 0.134, "4K": 0.24}[size]


def test_fake_gemini_checks_image_config_names_and_types(fake_google: FakeGoogle) -> None:
    import httpx

    url = f"{fake_google.url}/v1/models/gemini-3-pro-image:generateContent"
    contents = [{"role": "user", "parts": [{"text": "x"}]}]
    bad = [{"imageSize": 4}, {"image_size": "4K"}, {"imageSize": "8K"}, {"aspectRatio": "7:3"}]
    with httpx.Client() as client:
        for cfg in bad:
            body = {"contents": contents, "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": cfg}}
            resp = client.post(url, json=body, headers={"x-goog-api-key": GEMINI_KEY})
            assert resp.status_code == 400 and resp.json()["error"]["status"] == "INVALID_ARGUMENT", cfg
    assert fake_google.billed_calls == 0
