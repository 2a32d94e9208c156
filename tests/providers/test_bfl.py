"""Black Forest Labs provider on its loopback API: the wire format per model, polling inside the call's deadline,
moderation, the result link (downloaded at once, fetched again when it expired, never generated again), the
account's active-task limit, and no key where it does not belong. Faults shared with the other vendors are in
``test_faults_and_deadlines``."""

from __future__ import annotations

import base64
import hashlib
import threading
import time

import httpx
import pytest

from image_gen.catalog import Catalog
from image_gen.providers.base import (
    AuthenticationFailed,
    ContentFiltered,
    ImageRequest,
    NotConfigured,
    ProviderError,
    ProviderSettings,
    RateLimited,
    Transient,
    decode_image,
)
from image_gen.providers.bfl import BflProvider, flux2_size, strength_to_image_prompt
from tests.fakes import FakeBFL, render_png
from tests.fakes.fixtures import BFL_KEY

PROMPT = 'Billboard photo of a bottle, label reads "AQUA PURE"'


@pytest.fixture
def bfl(fake_bfl: FakeBFL, monkeypatch: pytest.MonkeyPatch) -> FakeBFL:
    monkeypatch.setenv("BFL_API_KEY", BFL_KEY)
    monkeypatch.setenv("BFL_BASE_URL", fake_bfl.url)
    return fake_bfl


def provider(**settings: object) -> BflProvider:
    settings.setdefault("timeout_s", 5.0)
    return BflProvider(ProviderSettings(**settings))  # type: ignore[arg-type]


def ultra(**kw: object) -> ImageRequest:
    return ImageRequest(model="flux-pro-1.1-ultra", vendor_model="flux-pro-1.1-ultra", prompt=PROMPT, **kw)  # type: ignore[arg-type]


def flux2(model: str = "flux-2-pro", **kw: object) -> ImageRequest:
    return ImageRequest(model=model, vendor_model=model, prompt=PROMPT, **kw)  # type: ignore[arg-type]


def test_ultra_submits_polls_until_ready_and_downloads_without_the_key(bfl: FakeBFL) -> None:
    bfl.pending_polls = 2
    result = provider().generate(ultra(width=2048, height=2048, seed=7))
    (post,) = bfl.calls("/v1/flux-pro-1.1-ultra")
    assert post.auth_ok and "x-key" in post.header_names
    assert post.json == {
        "prompt": PROMPT,
        "seed": 7,
        "safety_tolerance": 2,
        "output_format": "png",
        "aspect_ratio": "1:1",
        "raw": False,
    }
    polls = bfl.calls("/v1/get_result")
    assert len(polls) == 3 and all(p.auth_ok for p in polls)  # Pending, Pending, Ready
    (get,) = bfl.calls("/delivery/")
    assert "x-key" not in get.header_names  # the signed link is fetched without the key
    img = decode_image(result.images[0].data)
    assert (img.width, img.height) == bfl.scaled((2048, 2048))
    assert result.metadata["actual_size"] == f"{img.width}x{img.height}" and result.metadata["polls"] == 3
    assert result.request_id == result.metadata["task_id"] and result.seed == 7
    # the vendor's own cost (6 credits) is the call's, and the catalog agrees
    assert result.cost_usd == bfl.billed_usd == Catalog.load().resolve("flux-pro-1.1-ultra").price_for(2048, 2048)


def test_ultra_raw_and_image_prompt(bfl: FakeBFL) -> None:
    init = render_png('"AQUA PURE"', (64, 48), tag="final")
    result = provider().generate(
        ultra(operation="img2img", init_image=init, strength=0.3, width=2752, height=1536, options={"raw": True})
    )
    (post,) = bfl.calls("/v1/flux-pro-1.1-ultra")
    assert post.json["raw"] is True and post.json["aspect_ratio"] == "16:9"
    assert post.json["image_prompt_strength"] == pytest.approx(0.7)  # strength 0.3 keeps most of the image
    assert post.file_sha("image_prompt") == hashlib.sha256(init).hexdigest()
    assert "width" not in post.json and "height" not in post.json  # Ultra takes a ratio, not a size
    assert result.metadata["raw"] is True
    assert result.metadata["sent"]["image_prompt"].endswith("base64 chars>")  # no image bytes in the record


