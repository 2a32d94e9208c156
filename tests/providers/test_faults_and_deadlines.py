"""Every vendor provider against its loopback fake under each injected fault: the call's deadline holds, each
fault maps to the right error and says truthfully what it cost (``billed`` / ``maybe_billed`` / free), the fake's
own bill agrees, Ideogram and BFL re-fetch a failed download without generating again, and no key reaches a
message. BFL's own polling and moderation cases are in ``test_bfl``."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from image_gen.providers.base import (
    ContentFiltered,
    ImageRequest,
    ProviderError,
    ProviderSettings,
    RateLimited,
    Transient,
)
from image_gen.providers.bfl import BflProvider
from image_gen.providers.fal import FalProvider
from image_gen.providers.google import GoogleProvider
from image_gen.providers.ideogram import IdeogramProvider
from image_gen.providers.openai_images import OpenAIImagesProvider
from image_gen.providers.replicate import ReplicateProvider
from image_gen.providers.stability import StabilityProvider
from tests.fakes import FakeBFL, FakeGoogle, FakeIdeogram, FakeStability
from tests.fakes._vendor import FakeVendor
from tests.fakes.fixtures import BFL_KEY, GEMINI_KEY, IDEOGRAM_KEY, STABILITY_KEY
from tests.fakes.host_fixtures import FAL_KEY, OPENAI_KEY, REPLICATE_KEY

# timing: every call runs under a 0.4-0.7 s deadline and several assert elapsed time (make test runs it serially)
pytestmark = pytest.mark.timing

PROMPT = 'Studio photo of a bottle, label reads "AQUA PURE"'
TIMEOUT_S = 0.5
SLACK_S = 0.6
"""How far past ``timeout_s`` a call may end (scheduling on a loaded two-core machine, not the vendor)."""


@dataclass
class Vendor:
    name: str
    server: FakeVendor
    key: str
    make: Callable[..., Any]
    request: ImageRequest
    generation_path: str
    base_path: str = ""

    def provider(self, **settings: Any) -> Any:
        settings.setdefault("timeout_s", TIMEOUT_S)
        settings.setdefault("base_url", self.server.url + self.base_path)
        provider = self.make(ProviderSettings(**settings))
        if isinstance(provider, GoogleProvider | OpenAIImagesProvider):
            provider._sdk(self.key)  # built once per provider (about 0.5 s), before any call's deadline starts
        return provider

    def generations(self) -> list[Any]:
        return [
            r
            for r in self.server.request_log
            if r.method == "POST" and self.generation_path in r.path and not r.path.endswith("/cancel")
        ]


def _vendor(name: str, server: FakeVendor, monkeypatch: pytest.MonkeyPatch) -> Vendor:
    if name == "ideogram":
        monkeypatch.setenv("IDEOGRAM_API_KEY", IDEOGRAM_KEY)
        return Vendor(
            name,
            server,
            IDEOGRAM_KEY,
            IdeogramProvider,
            ImageRequest(model="ideogram-v2a", vendor_model="V_2A", prompt=PROMPT),
            "/generate",
        )
    if name == "stability":
        monkeypatch.setenv("STABILITY_API_KEY", STABILITY_KEY)
        return Vendor(
            name,
            server,
            STABILITY_KEY,
            StabilityProvider,
            ImageRequest(model="sd3.5-medium", vendor_model="sd3.5-medium", prompt=PROMPT),
            "/generate/sd3",
        )
    if name == "bfl":
        monkeypatch.setenv("BFL_API_KEY", BFL_KEY)
        assert isinstance(server, FakeBFL)
        server.pending_polls = 0  # Ready at the first poll: the same few round trips as the others (polling: below)
        return Vendor(
            name,
            server,
            BFL_KEY,
            BflProvider,
            ImageRequest(model="flux-2-pro", vendor_model="flux-2-pro", prompt=PROMPT),
            "/v1/flux-2-pro",
        )
    if name == "openai":
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        return Vendor(
            name,
            server,
            OPENAI_KEY,
            OpenAIImagesProvider,
            ImageRequest(model="gpt-image-2", vendor_model="gpt-image-2", prompt=PROMPT, options={"quality": "low"}),
            "/images/generations",
            "/v1",
        )
    if name == "fal":
        monkeypatch.setenv("FAL_KEY", FAL_KEY)
        return Vendor(
            name,
            server,
            FAL_KEY,
            FalProvider,
            ImageRequest(model="fal:fal-ai/flux/dev", vendor_model="fal-ai/flux/dev", prompt=PROMPT,
                         options={"poll_interval_s": 0.02}),
            "/fal-ai/flux/dev",
        )
    if name == "replicate":
        monkeypatch.setenv("REPLICATE_API_TOKEN", REPLICATE_KEY)
        return Vendor(
            name,
            server,
            REPLICATE_KEY,
            ReplicateProvider,
            ImageRequest(
                model="replicate:black-forest-labs/flux-schnell",
                vendor_model="black-forest-labs/flux-schnell",
                prompt=PROMPT,
                options={"poll_interval_s": 0.02},
            ),
            "/predictions",
        )
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    return Vendor(
        name,
        server,
        GEMINI_KEY,
        GoogleProvider,
        ImageRequest(model="gemini-3-pro-image", vendor_model="gemini-3-pro-image", prompt=PROMPT),
        ":generateContent",
    )


_WARM: set[int] = set()


@pytest.fixture(params=["ideogram", "stability", "google", "bfl", "openai", "fal", "replicate"])
def vendor(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Vendor:
    server = request.getfixturevalue(f"fake_{request.param}")
    v = _vendor(request.param, server, monkeypatch)
    if id(server) not in _WARM:
        # One plain call first: the SDK's and the server's one-off work (imports, schemas, fonts) stays out of
        # the timings below; on a loaded machine it can take longer than a test's whole deadline.
        v.provider(timeout_s=30).generate(v.request)
        server.reset()
        _WARM.add(id(server))
    server.hang_s = 1.5
    server.trickle_s = 4.0
    if isinstance(server, FakeBFL):
        server.pending_polls = 0
    return v


def _call(provider: Any, request: ImageRequest) -> tuple[float, ProviderError | None]:
    started = time.monotonic()
    try:
        provider.generate(request)
    except ProviderError as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


# -- the deadline ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["trickle", "endless", "slow", "hang"])
def test_the_deadline_bounds_the_whole_call(vendor: Vendor, fault: str) -> None:
    """A vendor that drips its answer, never stops, answers late or not at all holds a call at most timeout_s."""
    vendor.server.faults.force(fault)
    elapsed, err = _call(vendor.provider(), vendor.request)
    assert isinstance(err, Transient), err
    assert elapsed < TIMEOUT_S + SLACK_S, f"{fault}: the call took {elapsed:.2f}s with timeout_s={TIMEOUT_S}"
    assert "timed out" in str(err) and "timeout_s=0.5" in str(err)
    # The request had reached the vendor: the answer was lost, so it may have been billed.
    assert err.maybe_billed is True and err.billed is False
    assert len(vendor.generations()) == 1


def test_reads_just_under_the_read_timeout_do_not_stretch_the_deadline(vendor: Vendor) -> None:
    """Each chunk arrives before a per-read timeout would fire; only the whole-call deadline can stop it."""
    vendor.server.trickle_interval_s = 0.35
    vendor.server.trickle_s = 5.0
    vendor.server.faults.force("trickle")
    elapsed, err = _call(vendor.provider(timeout_s=0.6), vendor.request)
    assert isinstance(err, Transient) and err.maybe_billed
    assert elapsed < 0.6 + SLACK_S


def test_a_long_timeout_lets_a_slow_trickle_finish(vendor: Vendor) -> None:
    """The deadline is the whole call's: a trickle that ends inside it is a normal answer."""
    vendor.server.trickle_s = 0.6
    vendor.server.trickle_interval_s = 0.05
    vendor.server.faults.force("trickle")
    elapsed, err = _call(vendor.provider(timeout_s=10), vendor.request)
    assert err is None and elapsed >= 0.5


