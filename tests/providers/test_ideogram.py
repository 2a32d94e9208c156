"""Ideogram provider against the loopback Ideogram: wire format, handoff, sizes, safety, limits and errors."""

from __future__ import annotations

import hashlib
import threading
import time

import httpx
import pytest

from image_gen.providers.base import (
    AuthenticationFailed,
    BadRequest,
    ContentFiltered,
    ImageRequest,
    NotConfigured,
    ProviderSettings,
    RateLimited,
    Transient,
    decode_image,
)
from image_gen.providers.ideogram import IdeogramProvider, strength_to_weight
from tests.fakes import FakeIdeogram, render_png
from tests.fakes.fixtures import IDEOGRAM_KEY

PROMPT = 'Product hero shot: steel water bottle, label reads "AQUA PURE"'


@pytest.fixture
def provider(fake_ideogram: FakeIdeogram, monkeypatch: pytest.MonkeyPatch) -> IdeogramProvider:
    monkeypatch.setenv("IDEOGRAM_API_KEY", IDEOGRAM_KEY)
    monkeypatch.setenv("IDEOGRAM_BASE_URL", fake_ideogram.url)
    return IdeogramProvider(ProviderSettings(timeout_s=1.0, connect_timeout_s=1.0))


def _init_png() -> bytes:
    return render_png('"AQUA PURE"', (96, 64), tag="draft")


def test_v1_turbo_generate_sends_the_legacy_json_and_records_what_came_back(
    provider: IdeogramProvider, fake_ideogram: FakeIdeogram
) -> None:
    req = ImageRequest(
        model="ideogram-v1-turbo",
        vendor_model="V_1_TURBO",
        prompt=PROMPT,
        width=1024,
        height=768,
        seed=42,
        negative_prompt="blurry",
    )
    result = provider.generate(req)

    (call,) = fake_ideogram.calls("/generate")
    assert call.auth_ok and call.status == 200
    sent = call.json["image_request"]
    assert sent["model"] == "V_1_TURBO"
    assert sent["magic_prompt_option"] == "OFF"  # label text stays as written
    assert sent["aspect_ratio"] == "ASPECT_4_3"
    assert sent["seed"] == 42 and sent["negative_prompt"] == "blurry"
    img = decode_image(result.images[0].data)
    # The size actually returned is recorded, and is what the bytes decode to.
    assert result.metadata["actual_size"] == f"{img.width}x{img.height}"
    assert (result.images[0].width, result.images[0].height) == img.size
    assert result.seed == 42 and result.metadata["endpoint"] == "/generate"
    assert "rewritten_prompt" not in result.metadata
    assert result.cost_usd is None  # the runner charges the catalog price


def test_download_carries_no_credential(provider: IdeogramProvider, fake_ideogram: FakeIdeogram) -> None:
    provider.generate(ImageRequest(model="ideogram-v2a", vendor_model="V_2A", prompt=PROMPT))
    (download,) = [r for r in fake_ideogram.records if r.method == "GET"]
    assert "api-key" not in download.header_names and "authorization" not in download.header_names


def test_v2a_drops_negative_prompt_and_sends_style(
    provider: IdeogramProvider, fake_ideogram: FakeIdeogram
) -> None:
    result = provider.generate(
        ImageRequest(
            model="ideogram-v2a",
            vendor_model="V_2A",
            prompt=PROMPT,
            negative_prompt="blurry",
            options={"style_type": "design"},
        )
    )
    sent = fake_ideogram.calls("/generate")[0].json["image_request"]
    assert "negative_prompt" not in sent and sent["style_type"] == "DESIGN"
    assert "V_2A" in result.metadata["negative_prompt_dropped"]


def test_magic_prompt_rewrite_is_recorded_beside_the_original(provider: IdeogramProvider) -> None:
    result = provider.generate(
        ImageRequest(model="ideogram-v2a", vendor_model="V_2A", prompt=PROMPT, options={"magic_prompt": "ON"})
    )
    assert result.metadata["prompt"] == PROMPT
    assert result.metadata["rewritten_prompt"] != PROMPT and PROMPT in result.metadata["rewritten_prompt"]
    assert result.metadata["magic_prompt"] == "ON"


@pytest.mark.parametrize(("strength", "weight"), [(0.0, 100), (0.3, 70), (1.0, 1), (None, 50)])
def test_strength_to_image_weight(strength: float | None, weight: int) -> None:
    assert strength_to_weight(strength) == weight


def test_img2img_is_a_remix_and_the_handoff_image_arrives(
    provider: IdeogramProvider, fake_ideogram: FakeIdeogram
) -> None:
    init = _init_png()
    result = provider.generate(
        ImageRequest(
            model="ideogram-v2a",
            vendor_model="V_2A",
            prompt=PROMPT,
            operation="img2img",
            init_image=init,
            strength=0.25,
            seed=7,
        )
    )
    (call,) = fake_ideogram.calls("/remix")
    assert call.file_sha("image_file") == hashlib.sha256(init).hexdigest()
    assert call.file_types["image_file"] == "image/png"
    assert call.json["image_weight"] == 75 and call.json["model"] == "V_2A"
    assert result.metadata["endpoint"] == "/remix"


