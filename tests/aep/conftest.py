"""Fixtures for the AEP client tests: a seeded sandbox (own process, own part size) and its request log."""

from __future__ import annotations

import pytest
from aep_support import seeded
from sandbox_process import start_sandbox


@pytest.fixture
def aep(tmp_path, monkeypatch):
    """3,000 profiles in 3 audiences; exports split into parts of at most 500 rows; jobs take 0.3 s."""
    server = start_sandbox("aep", tmp_path, "--part-rows", "500", "--job-seconds", "0.3")
    yield seeded(server, monkeypatch, profiles=3000)
    server.stop()
