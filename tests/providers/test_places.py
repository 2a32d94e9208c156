"""A provider's places (``_limits.Places``): never more holders than places, a freed place goes to the waiter with
the highest call priority (the earliest among equals), a waiter that gave up is passed over, and many threads
hammering it never see the bound broken."""

from __future__ import annotations

import random
import threading
import time

import pytest

from image_gen.providers import _limits


def _wait_until(cond: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_a_freed_place_goes_to_the_highest_priority_then_the_earliest() -> None:
    places = _limits.Places(1)
    assert places.acquire()
    order: list[str] = []
    threads = []
    # arrival order: low (0), mid (1), high (2), a second high (2): served high, high, mid, low
    for name, priority in (("low", 0), ("mid", 1), ("high", 2), ("high-later", 2)):
        def wait(name: str = name, priority: int = priority) -> None:
            with _limits.call_priority(priority):
                assert places.acquire(timeout=10)
            order.append(name)
            time.sleep(0.01)
            places.release()

        t = threading.Thread(target=wait)
        t.start()
        threads.append(t)
        _wait_until(lambda n=len(threads): len(places._waiting) == n)  # each has queued before the next comes
    places.release()
    for t in threads:
        t.join(10)
    assert order == ["high", "high-later", "mid", "low"]
    assert places.in_use == 0


def test_a_waiter_that_timed_out_is_passed_over_and_nobody_barges_in() -> None:
    places = _limits.Places(1)
    assert places.acquire()
    with _limits.call_priority(5):
        assert not places.acquire(timeout=0.05)  # gave up: still in the heap, marked gone
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(places.acquire(timeout=5)))
    t.start()
    _wait_until(lambda: len(places._waiting) == 2)
    # a newcomer finds no free place while someone waits, even at the moment of the release
    places.release()
    t.join(5)
    assert got == [True] and places.in_use == 1
    assert not places.acquire(timeout=0.01)
    places.release()
    assert places.in_use == 0 and places.acquire(timeout=0)


def test_many_threads_never_hold_more_places_than_there_are() -> None:
    places = _limits.Places(3)
    holding, peak, lock = [0], [0], threading.Lock()
    done = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(40):
            with _limits.call_priority(rng.randint(0, 3)):
                if not places.acquire(timeout=rng.choice([0.0, 0.001, 5.0])):
                    continue
            with lock:
                holding[0] += 1
                peak[0] = max(peak[0], holding[0])
            time.sleep(rng.random() / 1000)
            with lock:
                holding[0] -= 1
            places.release()
        done.append(seed)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(done) == 12
    assert 1 <= peak[0] <= 3, peak  # never over
    assert places.in_use == 0 and not [w for w in places._waiting if not w[2].gone]


def test_priority_is_per_thread_and_restored() -> None:
    seen: dict[str, int] = {}
    with _limits.call_priority(4):
        t = threading.Thread(target=lambda: seen.setdefault("other", _limits.current_priority()))
        t.start()
        t.join()
        seen["inside"] = _limits.current_priority()
    seen["after"] = _limits.current_priority()
    assert seen == {"other": 0, "inside": 4, "after": 0}


def test_an_interrupted_waiter_leaves_no_place_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    places = _limits.Places(1)
    assert places.acquire()

    class Interrupted(BaseException):
        pass

    real_wait = threading.Event.wait

    def interrupted_wait(self: threading.Event, timeout: float | None = None) -> bool:
        real_wait(self, 0.01)
        raise Interrupted  # as Ctrl-C would, while waiting

    with monkeypatch.context() as m:
        m.setattr(threading.Event, "wait", interrupted_wait)
        with pytest.raises(Interrupted):
            places.acquire(timeout=5)
    places.release()  # the holder leaves: the place must not go to the interrupted waiter
    assert places.in_use == 0 and places.acquire(timeout=0)