@pytest.mark.parametrize(
    ("asked", "sent"),
    [((1024, 1024), (1024, 1024)), ((1000, 700), (992, 688)), ((4096, 4096), (2048, 2048)), ((40, 40), (64, 64))],
)
def test_flux2_size_is_in_multiples_of_16_and_at_most_4mp(asked: tuple[int, int], sent: tuple[int, int]) -> None:
    assert flux2_size(*asked) == sent
    assert sent[0] * sent[1] <= 2048 * 2048


def test_flux2_edit_sends_input_image_and_reports_the_vendors_cost(bfl: FakeBFL) -> None:
    init = render_png('"AQUA PURE"', (64, 64), tag="layout")
    result = provider().generate(
        flux2("flux-2-flex", operation="img2img", init_image=init, strength=0.5, width=1920, height=1080,
              steps=80, guidance_scale=12.0, seed=3)
    )
    (post,) = bfl.calls("/v1/flux-2-flex")
    assert (post.json["width"], post.json["height"]) == (1920, 1072)
    assert post.json["steps"] == 50 and post.json["guidance"] == 10.0  # clamped to what flex takes
    assert base64.b64decode(post.json["input_image"]) == init
    assert result.metadata["strength_not_sent"] == 0.5
    assert result.cost_usd == pytest.approx(bfl.billed_usd) and result.cost_usd > 0.1  # 2 MP out + 1 MP in


@pytest.mark.parametrize(
    ("force", "status"), [("filter", "Content Moderated"), ("Request Moderated", "Request Moderated")]
)
def test_moderation_is_content_filtered_and_not_charged(bfl: FakeBFL, force: str, status: str) -> None:
    if force == "filter":
        bfl.faults.force("filter")
    else:
        bfl.force_task(force)
    with pytest.raises(ContentFiltered, match=status) as info:
        provider().generate(flux2())
    assert not info.value.billed and not info.value.maybe_billed and info.value.request_id
    assert bfl.billed_calls == 0 and len(bfl.calls("/v1/flux-2-pro")) == 1


@pytest.mark.parametrize("outcome", ["Error", "Task not found"])
def test_a_failed_or_lost_task_is_maybe_billed_and_not_resubmitted(bfl: FakeBFL, outcome: str) -> None:
    bfl.force_task(outcome)
    with pytest.raises(Transient, match=outcome) as info:
        provider().generate(flux2())
    assert info.value.maybe_billed and not info.value.billed
    assert info.value.request_id and info.value.request_id in str(info.value)
    assert len(bfl.calls("/v1/flux-2-pro")) == 1


@pytest.mark.timing
def test_slow_polling_ends_at_the_calls_deadline(bfl: FakeBFL) -> None:
    bfl.hang_s = 30.0
    bfl.faults.force("slow")
    started = time.monotonic()
    with pytest.raises(Transient, match="still Pending") as info:
        provider(timeout_s=0.8).generate(flux2())
    assert time.monotonic() - started < 0.8 + 0.6
    assert info.value.maybe_billed and "timeout_s=0.8" in str(info.value)
    assert len(bfl.calls("/v1/get_result")) >= 1 and bfl.billed_calls == 1


def test_poll_hiccups_are_polled_again_never_resubmitted(bfl: FakeBFL) -> None:
    bfl.poll_errors = 2
    provider(options={"poll_interval_s": 0.01}).generate(flux2())
    assert [p.status for p in bfl.calls("/v1/get_result")] == [503, 503, 200, 200]
    assert len(bfl.calls("/v1/flux-2-pro")) == 1


def test_an_expired_link_is_fetched_again_from_a_fresh_poll(bfl: FakeBFL) -> None:
    bfl.faults.force("download_fail")
    result = provider(options={"download_backoff_s": 0.01}).generate(flux2())
    gets = bfl.calls("/delivery/")
    assert [g.status for g in gets] == [403, 200] and gets[0].path != gets[1].path  # a new signed link
    assert result.metadata["download_tries"] == 2
    assert len(bfl.calls("/v1/flux-2-pro")) == 1 and bfl.billed_calls == 1


