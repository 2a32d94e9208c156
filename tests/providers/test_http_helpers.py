"""The shared HTTP helpers: error mapping, Retry-After, ratio mapping, the weighted in-flight limiter."""

from __future__ import annotations

import threading
import time

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