def test_v3_generate_uses_its_endpoint_with_rendering_speed(
    provider: IdeogramProvider, fake_ideogram: FakeIdeogram
) -> None:
    result = provider.generate(
        ImageRequest(
            model="ideogram-v3-turbo",
            vendor_model="V_3",
            prompt=PROMPT,
            width=1920,
            height=1080,
            options={"rendering_speed": "TURBO"},
        )
    )
    (call,) = fake_ideogram.calls("/v1/ideogram-v3/generate")
    assert call.form["rendering_speed"] == "TURBO" and call.form["aspect_ratio"] == "16x9"
    assert "model" not in call.form and call.form["magic_prompt"] == "OFF"
    w, h = (int(v) for v in result.metadata["actual_size"].split("x"))
    assert w > h


def test_v3_remix_sends_the_image(provider: IdeogramProvider, fake_ideogram: FakeIdeogram) -> None:
    init = _init_png()
    provider.generate(
        ImageRequest(
            model="ideogram-v3",
            vendor_model="V_3",
            prompt=PROMPT,
            operation="img2img",
            init_image=init,
            strength=0.6,
        )
    )
    (call,) = fake_ideogram.calls("/v1/ideogram-v3/remix")
    assert call.file_sha("image") == hashlib.sha256(init).hexdigest() and call.form["image_weight"] == "40"


def test_upscale(provider: IdeogramProvider, fake_ideogram: FakeIdeogram) -> None:
    init = _init_png()
    result = provider.generate(
        ImageRequest(
            model="ideogram-upscale",
            vendor_model="UPSCALE",
            prompt=PROMPT,
            operation="upscale",
            init_image=init,
            strength=0.2,
        )
    )
    (call,) = fake_ideogram.calls("/upscale")
    assert call.json["resemblance"] == 80
    assert decode_image(result.images[0].data).size == (192, 128)


def test_explicit_resolution_option(provider: IdeogramProvider, fake_ideogram: FakeIdeogram) -> None:
    provider.generate(
        ImageRequest(
            model="ideogram-v2a", vendor_model="V_2A", prompt=PROMPT, options={"resolution": "1280x768"}
        )
    )
    sent = fake_ideogram.calls("/generate")[0].json["image_request"]
    assert sent["resolution"] == "RESOLUTION_1280_768" and "aspect_ratio" not in sent


def test_unsafe_image_is_a_billed_content_filter(
    provider: IdeogramProvider, fake_ideogram: FakeIdeogram
) -> None:
    fake_ideogram.faults.force("filter")
    with pytest.raises(ContentFiltered) as info:
        provider.generate(ImageRequest(model="ideogram-v2a", vendor_model="V_2A", prompt=PROMPT))
    assert info.value.billed is True


@pytest.mark.parametrize("fault", ["500", "503"])
def test_server_errors_are_transient_and_sent_once(
    provider: IdeogramProvider, fake_ideogram: FakeIdeogram, fault: str
) -> None:
    fake_ideogram.faults.force(fault)
    with pytest.raises(Transient) as info:
        provider.generate(ImageRequest(model="ideogram-v2a", vendor_model="V_2A", prompt=PROMPT))
    assert info.value.billed is False  # the vendor did not finish: not billed
    assert len(fake_ideogram.calls("/generate")) == 1  # retries belong to the runner


def test_429_with_retry_after(provider: IdeogramProvider, fake_ideogram: FakeIdeogram) -> None:
    fake_ideogram.faults.force("429")
    with pytest.raises(RateLimited) as info:
        provider.generate(ImageRequest(model="ideogram-v2a", vendor_model="V_2A", prompt=PROMPT))
    assert info.value.retry_after == 0.0


def test_inflight_429_is_a_rate_limit(provider: IdeogramProvider, fake_ideogram: FakeIdeogram) -> None:
    fake_ideogram.faults.force("429_inflight")
    with pytest.raises(RateLimited, match="in-flight"):
        provider.generate(ImageRequest(model="ideogram-v2a", vendor_model="V_2A", prompt=PROMPT))


