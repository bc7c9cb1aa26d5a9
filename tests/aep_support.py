"""The seeded AEP sandbox used by the AEP client tests and the end-to-end tests."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from sandbox import connections, seed
from sandbox_process import SandboxProcess, start_sandbox


class TaskStateStore:
    """The two calls ResumableJobMixin makes on Airflow's task state store, kept across 'attempts'."""

    def __init__(self) -> None:
        self.values: dict = {}

    def get(self, key):
        return self.values.get(key)

    def set(self, key, value, **_):
        self.values[key] = value


@dataclass
class SeededAep:
    server: SandboxProcess
    audiences: list[dict]  # [{id, name}]
    profiles: int
    started: float

    def requests(self, path_part: str = "", method: str | None = None) -> list[dict]:
        """Calls the sandbox served since the fixture started (admin calls are not logged)."""
        logged = self.server.admin("GET", f"requests?since={self.started}")["requests"]
        return [r for r in logged if path_part in r["path"] and (method is None or r["method"] == method)]

    def mark(self) -> None:
        self.started = time.time()


def seeded(server: SandboxProcess, monkeypatch, profiles: int, audiences: int = 3) -> SeededAep:
    result = seed.seed_population(server.db, profiles=profiles, audiences=audiences, seed=11, dirty_rate=0.01)
    monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", connections.aep_connection(server.url))
    monkeypatch.setenv("AIRFLOW_CONN_HUBSPOT_DEFAULT", connections.hubspot_connection("http://127.0.0.1:9"))
    return SeededAep(server, [{"id": a["id"], "name": a["name"]} for a in result.audiences], profiles, time.time())


@pytest.fixture
def aep(tmp_path, monkeypatch):
    """3,000 profiles in 3 audiences; exports split into parts of at most 500 rows; jobs take 0.3 s."""
    server = start_sandbox("aep", tmp_path, "--part-rows", "500", "--job-seconds", "0.3")
    yield seeded(server, monkeypatch, profiles=3000)
    server.stop()