def test_connect_refused_is_free(vendor: Vendor) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    elapsed, err = _call(vendor.provider(base_url=f"http://127.0.0.1:{port}"), vendor.request)
    assert isinstance(err, Transient) and not err.billed and not err.maybe_billed
    assert elapsed < TIMEOUT_S + SLACK_S


# -- each fault: the error, what it cost, the vendor's own bill ------------------------------------------

# fault -> (error class, billed, maybe_billed, the vendor billed it); per vendor where they differ.
COMMON: dict[str, tuple[type[ProviderError], bool, bool, bool]] = {
    "500": (Transient, False, False, False),
    "503": (Transient, False, False, False),
    "429": (RateLimited, False, False, False),
    "hang": (Transient, False, True, False),  # the client cannot know; the vendor refused in the end
    "slow": (Transient, False, True, True),
    "trickle": (Transient, False, True, True),
    "endless": (Transient, False, True, True),
    "truncate": (Transient, False, True, True),
    "garbage": (Transient, False, True, True),
    "oversize": (Transient, False, True, True),
    "filter": (ContentFiltered, True, False, True),
}
IDEOGRAM_ONLY = {
    # The image was generated and paid; only its download failed, after re-fetches.
    "oversize": (Transient, True, False, True),
    "expired_url": (Transient, True, False, True),
    "429_inflight": (RateLimited, False, False, False),
}
BFL_ONLY = {
    # Ready, generated and paid; only the result link failed (after fetching again): billed, never re-generated.
    "truncate": (Transient, True, False, True),
    "garbage": (Transient, True, False, True),
    "oversize": (Transient, True, False, True),
    "expired_url": (Transient, True, False, True),
    # Content Moderated: not charged, says BFL.
    "filter": (ContentFiltered, False, False, False),
}