@pytest.mark.timing
def test_hang_past_the_read_timeout_is_transient(
    fake_ideogram: FakeIdeogram, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDEOGRAM_API_KEY", IDEOGRAM_KEY)
    fake_ideogram.faults.force("hang")
    provider = IdeogramProvider(ProviderSettings(base_url=fake_ideogram.url, timeout_s=0.3))
    started = time.monotonic()
    with pytest.raises(Transient, match="timed out"):
        provider.generate(ImageRequest(model="ideogram-v2a", vendor_model="V_2A", prompt=PROMPT))
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("fault", ["oversize", "expired_url"])
def test_bad_downloads_are_transient(
    provider: IdeogramProvider, fake_ideogram: FakeIdeogram, fault: str
) -> None:
    fake_ideogram.faults.force(fault)
    with pytest.raises(Transient) as info:
        provider.generate(ImageRequest(model="ideogram-v2a", vendor_model="V_2A", prompt=PROMPT))
    assert info.value.billed is True  # the vendor made (and charged for) the image; only the download failed
    assert len(fake_ideogram.calls("/generate")) == 1  # fetched again at most, never generated again


def test_cut_off_answer_may_have_been_billed(provider: IdeogramProvider, fake_ideogram: FakeIdeogram) -> None:
    fake_ideogram.faults.force("truncate")
    with pytest.raises(Transient, match="cut off") as info:
        provider.generate(ImageRequest(model="ideogram-v2a", vendor_model="V_2A", prompt=PROMPT))
    assert info.value.maybe_billed is True and info.value.billed is False


def test_bad_key_is_refused_without_showing_it(
    fake_ideogram: FakeIdeogram, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDEOGRAM_API_KEY", "wrong-key-123456")
    provider = IdeogramProvider(ProviderSettings(base_url=fake_ideogram.url))
    for op in ("generate", "img2img"):
        with pytest.raises(AuthenticationFailed) as info:
            provider.generate(
                ImageRequest(
                    model="ideogram-v2a",
                    vendor_model="V_2A",
                    prompt=PROMPT,
                    operation=op,
                    init_image=_init_png(),
                )
            )
        assert "wrong-key-123456" not in str(info.value)
    assert [r.status for r in fake_ideogram.records] == [401, 403]


def test_not_configured_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IDEOGRAM_API_KEY", raising=False)
    provider = IdeogramProvider(ProviderSettings())
    assert not provider.is_configured()
    with pytest.raises(NotConfigured):
        provider.generate(ImageRequest(model="ideogram-v2a", vendor_model="V_2A", prompt=PROMPT))


def test_invalid_option_is_a_bad_request_before_sending(
    provider: IdeogramProvider, fake_ideogram: FakeIdeogram
) -> None:
    with pytest.raises(BadRequest):
        provider.generate(
            ImageRequest(
                model="ideogram-v3", vendor_model="V_3", prompt=PROMPT, options={"rendering_speed": "WARP"}
            )
        )
    assert fake_ideogram.records == []


def test_injected_client_is_used(fake_ideogram: FakeIdeogram, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDEOGRAM_API_KEY", IDEOGRAM_KEY)
    seen: list[str] = []
    client = httpx.Client(event_hooks={"request": [lambda r: seen.append(r.url.path)]})
    provider = IdeogramProvider(ProviderSettings(base_url=fake_ideogram.url, http_client=client))
    provider.generate(ImageRequest(model="ideogram-v2a", vendor_model="V_2A", prompt=PROMPT))
    client.close()
    assert seen[0] == "/generate" and seen[1].startswith("/files/")


def test_inflight_limiter_holds_one_place_per_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight concurrent 4-image requests against an account limit of 10: never over, never a 429."""
    key = "limiter-test-key-" + str(time.monotonic_ns())  # a fresh account: its own limiter
    monkeypatch.setenv("IDEOGRAM_API_KEY", key)
    with FakeIdeogram(key, latency_s=0.15, size_scale=0.05) as fake:
        provider = IdeogramProvider(ProviderSettings(base_url=fake.url, max_concurrency=8, timeout_s=5))
        errors: list[BaseException] = []

        def one() -> None:
            try:
                provider.generate(
                    ImageRequest(model="ideogram-v2a", vendor_model="V_2A", prompt=PROMPT, num_images=4)
                )
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=one) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = [r.status for r in fake.calls("/generate")]
    assert errors == []
    assert statuses == [200] * 8
    assert 4 <= fake.peak_inflight <= 10  # two requests (8 images) at a time, never three (12)


def test_vendor_limit_from_a_429_lowers_the_local_limiter(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "limiter-lower-key-" + str(time.monotonic_ns())
    monkeypatch.setenv("IDEOGRAM_API_KEY", key)
    with FakeIdeogram(key, max_inflight=3, size_scale=0.05) as fake:
        provider = IdeogramProvider(ProviderSettings(base_url=fake.url))
        with pytest.raises(RateLimited):
            provider.generate(
                ImageRequest(model="ideogram-v2a", vendor_model="V_2A", prompt=PROMPT, num_images=4)
            )
        from image_gen.providers import _http

        assert _http.shared_limiter("ideogram", key, 10).capacity == 3
        # Under the vendor's limit, a request goes through.
        result = provider.generate(
            ImageRequest(model="ideogram-v2a", vendor_model="V_2A", prompt=PROMPT, num_images=2)
        )
    assert len(result.images) == 2
