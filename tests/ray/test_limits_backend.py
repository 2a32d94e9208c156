"""The limiter backend hook (no Ray needed): a provider's places and a named in-flight limiter also acquire from an
installed backend; and the cluster limits actor's bookkeeping (capacity, timeouts, expired holds, dead holders)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from image_gen.providers import _limits
from image_gen.providers._deadline import Deadline
from image_gen.providers._http import KeyedProvider
from image_gen.providers.base import ProviderSettings, RateLimited


def run_alone(scenario: Any) -> None:
    """``asyncio.run(scenario())`` in a thread of its own: the worker's main thread may still hold an event loop
    another test left running (xdist puts tests of other files before this one), where ``asyncio.run`` refuses."""
    failure: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(scenario())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=main)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the scenario did not finish in 60 s"
    if failure:
        raise failure[0]



class Recording:
    """A backend with one place per name that records what was asked, and can refuse."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.asked: list[tuple[str, int, int]] = []
        self.held: dict[str, int] = {}
        self.lock = threading.Lock()

    def acquire(self, name: str, units: int, capacity: int, timeout: float | None) -> object | None:
        self.asked.append((name, units, capacity))
        if self.refuse:
            return None
        with self.lock:
            self.held[name] = self.held.get(name, 0) + units
        return (name, units)

    def release(self, token: object) -> None:
        name, units = token  # type: ignore[misc]
        with self.lock:
            self.held[name] -= units


@pytest.fixture
def backend() -> Iterator[Recording]:
    rec = Recording()
    previous = _limits.install_backend(rec)
    try:
        yield rec
    finally:
        _limits.install_backend(previous)


class Vendor(KeyedProvider):
    name = "acme"
    key_env = ("ACME_KEY",)


def test_a_providers_place_is_also_held_in_the_backend(backend: Recording) -> None:
    p = Vendor(ProviderSettings(max_concurrency=3))
    with p._slot(Deadline.of(p.settings)):
        assert backend.held == {"slots:acme": 1}
    assert backend.held == {"slots:acme": 0} and backend.asked == [("slots:acme", 1, 3)]


def test_a_refusal_is_rate_limited_and_frees_the_local_place(backend: Recording) -> None:
    backend.refuse = True
    p = Vendor(ProviderSettings(max_concurrency=1))
    with pytest.raises(RateLimited, match="shared limit slots:acme"), p._slot(Deadline.of(p.settings)):
        pytest.fail("entered without a place")
    backend.refuse = False
    with p._slot(Deadline.of(p.settings)):  # the in-process place was given back
        pass


def test_shared_limiters_are_named_and_hold_their_units_in_the_backend(backend: Recording) -> None:
    lim = _limits.shared_limiter("acme", "key-123", 4)
    assert lim.name is not None and "key-123" not in lim.name  # a fingerprint, never the key
    with lim.hold(3):
        assert backend.held == {lim.name: 3}
    lim.set_capacity(2)
    with lim.hold(5):  # capped at the capacity, which the backend is told
        assert backend.held == {lim.name: 2}
    assert backend.asked[-1] == (lim.name, 2, 2) and lim.in_use == 0


def test_a_place_and_the_accounts_limit_are_held_together(backend: Recording) -> None:
    p = Vendor(ProviderSettings(max_concurrency=2))
    lim = _limits.shared_limiter("acme", "key-456", 5)
    with p._slot(Deadline.of(p.settings), lim, 3):  # a backend without acquire_many: one hold after the other
        assert backend.held == {"slots:acme": 1, lim.name: 3} and lim.in_use == 3
    assert backend.asked == [("slots:acme", 1, 2), (lim.name, 3, 5)]
    assert backend.held == {"slots:acme": 0, lim.name: 0} and lim.in_use == 0

    class Many(Recording):
        def __init__(self) -> None:
            super().__init__()
            self.batches: list[list[tuple[str, int, int]]] = []

        def acquire_many(self, holds: list[tuple[str, int, int]], timeout: float | None) -> object | None:
            self.batches.append(holds)
            if self.refuse:
                return None
            return tuple(self.acquire(*h, timeout) for h in holds)

        def release(self, token: object) -> None:
            for t in token:  # type: ignore[attr-defined]
                super().release(t)

    many = Many()
    previous = _limits.install_backend(many)
    try:
        with p._slot(Deadline.of(p.settings), lim, 2):  # one request for both
            assert many.held == {"slots:acme": 1, lim.name: 2}
        assert many.batches == [[("slots:acme", 1, 2), (lim.name, 2, 5)]] and many.held == {"slots:acme": 0,
                                                                                             lim.name: 0}
        many.refuse = True
        with pytest.raises(RateLimited), p._slot(Deadline.of(p.settings), lim, 1):
            pytest.fail("entered without its places")
        assert lim.in_use == 0 and p._slots.in_use == 0  # nothing kept in this process either
    finally:
        _limits.install_backend(previous)


def test_the_limits_actor_takes_several_limits_at_once_or_none() -> None:
    pytest.importorskip("ray")
    from image_gen.pipeline.executors_ray import VendorLimits

    async def scenario() -> None:
        lim = VendorLimits(ttl_s=30, node_id="n1")
        me = os.getpid()
        both = await lim.acquire_many([("slots:v", 1, 2), ("inflight:v", 2, 2)], 1, me, "n1")
        assert both is not None and len(both) == 2
        # the first is free, the second full: nothing is kept
        assert await lim.acquire_many([("slots:v", 1, 2), ("inflight:v", 1, 2)], 0.05, me, "n1") is None
        assert (await lim.stats())["used"] == {"slots:v": 1, "inflight:v": 2}
        for t in both:
            await lim.release(t)
        assert (await lim.stats())["used"] == {"slots:v": 0, "inflight:v": 0}

    run_alone(scenario)


