"""The shared HTTP helpers: error mapping, Retry-After, ratio mapping, the weighted in-flight limiter."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from image_gen.providers import _http
from image_gen.providers.base import AuthenticationFailed, BadRequest, RateLimited, Transient


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequest),
        (401, AuthenticationFailed),
        (403, AuthenticationFailed),
        (402, BadRequest),
        (408, Transient),
        (422, BadRequest),
        (429, RateLimited),
        (500, Transient),
        (503, Transient),
    ],
)
def test_status_mapping(status: int, error: type[Exception]) -> None:
    resp = httpx.Response(status, json={"error": "nope"}, headers={"Retry-After": "3"})
    err = _http.error_from_status(resp, "v")
    assert type(err) is error
    if status == 429:
        assert err.retry_after == 3.0  # type: ignore[attr-defined]


def test_retry_after_forms() -> None:
    assert _http.parse_retry_after("2.5") == 2.5
    assert _http.parse_retry_after(None) is None
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= (_http.parse_retry_after(future) or 0) <= 31


@pytest.mark.parametrize(
    ("w", "h", "want"),
    [
        (1024, 1024, (1, 1)),
        (1920, 1080, (16, 9)),
        (1000, 1500, (2, 3)),
        (3000, 1000, (3, 1)),
        (1100, 1000, (1, 1)),
    ],
)
def test_nearest_ratio(w: int, h: int, want: tuple[int, int]) -> None:
    ratios = [(1, 1), (16, 9), (9, 16), (4, 3), (3, 4), (3, 2), (2, 3), (1, 3), (3, 1)]
    assert _http.nearest_ratio(w, h, ratios) == want


def test_truncated_image_is_transient() -> None:
    from tests.fakes import render_png

    data = render_png("x", (64, 64))
    assert _http.image_size(data, "v") == (64, 64)
    with pytest.raises(Transient):
        _http.image_size(data[: len(data) // 2], "v")


def test_weighted_limiter_never_exceeds_capacity() -> None:
    lim = _http.WeightedLimiter(10)
    peak = 0
    lock = threading.Lock()

    def work(units: int) -> None:
        nonlocal peak
        with lim.hold(units):
            with lock:
                peak = max(peak, lim.in_use)
            time.sleep(0.01)

    threads = [threading.Thread(target=work, args=(u,)) for u in (4, 4, 4, 3, 7, 1, 12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak <= 10 and lim.in_use == 0


def test_weighted_limiter_times_out_as_rate_limited() -> None:
    lim = _http.WeightedLimiter(2)
    lim.acquire(2)
    with pytest.raises(RateLimited):
        lim.acquire(1, timeout=0.05)


# -- the call's deadline and cost flags (no server: httpx.MockTransport) -----------------------------------


def _dripping(chunks: int, every_s: float) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        def body() -> Iterator[bytes]:
            for _ in range(chunks):
                time.sleep(every_s)
                yield b"x" * 16

        return httpx.Response(200, content=body())

    return httpx.MockTransport(handler)


@pytest.mark.timing
def test_send_stops_a_dripping_body_at_the_deadline_even_without_a_socket() -> None:
    client = httpx.Client(transport=_dripping(100, 0.05))
    deadline = _http.Deadline(0.3)
    started = time.monotonic()
    with pytest.raises(Transient, match="timed out") as info:
        _http.send(client, "GET", "http://vendor.test/x", deadline=deadline, vendor="v", what="GET /x")
    assert time.monotonic() - started < 0.5
    assert info.value.maybe_billed and not info.value.billed


def test_send_returns_a_whole_answer_inside_the_deadline() -> None:
    client = httpx.Client(transport=_dripping(4, 0.01))
    resp = _http.send(client, "GET", "http://vendor.test/x", deadline=_http.Deadline(5), vendor="v", what="x")
    assert resp.status_code == 200 and resp.content == b"x" * 64


def test_send_after_the_deadline_sends_nothing() -> None:
    sent: list[httpx.Request] = []
    client = httpx.Client(transport=httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(200)))
    deadline = _http.Deadline(0.0)
    with pytest.raises(Transient, match="before it was sent") as info:
        _http.send(client, "GET", "http://vendor.test/x", deadline=deadline, vendor="v", what="x")
    assert sent == [] and not info.value.maybe_billed


def test_send_caps_the_answer_size() -> None:
    client = httpx.Client(transport=_dripping(10, 0.0))
    with pytest.raises(Transient, match="passed 100 bytes") as info:
        _http.send(
            client, "GET", "http://vendor.test/x", deadline=_http.Deadline(5), vendor="v", what="x", max_bytes=100
        )
    assert info.value.maybe_billed


@pytest.mark.parametrize(
    ("exc", "maybe"),
    [
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("slow connect"), False),
        (httpx.WriteTimeout("slow upload"), False),
        (httpx.ReadTimeout("no answer"), True),
        (httpx.RemoteProtocolError("peer closed"), True),
        (httpx.ReadError("reset"), True),
    ],
)
def test_transport_failures_say_what_they_cost(exc: Exception, maybe: bool) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    client = httpx.Client(transport=httpx.MockTransport(handler))
    with pytest.raises(Transient) as info:
        _http.send(client, "POST", "http://vendor.test/x", deadline=_http.Deadline(5), vendor="v", what="x")
    assert info.value.maybe_billed is maybe and info.value.billed is False


def test_deadline_timeouts_never_exceed_the_time_left() -> None:
    deadline = _http.Deadline(2.0, connect_s=10.0)
    timeout = deadline.timeout()
    assert timeout.read is not None and timeout.read <= 2.0
    assert timeout.connect is not None and timeout.connect <= 2.0
    assert deadline.sleep(0.01) is True and deadline.sleep(5.0) is False
    assert _http.Deadline(5, connect_s=0.5).timeout().connect == 0.5


@pytest.mark.timing
def test_deadline_transport_passes_through_outside_a_scope_and_bounds_inside() -> None:
    client = _http.with_deadlines(httpx.Client(transport=_dripping(40, 0.05)))
    assert client.get("http://vendor.test/x").content == b"x" * 640  # no scope: untouched
    started = time.monotonic()
    with _http.deadline_scope(_http.Deadline(0.3), "g"), pytest.raises(Transient, match="timed out") as info:
        client.get("http://vendor.test/x")
    assert time.monotonic() - started < 0.5 and info.value.maybe_billed


def test_error_messages_carry_the_vendor_text_without_keys() -> None:
    body = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota for key sk-secret-123 used"}}
    resp = httpx.Response(429, json=body, headers={"Retry-After": "4"})
    err = _http.error_from_status(resp, "v", secrets=("sk-secret-123",))
    assert isinstance(err, RateLimited) and err.retry_after == 4.0
    assert "RESOURCE_EXHAUSTED: quota for key *** used" in str(err) and "sk-secret" not in str(err)
    assert str(err).startswith("v: HTTP 429 Too Many Requests")
    plain = _http.error_from_status(httpx.Response(502, text="<html>bad   gateway</html>"), "v")
    assert "HTTP 502" in str(plain) and "<html>bad gateway</html>" in str(plain)


def test_unparseable_retry_after_is_none() -> None:
    assert _http.parse_retry_after("soon") is None
    assert _http.parse_retry_after("inf") is None
    assert _http.parse_retry_after("-3") == 0.0


def test_image_checks_use_the_pixel_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from image_gen.imaging import images
    from tests.fakes import oversize_png, render_png

    with pytest.raises(Transient) as info:
        _http.image_size(oversize_png((50000, 50000)), "v")
    assert info.value.maybe_billed and _http.is_oversize(info.value)
    with pytest.raises(Transient) as info:
        _http.image_size(b"<html>not an image</html>", "v")
    assert info.value.maybe_billed and not _http.is_oversize(info.value)
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    with pytest.raises(Transient, match="over the limit of 100 pixels"):
        _http.image_size(render_png("x", (20, 20)), "v")


def test_one_client_per_vendor_per_process_shared_by_provider_objects_and_threads() -> None:
    """Every provider object of a vendor (a run's, a batch brief's, each ``api.generate``'s) uses the process's one
    client: one connection pool and one SSL context, not a new one (~50 ms) per call."""
    from image_gen.providers.base import ProviderSettings
    from image_gen.providers.ideogram import IdeogramProvider
    from image_gen.providers.stability import StabilityProvider

    seen: list[httpx.Client] = []
    threads = [threading.Thread(target=lambda: seen.append(IdeogramProvider().client)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in seen}) == 1
    assert IdeogramProvider().client is seen[0]
    assert StabilityProvider().client is not seen[0]  # a pool per vendor
    slower = IdeogramProvider(ProviderSettings(timeout_s=300.0)).client
    assert slower is not seen[0] and slower.timeout.read == 300.0  # other timeouts, another client
    injected = httpx.Client()
    try:
        assert IdeogramProvider(ProviderSettings(http_client=injected)).client is injected
    finally:
        injected.close()
