"""The adaptive rate budget (issue 17): a task running alone uses the whole account limit whatever its fixed share,
tasks running together keep to their shares, and nobody draws a 429. Each hook stands for one upsert task (its own
limiter); the sandbox counts the account's requests in a 1-second window of 40 calls."""

from __future__ import annotations

import threading
import time

import pytest
from sandbox.connections import hubspot_connection
from sandbox_process import start_sandbox

from audience_sync.hooks.hubspot import HubSpotHook

LIMIT, WINDOW_MS = 40, 1000


@pytest.fixture
def small_account(tmp_path, monkeypatch):
    server = start_sandbox("hubspot", tmp_path, "--rate-limit", str(LIMIT), "--interval-ms", str(WINDOW_MS))
    monkeypatch.setenv(
        "AIRFLOW_CONN_HUBSPOT_DEFAULT",
        hubspot_connection(server.url, oauth=False, rate_limit=LIMIT, rate_interval_ms=WINDOW_MS),
    )
    yield server
    server.stop()


def run_task(counts: list[int], until: float, start_at: float = 0.0, threads: int = 4) -> None:
    """One upsert-like task: its own hook (its own limiter, fixed share 1/4), four threads calling until ``until``."""
    time.sleep(max(0.0, start_at - time.monotonic()))
    hook = HubSpotHook(rate_share=0.25)
    done = [0]

    def worker() -> None:
        while time.monotonic() < until:
            hook.request_json("GET", hook.path("crm/properties", "contacts/groups"))
            done[0] += 1

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    counts.append(done[0])


def run_tasks(starts: list[float], seconds: float) -> list[int]:
    now = time.monotonic()
    counts: list[int] = []
    tasks = [threading.Thread(target=run_task, args=(counts, now + seconds, now + s)) for s in starts]
    for t in tasks:
        t.start()
    for t in tasks:
        t.join()
    return counts


def refusals(server) -> int:
    return server.admin("GET", "stats")["stats"].get("status_429", 0)


def test_a_task_alone_uses_the_whole_budget(small_account):
    [count] = run_tasks([0.0], seconds=5)
    assert count > 0.75 * LIMIT * 5  # its fixed share alone would allow 9 per second: 45 in all
    assert refusals(small_account) == 0


def test_a_task_joining_a_running_one_draws_no_429(small_account):
    counts = run_tasks([0.0, 2.0], seconds=5)
    assert refusals(small_account) == 0
    assert min(counts) > 0  # the newcomer is not starved


def test_four_tasks_together_share_the_budget_without_429(small_account):
    counts = run_tasks([0.0] * 4, seconds=4)
    assert refusals(small_account) == 0
    assert sum(counts) > 0.8 * LIMIT * 4