def test_without_a_backend_nothing_changes() -> None:
    assert _limits.installed_backend() is None
    lim = _limits.WeightedLimiter(1, name="x")
    with lim.hold(1):
        assert lim.in_use == 1


# -- the actor's bookkeeping, driven directly (no Ray started) -------------------------------------------------------


@pytest.mark.timing
def test_the_limits_actor_grants_up_to_capacity_and_times_out() -> None:
    pytest.importorskip("ray")
    from image_gen.pipeline.executors_ray import VendorLimits

    async def scenario() -> None:
        lim = VendorLimits(ttl_s=30, node_id="n1")
        me = os.getpid()
        a = await lim.acquire("slots:v", 1, 1, None, me, "n1")
        assert a is not None
        assert await lim.acquire("slots:v", 1, 1, 0.05, me, "n1") is None  # full: times out, nothing held
        waiter = asyncio.ensure_future(lim.acquire("slots:v", 1, 1, 5, me, "n1"))
        await asyncio.sleep(0.05)
        assert (await lim.stats())["waiting"] == [("slots:v", me)]
        await lim.release(a)
        assert await waiter is not None
        st = await lim.stats()
        assert st["peak"] == {"slots:v": 1} and st["used"] == {"slots:v": 1} and st["grants"] == {"slots:v": 2}

    run_alone(scenario)


@pytest.mark.timing
def test_expired_holds_and_dead_holders_give_their_places_back() -> None:
    pytest.importorskip("ray")
    from image_gen.pipeline.executors_ray import VendorLimits

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()

    async def scenario() -> None:
        lim = VendorLimits(ttl_s=0.2, node_id="n1")
        me = os.getpid()
        # a holder elsewhere (another node) that stops renewing: its place comes back when the hold expires
        assert await lim.acquire("slots:v", 1, 1, None, 12345, "n2") is not None
        started = time.monotonic()
        assert await lim.acquire("slots:v", 1, 1, 5, me, "n1") is not None
        assert 0.1 < time.monotonic() - started < 2
        # a holder on this node whose process is gone: at once
        lim2 = VendorLimits(ttl_s=30, node_id="n1")
        assert await lim2.acquire("slots:v", 1, 1, None, dead.pid, "n1") is None  # a dead caller gets nothing
        t = await lim2.acquire("slots:v", 1, 1, None, me, "n1")
        lim2.holds[t] = (*lim2.holds[t][:3], dead.pid, "n1")  # as if its holder then died
        assert await lim2.acquire("slots:v", 1, 1, 1, me, "n1") is not None
        # renewing keeps a live holder's place
        lim3 = VendorLimits(ttl_s=0.3, node_id="n1")
        t3 = await lim3.acquire("slots:v", 1, 1, None, 12345, "n2")
        for _ in range(4):
            await asyncio.sleep(0.1)
            await lim3.renew([t3])
        assert await lim3.acquire("slots:v", 1, 1, 0.05, me, "n1") is None

    run_alone(scenario)


def test_the_limits_actor_serves_waiters_by_priority_then_arrival() -> None:
    pytest.importorskip("ray")
    from image_gen.pipeline.executors_ray import VendorLimits

    async def scenario() -> None:
        lim = VendorLimits(ttl_s=30, node_id="n1")
        me = os.getpid()
        held = await lim.acquire("slots:v", 1, 1, None, me, "n1")
        order: list[str] = []

        async def wait(name: str, priority: int) -> None:
            token = await lim.acquire("slots:v", 1, 1, 5, me, "n1", priority)
            assert token is not None
            order.append(name)
            await asyncio.sleep(0.01)
            await lim.release(token)

        tasks = []
        for name, priority in (("draft", 0), ("layout", 1), ("final", 2), ("final-later", 2)):
            tasks.append(asyncio.ensure_future(wait(name, priority)))
            await asyncio.sleep(0.02)  # queued in this order
        other = await lim.acquire("slots:w", 1, 1, 0.5, me, "n1", 0)  # another name is not held up by them
        assert other is not None
        await lim.release(held)
        await asyncio.gather(*tasks)
        assert order == ["final", "final-later", "layout", "draft"]

    run_alone(scenario)


def test_the_ray_backend_passes_the_callers_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray")
    from image_gen.pipeline import executors_ray

    asked: list[tuple[Any, ...]] = []

    class Actor:
        class acquire:  # noqa: N801 - the shape of a Ray actor method
            @staticmethod
            def remote(*args: Any) -> tuple[Any, ...]:
                asked.append(args)
                return args

    class Context:
        @staticmethod
        def get_node_id() -> str:
            return "n1"

    # no Ray started in this process (asking a real runtime context would start one)
    monkeypatch.setattr(executors_ray.ray, "get_runtime_context", lambda: Context())
    monkeypatch.setattr(executors_ray.ray, "get", lambda ref: None)
    backend = executors_ray.RayLimiterBackend(Actor(), ttl_s=30)
    with _limits.call_priority(2):
        assert backend.acquire("slots:v", 1, 4, 1.0) is None
    assert asked and asked[0][-1] == 2