def test_a_link_that_stays_expired_is_billed_and_not_generated_again(bfl: FakeBFL) -> None:
    bfl.faults.force("expired_url")
    with pytest.raises(Transient, match="could not be downloaded") as info:
        provider(options={"download_backoff_s": 0.01}).generate(flux2())
    assert info.value.billed and not info.value.maybe_billed
    assert len(bfl.calls("/delivery/")) == 3 and len(bfl.calls("/v1/flux-2-pro")) == 1


def test_the_active_task_limit_is_respected_per_key(bfl: FakeBFL) -> None:
    bfl.max_active = 2
    bfl.pending_polls = 2
    p = provider(options={"max_active_tasks": 2, "poll_interval_s": 0.02}, max_concurrency=8)
    errors: list[ProviderError] = []

    def one() -> None:
        try:
            p.generate(flux2())
        except ProviderError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and bfl.peak_active == 2
    assert [r.status for r in bfl.calls("/v1/flux-2-pro")] == [200] * 6  # never refused: the limiter waited


def test_the_vendors_active_task_refusal_is_rate_limited(bfl: FakeBFL) -> None:
    bfl.max_active = 0
    with pytest.raises(RateLimited, match="active tasks") as info:
        provider().generate(flux2())
    assert info.value.retry_after == 1.0 and bfl.billed_calls == 0


def test_bad_key_and_missing_key(bfl: FakeBFL, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BFL_API_KEY", "bfl-wrong-key-9911")
    with pytest.raises(AuthenticationFailed) as info:
        provider().generate(flux2())
    assert "bfl-wrong-key-9911" not in str(info.value) and "HTTP 403" in str(info.value)
    monkeypatch.delenv("BFL_API_KEY")
    monkeypatch.setenv("IMAGE_GEN_KEYS_FILE", "/nonexistent/keys.toml")
    assert not provider().is_configured()
    with pytest.raises(NotConfigured, match="BFL_API_KEY"):
        provider().generate(flux2())


def test_the_key_goes_to_no_other_host(bfl: FakeBFL) -> None:
    p = provider()
    p._check_host(f"{bfl.url}/v1/get_result?id=x", {}, "x")
    p._check_host("https://api.us1.bfl.ai/v1/get_result?id=x", {}, "x")
    with pytest.raises(Transient, match="not a BFL host"):
        p._check_host("https://evil.example.com/v1/get_result?id=x", {}, "x")


def test_the_fake_is_strict_about_auth_names_and_types(bfl: FakeBFL) -> None:
    """The loopback server refuses what the vendor refuses, so the provider's wire format is really checked."""
    url = f"{bfl.url}/v1/flux-2-pro"
    with httpx.Client() as client:
        assert client.post(url, json={"prompt": "x"}).status_code == 403  # no x-key
        key = {"x-key": BFL_KEY}
        cases = [
            ({"prompt": "x", "width": 1000}, "width"),  # not a multiple of 16
            ({"prompt": "x", "num_images": 2}, "num_images"),  # not a field
            ({"prompt": "x", "seed": "7"}, "seed"),  # a string where an int belongs
            ({"prompt": "x", "width": 4096, "height": 4096}, "width"),  # over 4 MP
        ]
        for body, loc in cases:
            resp = client.post(url, json=body, headers=key)
            assert resp.status_code == 422 and resp.json()["detail"][0]["loc"] == ["body", loc], body
        resp = client.post(f"{bfl.url}/v1/flux-pro-1.1-ultra", json={"prompt": "x", "raw": "true"}, headers=key)
        assert resp.status_code == 422 and resp.json()["detail"][0]["loc"] == ["body", "raw"]
    assert bfl.billed_calls == 0


def test_strength_maps_to_image_prompt_strength() -> None:
    assert strength_to_image_prompt(0.0) == 1.0 and strength_to_image_prompt(1.0) == 0.0
    assert strength_to_image_prompt(None) == 0.5


def test_providers_status_lists_bfl_by_its_variable(bfl: FakeBFL) -> None:
    from image_gen.providers.status import provider_status

    rows = {r["name"]: r for r in provider_status()}
    assert rows["bfl"]["configured"] and rows["bfl"]["key_from"] == "BFL_API_KEY"
    assert rows["bfl"]["key_vars"] == ["BFL_API_KEY"] and rows["bfl"]["base_url"] == bfl.url
    assert BFL_KEY not in repr(rows)
