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
