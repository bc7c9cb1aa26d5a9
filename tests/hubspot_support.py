"""HubSpot client fixtures (``hs``: a sandbox, a connection per test, chunk files, request counts), shared by the
hook, client, upsert and operator tests through tests/conftest.py."""

from __future__ import annotations

import pandas as pd
import pytest
from audience_sync.clients.hubspot import HubSpotClient
from audience_sync.hooks.hubspot import HubSpotHook
from sandbox.connections import hubspot_connection, hubspot_oauth_only_connection


class HubSpotEnv:
    def __init__(self, sandbox, monkeypatch, tmp_path):
        self.sandbox = sandbox
        self.monkeypatch = monkeypatch
        self.tmp_path = tmp_path

    def connect(self, oauth: bool = False, trace_ids: bool = True, **extra) -> HubSpotClient:
        """Point ``hubspot_default`` at the sandbox (private-app token, or an OAuth app only); a fresh client."""
        conn = (
            hubspot_oauth_only_connection(self.sandbox.url, **extra)
            if oauth
            else hubspot_connection(self.sandbox.url, oauth=False, **extra)
        )
        self.monkeypatch.setenv("AIRFLOW_CONN_HUBSPOT_DEFAULT", conn)
        return HubSpotClient(HubSpotHook(), trace_ids=trace_ids)

    def server(self, **extra) -> None:
        """Set the sandbox's HubSpot-specific knobs (rate_limit, interval_ms, daily_limit, ...)."""
        current = self.sandbox.admin("GET", "faults")["extra"]
        self.sandbox.set_faults(extra={**current, **extra})

    def requests(self, suffix: str = "", method: str | None = None) -> list[dict]:
        return [
            r
            for r in self.sandbox.admin("GET", "requests")["requests"]
            if r["path"].endswith(suffix) and (method is None or r["method"] == method)
        ]

    def contacts(self) -> list[dict]:
        return self.sandbox.admin("GET", "contacts")["contacts"]

    def stats(self) -> dict:
        return self.sandbox.admin("GET", "stats")["stats"]

    def audience_property(self, client: HubSpotClient, name: str, options=("realized", "existing", "exited")) -> None:
        """An enumeration property like the ones EnsureAudiencePropertiesOperator makes, in a test group."""
        if "test_audiences" not in {g["name"] for g in client.list_groups()}:
            client.create_group("test_audiences", "Test audiences")
        client.create_property(
            {
                "name": name,
                "label": name,
                "type": "enumeration",
                "fieldType": "select",
                "groupName": "test_audiences",
                "options": [{"label": o.title(), "value": o} for o in options],
            }
        )

    def chunk(self, count: int, name: str = "chunk-0000.parquet", **columns) -> str:
        """A mapped chunk: ``count`` contacts with email/firstname/lastname, plus columns given as lists."""
        frame = pd.DataFrame(
            {
                "email": [f"person{i:05d}@example.com" for i in range(count)],
                "firstname": [f"First{i}" for i in range(count)],
                "lastname": [f"Last{i}" for i in range(count)],
                "_source_row": [str(i) for i in range(count)],  # underscore columns are never sent
                **columns,
            }
        ).astype("string")
        path = self.tmp_path / name
        frame.to_parquet(path, index=False)
        return str(path)


@pytest.fixture
def hs(hubspot_sandbox, monkeypatch, tmp_path) -> HubSpotEnv:
    env = HubSpotEnv(hubspot_sandbox, monkeypatch, tmp_path)
    env.connect()
    return env


@pytest.fixture
def window_peak():
    """The most requests found in any window of ``interval`` seconds, given their times."""

    def peak(times: list[float], interval: float) -> int:
        times = sorted(times)
        best, start = 0, 0
        for end, t in enumerate(times):
            while t - times[start] >= interval:
                start += 1
            best = max(best, end - start + 1)
        return best

    return peak