OWN: dict[str, dict[str, tuple[type[ProviderError], bool, bool, bool]]] = {
    "ideogram": IDEOGRAM_ONLY,
    "bfl": BFL_ONLY,
    # OpenAI's safety system refuses the request (400 moderation_blocked) before any image is made: free.
    "openai": {"filter": (ContentFiltered, False, False, False)},
    # A Replicate prediction that fails its safety check ran (compute is billed): the client cannot tell.
    "replicate": {"filter": (ContentFiltered, False, True, True)},
}
HOSTED_ONLY = {
    # The generation ran; the output link was gone when fetched at once (hosts delete outputs within the hour).
    "expired_url": (Transient, False, True, True),
}


@pytest.mark.parametrize("fault", list(COMMON))
def test_each_fault_maps_to_its_error_and_cost(vendor: Vendor, fault: str) -> None:
    table = {**COMMON, **OWN.get(vendor.name, {})}
    _check_fault(vendor, fault, table[fault])


@pytest.mark.parametrize("name", ["fal", "replicate"])
def test_hosted_expired_output_url_is_maybe_billed(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    server = request.getfixturevalue(f"fake_{name}")
    _check_fault(_vendor(name, server, monkeypatch), "expired_url", HOSTED_ONLY["expired_url"])


@pytest.mark.parametrize("fault", ["expired_url", "429_inflight"])
def test_ideogram_only_faults_map_to_their_error_and_cost(
    fake_ideogram: FakeIdeogram, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    _check_fault(_ideogram(fake_ideogram, monkeypatch), fault, IDEOGRAM_ONLY[fault])


def _check_fault(vendor: Vendor, fault: str, expected: tuple[type[ProviderError], bool, bool, bool]) -> None:
    error, billed, maybe_billed, vendor_billed = expected
    vendor.server.faults.force(fault)
    _, err = _call(vendor.provider(), vendor.request)
    assert type(err) is error, err
    assert (err.billed, err.maybe_billed) == (billed, maybe_billed), str(err)
    assert str(err).startswith(f"{vendor.name}: ") and len(str(err)) > len(vendor.name) + 10
    assert vendor.key not in str(err)
    # The fake vendor's own bill: one generation reached for the billed faults, none for refusals.
    assert len(vendor.generations()) == 1  # sent once: retries belong to the runner
    assert vendor.server.billed_calls == int(vendor_billed)
    assert (vendor.server.billed_usd > 0) is vendor_billed
    (gen,) = vendor.generations()
    assert gen.outcome == fault and gen.billed is vendor_billed


def test_a_billed_error_always_matches_a_billed_request(vendor: Vendor) -> None:
    """Under random faults: an error the provider calls free never hides a request the vendor billed, and an
    error it calls billed always matches one; every success was billed."""
    vendor.server.hang_s = 0.8
    vendor.server.set_faults(
        rate_5xx=0.2,
        rate_429=0.1,
        rate_hang=0.05,
        rate_trickle=0.05,
        rate_truncate=0.1,
        rate_garbage=0.1,
        rate_oversize=0.05,
        rate_filter=0.05,
        seed=7,
    )
    provider = vendor.provider(timeout_s=0.4)
    results = [_call(provider, vendor.request)[1] for _ in range(24)]
    gens = vendor.generations()
    assert len(gens) == len(results)
    kinds = set()
    for err, rec in zip(results, gens, strict=True):
        if err is None:
            assert rec.billed and rec.outcome == "ok"
            kinds.add("ok")
            continue
        kinds.add(rec.outcome)
        assert vendor.key not in str(err)
        if err.billed:
            assert rec.billed, (rec.outcome, str(err))
        if rec.billed:
            assert err.billed or err.maybe_billed, (rec.outcome, str(err))
    assert len(kinds) >= 4  # the faults really happened, several kinds of them
    assert vendor.server.billed_calls == sum(1 for r in gens if r.billed)


def test_seeded_faults_repeat(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same seed gives the same fault sequence (a failing fault run can be replayed)."""
    sequences = []
    for _ in range(2):
        fake = FakeStability("k")
        fake.set_faults(rate_5xx=0.3, rate_429=0.2, rate_truncate=0.1, seed=11)
        sequences.append([fake.next_fault() for _ in range(200)])
    assert sequences[0] == sequences[1]
    counts = {f: sequences[0].count(f) for f in ("500", "503", "429", "truncate")}
    assert 15 <= counts["500"] <= 45 and 20 <= counts["429"] <= 60 and counts["truncate"] > 5
    with pytest.raises(ValueError, match="more than 1"):
        FakeStability("k").set_faults(rate_5xx=0.8, rate_429=0.5)


def test_an_image_over_a_lowered_pixel_limit_is_maybe_billed(
    vendor: Vendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IMAGE_GEN_MAX_PIXELS (read into ``imaging.images.MAX_PIXELS``) lowered below the vendor's image size."""
    from image_gen.imaging import images

    monkeypatch.setattr(images, "MAX_PIXELS", 32 * 32)
    _, err = _call(vendor.provider(timeout_s=5), vendor.request)  # no deadline test: room for a loaded machine
    assert isinstance(err, Transient) and "over the limit" in str(err)
    if vendor.name in ("ideogram", "bfl"):
        assert err.billed  # a result URL whose image we cannot take: paid, not generated again
        assert len(vendor.generations()) == 1
    else:
        assert err.maybe_billed and not err.billed
    assert vendor.server.billed_calls == 1


# -- messages ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["500", "429"])
def test_vendor_error_text_reaches_the_message_but_never_a_key(vendor: Vendor, fault: str) -> None:
    vendor.server.leaky_errors = True  # the vendor echoes the credentials it got in its error body
    vendor.server.faults.force(fault)
    _, err = _call(vendor.provider(), vendor.request)
    assert err is not None and not err.billed and not err.maybe_billed
    text = str(err)
    assert vendor.key not in text and "***" in text  # the echo arrived, redacted
    assert f"HTTP {fault}" in text
    vendor_words = {"500": ("internal", "unexpected", "unavailable"), "429": ("many", "exceeded", "exhausted")}
    assert any(w in text.lower() for w in vendor_words[fault]), text


def test_retry_after_is_honoured_from_the_header(vendor: Vendor) -> None:
    provider = vendor.provider()
    for value in ("2", "7", "0"):
        vendor.server.retry_after = value
        vendor.server.faults.force("429")
        _, err = _call(provider, vendor.request)
        assert isinstance(err, RateLimited)
        assert err.retry_after == float(value)


# -- Ideogram: a failed download is fetched again, never generated again ---------------------------------


def _ideogram(fake: FakeIdeogram, monkeypatch: pytest.MonkeyPatch) -> Vendor:
    fake.hang_s = 1.5
    return _vendor("ideogram", fake, monkeypatch)


def test_ideogram_refetches_a_failed_download_without_generating_again(
    fake_ideogram: FakeIdeogram, monkeypatch: pytest.MonkeyPatch
) -> None:
    v = _ideogram(fake_ideogram, monkeypatch)
    fake_ideogram.download_failures = 2
    fake_ideogram.faults.force("download_fail")
    result = v.provider(timeout_s=5).generate(v.request)
    gets = fake_ideogram.calls("/files/")
    assert len(v.generations()) == 1  # one POST: the image was not generated again
    assert [g.outcome for g in gets] == ["download_truncate", "download_truncate", "ok"]
    assert result.images[0].metadata["download_tries"] == 3
    assert fake_ideogram.billed_calls == 1


def test_ideogram_download_that_keeps_failing_is_billed(
    fake_ideogram: FakeIdeogram, monkeypatch: pytest.MonkeyPatch
) -> None:
    v = _ideogram(fake_ideogram, monkeypatch)
    fake_ideogram.download_failures = 10
    fake_ideogram.faults.force("download_fail")
    _, err = _call(v.provider(timeout_s=5), v.request)
    assert isinstance(err, Transient) and err.billed and not err.maybe_billed
    assert "3 tries" in str(err)
    assert len(v.generations()) == 1 and len(fake_ideogram.calls("/files/")) == 3


def test_ideogram_oversized_result_is_billed_and_not_fetched_again(
    fake_ideogram: FakeIdeogram, monkeypatch: pytest.MonkeyPatch
) -> None:
    v = _ideogram(fake_ideogram, monkeypatch)
    fake_ideogram.faults.force("oversize")
    _, err = _call(v.provider(timeout_s=5), v.request)
    assert isinstance(err, Transient) and err.billed and "over the" in str(err) and "40000x40000" not in v.key
    assert len(fake_ideogram.calls("/files/")) == 1  # the same bytes would be refused again


def test_ideogram_download_retries_stay_inside_the_deadline(
    fake_ideogram: FakeIdeogram, monkeypatch: pytest.MonkeyPatch
) -> None:
    v = _ideogram(fake_ideogram, monkeypatch)
    fake_ideogram.download_failures = 50
    fake_ideogram.faults.force("download_fail")
    elapsed, err = _call(
        v.provider(timeout_s=0.6, options={"download_attempts": 50, "download_backoff_s": 0.1}), v.request
    )
    assert isinstance(err, Transient) and err.billed
    assert elapsed < 0.6 + SLACK_S
    assert len(v.generations()) == 1


def test_ideogram_random_download_faults_are_survived(
    fake_ideogram: FakeIdeogram, monkeypatch: pytest.MonkeyPatch
) -> None:
    v = _ideogram(fake_ideogram, monkeypatch)
    fake_ideogram.set_faults(rate_download=0.4, seed=3)
    provider = v.provider(timeout_s=5, options={"download_backoff_s": 0.01, "download_attempts": 5})
    outcomes = [_call(provider, v.request)[1] for _ in range(8)]
    assert all(o is None or o.billed for o in outcomes)
    assert sum(o is None for o in outcomes) >= 6
    assert len(v.generations()) == 8
    assert any(g.outcome.startswith("download_") for g in fake_ideogram.calls("/files/"))


# -- Stability: creative upscale polling is bounded by the call's deadline -------------------------------


def test_stability_creative_polling_ends_at_the_deadline(
    fake_stability: FakeStability, monkeypatch: pytest.MonkeyPatch
) -> None:
    v = _vendor("stability", fake_stability, monkeypatch)
    fake_stability.creative_polls = -1
    from tests.fakes import render_png

    request = ImageRequest(
        model="stability-upscale-creative",
        vendor_model="upscale-creative",
        prompt=PROMPT,
        operation="upscale",
        init_image=render_png("x", (32, 32)),
        options={"poll_interval_s": 0.05, "poll_timeout_s": 300},
    )
    elapsed, err = _call(v.provider(timeout_s=0.7), request)
    assert isinstance(err, Transient) and err.billed and err.request_id
    # the deadline ends the polling, whether it strikes between polls ("not done") or during one
    assert "not done" in str(err) or "deadline" in str(err)
    assert elapsed < 0.7 + SLACK_S
    assert fake_stability.billed_calls == 1 and len(fake_stability.calls("/v2beta/results/")) >= 3


# -- Google: errors carry the HTTP status, Google's status and message, Retry-After --------------------


def test_google_429_retry_after_header_wins_over_the_body(
    fake_google: FakeGoogle, monkeypatch: pytest.MonkeyPatch
) -> None:
    v = _vendor("google", fake_google, monkeypatch)
    provider = v.provider()
    waits = []
    for header in ("3", None, "5"):
        fake_google.retry_after = header
        fake_google.faults.force("429")
        _, err = _call(provider, v.request)
        assert isinstance(err, RateLimited)
        assert str(err).startswith("google: HTTP 429 RESOURCE_EXHAUSTED: Resource has been exhausted")
        waits.append(err.retry_after)
    assert waits == [3.0, 1.0, 5.0]  # the header; the body's RetryInfo when no header came


def test_google_message_from_a_body_not_in_googles_shape(
    fake_google: FakeGoogle, monkeypatch: pytest.MonkeyPatch
) -> None:
    v = _vendor("google", fake_google, monkeypatch)
    fake_google.plain_errors = True
    fake_google.retry_after = "4"
    fake_google.faults.force("429", "503")
    _, err = _call(v.provider(), v.request)
    assert isinstance(err, RateLimited) and err.retry_after == 4.0
    assert "HTTP 429" in str(err) and "Resource has been exhausted" in str(err)
    _, err = _call(v.provider(), v.request)
    assert isinstance(err, Transient) and "HTTP 503" in str(err) and "unavailable" in str(err)
