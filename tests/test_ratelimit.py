"""The rolling-window limiter on its own: never over the window, close to the ceiling, shared by threads."""

from __future__ import annotations

import threading
import time

import pytest
from audience_sync.ratelimit import RollingWindowLimiter


def run_threads(limiter: RollingWindowLimiter, threads: int, per_thread: int, latency: float) -> list[tuple[float, float]]:
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()

    def worker():
        for _ in range(per_thread):
            slot = limiter.acquire()
            sent = time.monotonic()
            time.sleep(latency)
            done = time.monotonic()
            limiter.release(slot)
            with lock:
                spans.append((sent, done))

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return spans


def test_threads_share_one_window_and_reach_the_ceiling(window_peak):
    limiter = RollingWindowLimiter(limit=20, interval_s=0.5)
    started = time.monotonic()
    spans = run_threads(limiter, threads=8, per_thread=10, latency=0.005)  # 80 requests
    elapsed = time.monotonic() - started
    assert limiter.allowed == 19
    # Whether the server counts a request at send or at arrival, no window holds more than allowed.
    assert window_peak([s for s, _ in spans], 0.5) <= 19
    assert window_peak([d for _, d in spans], 0.5) <= 19
    # 80 requests at 19 per 0.5 s (+ latency): four full windows, no more than about five.
    assert 1.5 <= elapsed < 2.6


def test_share_divides_the_account_limit():
    assert RollingWindowLimiter(limit=100, interval_s=10, share=0.5).allowed == 49
    assert RollingWindowLimiter(limit=190, interval_s=10).allowed == 186  # ≥ 0.95 of the ceiling
    assert RollingWindowLimiter(limit=4, interval_s=1, share=0.25).allowed == 1
    with pytest.raises(ValueError):
        RollingWindowLimiter(limit=100, interval_s=10, share=0)


def test_pause_holds_everybody_and_configure_resizes():
    limiter = RollingWindowLimiter(limit=5, interval_s=10)
    limiter.pause(0.3)
    started = time.monotonic()
    limiter.release(limiter.acquire())
    assert time.monotonic() - started >= 0.28
    limiter.configure(50, 0.2)
    assert (limiter.limit, limiter.interval_s, limiter.allowed) == (50, 0.2, 49)
    limiter.configure(None, None)  # an answer without rate headers changes nothing
    assert (limiter.limit, limiter.interval_s) == (50, 0.2)


def test_an_unanswered_request_frees_its_slot_eventually():
    limiter = RollingWindowLimiter(limit=2, interval_s=0.1, stale_after_s=0.2)
    limiter.acquire()  # never released: its connection dropped
    started = time.monotonic()
    limiter.release(limiter.acquire())
    limiter.release(limiter.acquire())
    assert 0.25 <= time.monotonic() - started < 1.0


def test_requests_of_others_in_the_window_are_waited_for():
    limiter = RollingWindowLimiter(limit=10, interval_s=0.3)
    limiter.observe(remaining=2)  # the server already counts 8 requests that are not ours
    started = time.monotonic()
    limiter.release(limiter.acquire())  # 8 + 1 = 9 = the account's allowance (10 less the margin)
    assert time.monotonic() - started < 0.05
    limiter.release(limiter.acquire())  # must wait for the others to leave the window
    assert time.monotonic() - started >= 0.28


def test_a_share_is_not_starved_by_others_using_theirs():
    limiter = RollingWindowLimiter(limit=10, interval_s=5, share=0.5)
    limiter.observe(remaining=6)  # another task holds 4 of the 9
    started = time.monotonic()
    for _ in range(limiter.allowed):  # our own 4 still go at once
        limiter.release(limiter.acquire())
    assert time.monotonic() - started < 0.05


def test_a_limit_announced_by_the_server_restarts_the_adaptive_cap_from_half_the_share():
    """A task's limiter assumes the default limit (100) until HubSpot's headers announce the account's (190): its
    cap starts again from half of its real share (a quarter of 190 while others run), whatever the default was,
    and reaches the share an eighth of a window later."""
    limiter = RollingWindowLimiter(limit=100, interval_s=4.0, share=0.25, adaptive=True)
    limiter.configure(190, 4.0)
    limiter.observe(remaining=150)  # 40 requests of others in the window: this task keeps to its share
    assert limiter.allowed == 46  # floor(190 × 0.25 × 0.98)
    started = time.monotonic()
    sent = [limiter.acquire() for _ in range(23)]  # half the share at once
    assert time.monotonic() - started < 0.3
    sent += [limiter.acquire() for _ in range(23)]  # the other half once the cap has risen
    assert time.monotonic() - started >= 0.45
    for slot in sent:
        limiter.release(slot)


def test_tasks_seeing_the_same_room_each_take_only_their_share_of_it():
    """Another client's requests fill the window (a finished wave's, say): with 18 requests of room left, a task
    whose share is a quarter sends 4 and waits for the server's next count, so four such tasks fit in the room."""
    limiter = RollingWindowLimiter(limit=100, interval_s=10, share=0.25, adaptive=True)
    limiter.observe(remaining=20)  # 80 of others: room 98 - 80 = 18, while the task's own cap (24) allows more
    taken = []

    def take(count: int) -> None:
        for _ in range(count):
            taken.append(limiter.acquire())

    first = threading.Thread(target=take, args=(5,), daemon=True)
    first.start()
    first.join(timeout=1.0)
    assert len(taken) == 4 and first.is_alive()  # floor(0.25 × 18); the fifth waits for a count
    limiter.observe(remaining=20)  # a new count (our 4 are in flight): room 98 - 4 - 76 = 18 again
    first.join(timeout=1.0)
    assert len(taken) == 5 and not first.is_alive()
    for slot in taken:
        limiter.release(slot)
