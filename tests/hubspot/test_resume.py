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


def test_a_checkpoint_made_with_another_batch_size_is_refused(hs, tmp_path):
    path = hs.chunk(30)
    upsert_file(hs.connect(), path, tmp_path / "out", batch_size=10)
    try:
        upsert_file(hs.connect(), path, tmp_path / "out", batch_size=20)
    except ValueError as error:
        assert "delete the folder" in str(error)
    else:
        raise AssertionError("a changed batch size must not reuse the checkpoint")
