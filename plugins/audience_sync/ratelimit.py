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

Other clients of the same account (the previous upsert task, a parallel one, another app) fill
the same window. ``X-HubSpot-RateLimit-Remaining`` tells how full the server's window is; what it
counts beyond our own requests is kept as "others" slots, so a task that starts right after
another does not burst on top of the requests still counted.

Adaptive budget: the same count tells whether anyone else is sending. A task that sees nobody else's
requests in the window takes the whole budget, not its fixed share (1 / pool slots), ramping up from
half its share so that tasks starting together see each other first; as soon as others show, it keeps
to its fixed share, so tasks running together never add up to more than the limit. Where the requests
still in the window (a finished task's, another app's) are what limits it, it takes only its share of
the room HubSpot's last count showed, since the other tasks see the same room at the same moment.
Until the first answer has told how full the window is, it sends one request at a time (a probe).
Without rate headers (search) it keeps the fixed share.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

SAFETY_MARGIN = 0.02  # keep ~2 % below the ceiling (at least one request below it)
# An adaptive cap rises at most twofold per this share of the window (1.25 s of HubSpot's 10 s): time enough for
# tasks that start together to see each other's first requests in the server's count.
CAP_RISE_EVERY = 1 / 8


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
    ``adaptive``: once the server's count is known, ``share`` caps this process only while others send (see the
    module doc).
    """

    def __init__(
        self,
        limit: int,
        interval_s: float,
        share: float = 1.0,
        margin: float = SAFETY_MARGIN,
        stale_after_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        adaptive: bool = False,
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
        self.adaptive = adaptive
        self._observed = False  # has the server told how full its window is?
        self._left: list[float] = []  # when our requests recently left the log
        self._cap = self.allowed  # adaptive mode: this process's current cap (see _adapted_cap)
        self._cap_raised_at = clock()
        self._room_at_count = 0  # adaptive mode: the account's room at the server's last count (see _fair_wait)
        self._sent_since_count = 0
        self._slots: list[_Slot] = []
        self._others: list[float] = []  # when each request of other clients leaves the window
        self._blocked_until = 0.0
        self._cond = threading.Condition()

    @property
    def allowed(self) -> int:
        """Requests per window this process may send: limit × share less the safety margin."""
        return max(1, math.floor(self.limit * self.share * (1 - self.margin)))

    @property
    def account_allowed(self) -> int:
        """Requests per window for everybody together: the account limit less the safety margin."""
        return max(1, math.floor(self.limit * (1 - self.margin)))

    def observe(self, remaining: int, sent: float | None = None) -> None:
        """Account for the server's count (``X-HubSpot-RateLimit-Remaining``) of requests not ours; ``sent``: when the
        request that carried the count was sent (our clock), if known."""
        with self._cond:
            now = self.clock()
            self._prune(now)
            self._observed = True
            self._cond.notify_all()
            # Our requests that left our log after this request was sent may still have been counted by the server
            # when it answered: they are ours, not others'.
            self._left = [leaves for leaves in self._left if sent is not None and leaves > sent]
            others = max(0, self.limit - int(remaining) - len(self._slots) - len(self._left))
            if others > len(self._others):
                self._others.extend([now + self.interval_s] * (others - len(self._others)))
            elif others < len(self._others):
                del self._others[: len(self._others) - others]  # the oldest have left the server's window
            self._room_at_count = self.account_allowed - len(self._slots) - len(self._others)
            self._sent_since_count = 0

    def configure(self, limit: int | None, interval_s: float | None) -> None:
        """Resize from the server's announcement (rate headers); ignores missing or absurd values."""
        with self._cond:
            changed = False
            if limit and limit >= 1 and limit != self.limit:
                self.limit, changed = int(limit), True
                # The cap was sized from a limit assumed before HubSpot told the real one: start again from half
                # this task's share of the real one, rising as any cap does (see _adapted_cap). Tasks that start
                # together each see the others' first requests before any of them fills its share, and the
                # account's other clients (setup calls, other apps) have room beside them.
                self._cap, self._cap_raised_at = max(1, self.allowed // 2), self.clock()
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
            else:
                self._left.append(slot.done + self.interval_s)
        self._slots = keep
        self._left = [left for left in self._left if now - left < self.stale_after_s]
        self._others = [leaves for leaves in self._others if leaves > now]

    def _wait_time(self, now: float) -> float:
        if now < self._blocked_until:
            return self._blocked_until - now
        if self.adaptive and not self._observed and any(s.done is None for s in self._slots):
            return 0.05  # probing: the first answer will tell how full the window is, and wake us
        own_cap = self._adapted_cap(now) if self.adaptive and self._observed else self.allowed
        own_excess = len(self._slots) - own_cap + 1
        total_excess = len(self._slots) + len(self._others) - self.account_allowed + 1
        if own_excess <= 0 and total_excess <= 0:
            return self._fair_wait(own_cap)
        own_leaves = sorted(s.done + self.interval_s for s in self._slots if s.done is not None)
        waits = []
        if own_excess > 0:  # how many of ours must leave the window first
            waits.append(own_leaves[own_excess - 1] if own_excess <= len(own_leaves) else None)
        if total_excess > 0:  # how many of anybody's must leave first
            leaves = sorted(own_leaves + self._others)
            waits.append(leaves[total_excess - 1] if total_excess <= len(leaves) else None)
        if None in waits:
            return 0.05  # slots in flight: an answer will wake us
        wait = max(waits) - now
        if own_excess > 0 and total_excess <= 0 and own_cap < self._adapted_target():
            wait = min(wait, self._cap_raised_at + self.interval_s * CAP_RISE_EVERY - now)  # the cap may rise soon
        return max(0.001, wait)

    def _fair_wait(self, own_cap: int) -> float:
        """When the account's room, not this process's cap, is what limits it, several tasks see the same room at
        once (the previous tasks' requests still fill the window as they leave it): each takes only its share of
        the room the server's last count showed, and waits for the next count (an answer) for more. With nothing
        in flight it may send one request to get that count: one per task fits in the safety margin."""
        if not (self.adaptive and self._observed and self._others and self.share < 1):
            return 0.0
        room = self.account_allowed - len(self._slots) - len(self._others)
        if room >= own_cap - len(self._slots):
            return 0.0  # this process's cap binds first: its share holds
        if self._sent_since_count < math.floor(self.share * self._room_at_count):
            return 0.0
        if not any(slot.done is None for slot in self._slots) and self._sent_since_count == 0:
            return 0.0
        return 0.05  # an answer will bring a new count and wake us

    def _adapted_cap(self, now: float) -> int:
        """This process's cap in adaptive mode: the whole budget while nobody else's requests are in the window, the
        fixed share as soon as some are. It falls at once and rises at most twofold per ``CAP_RISE_EVERY`` of a
        window, so tasks that start together see each other before any of them leaves its share. (Splitting the
        budget among however many tasks run, rather than falling back to the fixed share, made them race for the
        same freed room and drew 429s in the sandbox: the caps must add up to no more than the account's limit at
        every moment.)"""
        target = self._adapted_target()
        if target < self._cap:
            self._cap = target
        elif target > self._cap and now - self._cap_raised_at >= self.interval_s * CAP_RISE_EVERY:
            self._cap, self._cap_raised_at = min(target, 2 * self._cap), now
        return self._cap

    def _adapted_target(self) -> int:
        return self.allowed if not self.adaptive or self._others else self.account_allowed

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
                    self._sent_since_count += 1
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
