"""Client-side limits of a vendor account: in-flight units and start rates, shared process-wide per key.

``WeightedLimiter`` bounds the units in flight, ``RateWindow`` the starts per period; ``shared_limiter`` and
``shared_rate_window`` hand out one of each per vendor and key fingerprint (never the key itself).

A process may also install a *limiter backend* (``install_backend``): a place shared by several processes or
machines (the Ray executor installs one held by a cluster-wide actor) that every named hold also acquires from, after
the in-process limit, so a vendor's limit holds across the whole cluster. Providers know nothing of it.

Waiters for a place are served by *priority* (``call_priority``: a number the caller sets around a provider call,
higher first; first come, first served among equals). A pipeline gives a brief's later stages a higher priority, so
the work in flight finishes before new work starts: with a batch of briefs x stages on two vendors, the second
vendor gets its first call after one brief's earlier stages, not after every brief's first stage."""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

from image_gen.providers._deadline import Deadline
from image_gen.providers.base import RateLimited


def key_fingerprint(key: str) -> str:
    """A short, one-way tag of a key: enough to share a limiter between clients, never the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class LimiterBackend(Protocol):
    """Places shared beyond this process. ``acquire`` returns a token, or None when no place came free within
    ``timeout`` seconds (None: wait as long as it takes); ``capacity`` is the limit the caller knows (the latest
    one counts). A backend may also offer ``acquire_many(holds, timeout)``: several ``(name, units, capacity)`` in
    one request, all or none, its token released by ``release`` (``backend_holds`` uses it where it is there)."""

    def acquire(self, name: str, units: int, capacity: int, timeout: float | None) -> object | None: ...

    def release(self, token: object) -> None: ...


_BACKEND: LimiterBackend | None = None


def install_backend(backend: LimiterBackend | None) -> LimiterBackend | None:
    """Make every named hold of this process also acquire from ``backend`` (None: in-process limits only);
    returns the backend installed before."""
    global _BACKEND
    previous, _BACKEND = _BACKEND, backend
    return previous


def installed_backend() -> LimiterBackend | None:
    return _BACKEND


@contextmanager
def backend_hold(name: str, units: int, capacity: int, timeout: float | None) -> Iterator[None]:
    """Hold ``units`` of the shared limit ``name`` in the installed backend for the block (nothing without one);
    ``RateLimited`` (nothing was sent) when no place came free in time."""
    backend = _BACKEND
    if backend is None:
        yield
        return
    token = backend.acquire(name, max(1, units), max(1, capacity), timeout)
    if token is None:
        raise RateLimited(f"shared limit {name}: no free place in time (capacity {capacity}); not sent",
                          retry_after=1.0)
    try:
        yield
    finally:
        backend.release(token)


@contextmanager
def backend_holds(holds: list[tuple[str, int, int]], timeout: float | None) -> Iterator[None]:
    """Hold several shared limits, ``(name, units, capacity)`` each, in order, for the block: in one request where
    the backend offers ``acquire_many`` (a cluster's limits actor: one round trip instead of one per limit), else
    one ``backend_hold`` after another. ``RateLimited`` as ``backend_hold``."""
    backend = _BACKEND
    many = getattr(backend, "acquire_many", None)
    if backend is None or many is None or len(holds) < 2:
        with contextlib.ExitStack() as stack:
            started = time.monotonic()
            for name, units, capacity in holds:
                left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
                stack.enter_context(backend_hold(name, units, capacity, left))
            yield
        return
    asked = [(name, max(1, units), max(1, capacity)) for name, units, capacity in holds]
    token = many(asked, timeout)
    if token is None:
        names = ", ".join(name for name, _, _ in asked)
        raise RateLimited(f"shared limits {names}: no free place in time; not sent", retry_after=1.0)
    try:
        yield
    finally:
        backend.release(token)


_PRIORITY: ContextVar[int] = ContextVar("image_gen_call_priority", default=0)


@contextmanager
def call_priority(priority: int) -> Iterator[None]:
    """Calls made in this block (this thread or task) wait for a place with ``priority`` (higher first)."""
    token = _PRIORITY.set(int(priority))
    try:
        yield
    finally:
        _PRIORITY.reset(token)


def current_priority() -> int:
    return _PRIORITY.get()


class _Waiter:
    __slots__ = ("event", "gone")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.gone = False


class Places:
    """At most ``capacity`` holders at once. A free place goes to the waiter with the highest ``call_priority``,
    the earliest among equals: a release hands its place straight to that waiter (no thundering herd, and nobody
    arriving later takes it first)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._used = 0
        self._lock = threading.Lock()
        self._waiting: list[tuple[int, int, _Waiter]] = []
        self._seq = itertools.count()

    @property
    def in_use(self) -> int:
        return self._used

    def acquire(self, timeout: float | None = None) -> bool:
        """Take a place, waiting at most ``timeout`` seconds (None: as long as it takes); False when none came."""
        with self._lock:
            if self._used < self.capacity and not self._waiting:
                self._used += 1
                return True
            waiter = _Waiter()
            heapq.heappush(self._waiting, (-current_priority(), next(self._seq), waiter))
        try:
            if waiter.event.wait(timeout):
                return True
        except BaseException:  # Ctrl-C (or a cancelled task) while waiting: leave no place behind
            with self._lock:
                waiter.gone = True
                handed = waiter.event.is_set()
            if handed:
                self.release()
            raise
        with self._lock:
            if waiter.event.is_set():  # handed a place just as the wait ran out: it is ours
                return True
            waiter.gone = True  # skipped when it comes up
            return False

    def release(self) -> None:
        with self._lock:
            while self._waiting:
                _, _, waiter = heapq.heappop(self._waiting)
                if not waiter.gone:
                    waiter.event.set()  # the place passes to it: the number in use stays the same
                    return
            self._used = max(0, self._used - 1)


class WeightedLimiter:
    """At most ``capacity`` units in flight; a request for n units waits until n are free.

    A request larger than the capacity is let through alone (holding the whole capacity) rather than
    waiting for ever. ``capacity`` may be lowered or raised while in use (the vendor told us its limit).
    """

    def __init__(self, capacity: int, name: str | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.name = name
        """The name of this limit in an installed limiter backend (None: this process only)."""
        self._capacity = capacity
        self._used = 0
        self._cond = threading.Condition()

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def in_use(self) -> int:
        return self._used

    def set_capacity(self, capacity: int) -> None:
        with self._cond:
            self._capacity = max(1, capacity)
            self._cond.notify_all()

    def acquire(self, units: int, timeout: float | None = None) -> int:
        """Take ``units`` (capped at the capacity) and return them; ``RateLimited`` on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                take = min(units, self._capacity)
                if self._used + take <= self._capacity:
                    self._used += take
                    return take
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise RateLimited("local in-flight limit: no free place in time", retry_after=1.0)
                self._cond.wait(remaining)

    def release(self, units: int) -> None:
        with self._cond:
            self._used = max(0, self._used - units)
            self._cond.notify_all()

    @contextmanager
    def hold(self, units: int, timeout: float | None = None) -> Iterator[int]:
        """Hold ``units`` here and, for a named limiter, in the installed backend too (within the same timeout)."""
        started = time.monotonic()
        taken = self.acquire(units, timeout)
        try:
            if self.name is None:
                yield taken
            else:
                left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
                with backend_hold(self.name, taken, self._capacity, left):
                    yield taken
        finally:
            self.release(taken)


class RateWindow:
    """At most ``max_calls`` starts in any ``period_s`` seconds (sliding window); callers wait."""

    def __init__(self, max_calls: int, period_s: float) -> None:
        self.max_calls = max_calls
        self.period_s = period_s
        self._starts: deque[float] = deque()
        self._lock = threading.Lock()

    def wait(self, deadline: Deadline | None = None) -> float:
        """Block until a call may start; returns the seconds waited. With a ``deadline`` that leaves no time for
        the wait, ``RateLimited`` (nothing was sent) with the wait as ``retry_after``."""
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                while self._starts and now - self._starts[0] >= self.period_s:
                    self._starts.popleft()
                if len(self._starts) < self.max_calls:
                    self._starts.append(now)
                    return waited
                delay = self.period_s - (now - self._starts[0])
            if deadline is not None and delay >= deadline.remaining():
                raise RateLimited(
                    f"local rate limit: {self.max_calls} calls in {self.period_s:g} s; the next start is "
                    f"{delay:.2f} s away, past the call's deadline ({deadline.describe()}); not sent",
                    retry_after=delay,
                )
            time.sleep(delay)
            waited += delay


_SHARED: dict[tuple[str, ...], Any] = {}
_SHARED_LOCK = threading.Lock()


def shared_limiter(vendor: str, key: str, capacity: int) -> WeightedLimiter:
    """The process-wide in-flight limiter of one vendor account (keyed by a fingerprint of its key)."""
    ident = ("inflight", vendor, key_fingerprint(key))
    with _SHARED_LOCK:
        lim = _SHARED.get(ident)
        if lim is None:
            lim = _SHARED[ident] = WeightedLimiter(capacity, name=":".join(ident))
        return lim  # type: ignore[no-any-return]


def shared_rate_window(vendor: str, key: str, max_calls: int, period_s: float) -> RateWindow:
    ident = ("rate", vendor, key_fingerprint(key), str(max_calls), str(period_s))
    with _SHARED_LOCK:
        win = _SHARED.get(ident)
        if win is None:
            win = _SHARED[ident] = RateWindow(max_calls, period_s)
        return win  # type: ignore[no-any-return]
