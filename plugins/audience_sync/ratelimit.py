"""Client-side rate limiting that reaches an API's ceiling without tripping it.

HubSpot counts requests per account in a rolling window ("API usage guidelines and limits",
developers.hubspot.com/docs/developer-tooling/platform/usage-guidelines: 100 or 190 requests per
10 s by tier) and announces the window in ``X-HubSpot-RateLimit-Max`` and
``X-HubSpot-RateLimit-Interval-Milliseconds`` (changelog "Rate limit headers will now appear for
OAuth authenticated calls"; "Burst limits are increasing...": "use those headers in your apps").
A fixed sleep between calls wastes the window; a token bucket can burst past a rolling window.
A sliding log of request times allows exactly ``limit`` requests in any window, so the client can
run at the ceiling.

The server counts a request when it arrives, somewhere between our send and its answer. The log
therefore keeps a request "in the window" from its send until ``interval`` after its answer: a
little throughput (one latency per window) is traded for never being over.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

SAFETY_MARGIN = 0.02  # keep ~2 % below the ceiling (at least one request below it)


class _Slot:
    __slots__ = ("done", "sent")

    def __init__(self, sent: float) -> None:
        self.sent = sent
        self.done: float | None = None


class RollingWindowLimiter:
    """At most ``allowed`` requests inside any ``interval_s`` window, shared by all threads.

    ``share`` (0 < share ≤ 1) is this process's part of the account limit: N task processes that
    run in parallel (an Airflow pool of N slots) each take limit × 1/N.
    ``stale_after_s`` frees a slot whose answer never came (a dropped connection).
    """

    def __init__(
        self,
        limit: int,
        interval_s: float,
        share: float = 1.0,
        margin: float = SAFETY_MARGIN,
        stale_after_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"rate share must be in (0, 1], got {share}")
        if limit < 1 or interval_s <= 0:
            raise ValueError(f"rate limit must be ≥ 1 request per positive interval, got {limit}/{interval_s}s")
        self.limit = int(limit)
        self.interval_s = float(interval_s)
        self.share = share
        self.margin = margin
        self.stale_after_s = stale_after_s
        self.clock = clock
        self._slots: list[_Slot] = []
        self._blocked_until = 0.0
        self._cond = threading.Condition()

    @property
    def allowed(self) -> int:
        """Requests per window this process may send: limit × share less the safety margin."""
        return max(1, math.floor(self.limit * self.share * (1 - self.margin)))

    def configure(self, limit: int | None, interval_s: float | None) -> None:
        """Resize from the server's announcement (rate headers); ignores missing or absurd values."""
        with self._cond:
            changed = False
            if limit and limit >= 1 and limit != self.limit:
                self.limit, changed = int(limit), True
            if interval_s and interval_s > 0 and interval_s != self.interval_s:
                self.interval_s, changed = float(interval_s), True
            if changed:
                self._cond.notify_all()

    def _prune(self, now: float) -> None:
        keep = []
        for slot in self._slots:
            if slot.done is None:
                if now - slot.sent < self.stale_after_s + self.interval_s:
                    keep.append(slot)
            elif now - slot.done < self.interval_s:
                keep.append(slot)
        self._slots = keep

    def _wait_time(self, now: float) -> float:
        if now < self._blocked_until:
            return self._blocked_until - now
        if len(self._slots) < self.allowed:
            return 0.0
        done = sorted(s.done for s in self._slots if s.done is not None)
        excess = len(self._slots) - self.allowed  # how many must leave the window first
        if excess < len(done):
            return max(0.001, done[excess] + self.interval_s - now)
        return 0.05  # every slot is in flight: an answer will wake us

    def acquire(self) -> _Slot:
        """Block until a request may be sent; the caller must ``release`` the slot on its answer."""
        with self._cond:
            while True:
                now = self.clock()
                self._prune(now)
                wait = self._wait_time(now)
                if wait <= 0:
                    slot = _Slot(now)
                    self._slots.append(slot)
                    return slot
                self._cond.wait(timeout=wait)

    def release(self, slot: _Slot) -> None:
        with self._cond:
            if slot.done is None:
                slot.done = self.clock()
            self._cond.notify_all()

    def pause(self, seconds: float) -> None:
        """After a 429: nobody sends until the server's window has room again."""
        with self._cond:
            self._blocked_until = max(self._blocked_until, self.clock() + max(0.0, seconds))
