"""A task killed with SIGKILL in the middle of an upsert resumes where it stopped and sends nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
from audience_sync.upsert import upsert_file

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import sys
from audience_sync.clients.hubspot import HubSpotClient
from audience_sync.hooks.hubspot import HubSpotHook
from audience_sync.upsert import upsert_file
upsert_file(HubSpotClient(HubSpotHook()), sys.argv[1], sys.argv[2], batch_size=10)
"""


def test_resume_after_sigkill_sends_only_the_unfinished_batches(hs, tmp_path):
    hs.sandbox.set_faults(latency_ms=120)  # each batch takes a while, so the kill lands mid-run
    path = hs.chunk(300)
    out = tmp_path / "out"
    checkpoint = out / "chunk-0000.checkpoint"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT / "include")])}
    child = subprocess.Popen([sys.executable, "-c", CHILD, path, str(out)], env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while len(list(checkpoint.glob("batch-*.json"))) < 6:
            assert child.poll() is None, "the upsert ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    finished = len(list(checkpoint.glob("batch-*.json")))
    assert 6 <= finished < 30
    time.sleep(0.5)  # let the server finish (and log) a request that was in flight at the kill
    sent_before = len(hs.requests("/batch/upsert"))
    assert sent_before - finished in (0, 1)  # at most one batch was in flight

    hs.sandbox.set_faults(latency_ms=0)
    summary = upsert_file(hs.connect(), path, out, batch_size=10)

    upserts = hs.requests("/batch/upsert")
    assert len(upserts) - sent_before == 30 - finished  # only the unfinished batches went out again
    assert len(upserts) in (30, 31)  # 30 batches, plus the one in flight at the kill when it reached HubSpot
    emails = Counter(c["properties"]["email"] for c in hs.contacts())
    assert len(emails) == 300 and set(emails.values()) == {1}
    assert summary["created"] + summary["updated"] == 300 and summary["rejected"] == 0
    results = pd.read_parquet(summary["results_path"])
    assert results["email"].is_unique and len(results) == 300

    # Clearing the finished task and running it again sends nothing at all.
    again = upsert_file(hs.connect(), path, out, batch_size=10)
    assert len(hs.requests("/batch/upsert")) == len(upserts)
    assert again["created"] + again["updated"] == 300


def test_a_rerun_with_the_same_content_resumes_without_resending(hs, tmp_path):
    path = hs.chunk(30)
    first = upsert_file(hs.connect(), path, tmp_path / "out", batch_size=10)
    assert first["requests"] == 3
    again = upsert_file(hs.connect(), path, tmp_path / "out", batch_size=10)
    assert len(hs.requests("/batch/upsert")) == 3  # nothing sent again
    assert (again["created"], again["requests"]) == (30, 3)  # the figures of the finished batches


def test_different_content_with_the_same_row_count_starts_the_chunk_over(hs, tmp_path, caplog):
    """Same rows, same batches, other values (a later plan over the same chunk name): nothing is skipped."""
    out = tmp_path / "out"
    upsert_file(hs.connect(), hs.chunk(30), out, batch_size=10)
    changed = hs.chunk(30, lastname=[f"Changed{i}" for i in range(30)])
    caplog.set_level("WARNING", logger="audience_sync.upsert")
    summary = upsert_file(hs.connect(), changed, out, batch_size=10)
    assert len(hs.requests("/batch/upsert")) == 6  # all three batches sent again
    assert (summary["updated"], summary["requests"]) == (30, 3)
    assert {c["properties"]["lastname"] for c in hs.contacts()} == {f"Changed{i}" for i in range(30)}
    warning = [r.getMessage() for r in caplog.records if "starting this chunk over" in r.getMessage()]
    assert warning and "content_sha256" in warning[0] and "@" not in warning[0]


def test_another_batch_size_starts_the_chunk_over(hs, tmp_path):
    path = hs.chunk(30)
    upsert_file(hs.connect(), path, tmp_path / "out", batch_size=10)
    summary = upsert_file(hs.connect(), path, tmp_path / "out", batch_size=20)
    assert (summary["requests"], summary["updated"], len(hs.requests("/batch/upsert"))) == (2, 30, 5)
    assert sorted(p.name for p in (tmp_path / "out" / "chunk-0000.checkpoint").iterdir()) == [
        "batch-000000.json", "batch-000001.json", "manifest.json",
    ]
