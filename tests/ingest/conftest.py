"""The AEP sandbox with a HubSpot base connection, and clients on it, for the ingest tests."""

from __future__ import annotations

import pytest
from audience_sync.clients.aep import AepClient
from audience_sync.clients.flow_service import FlowServiceClient
from audience_sync.hooks.aep import AepHook
from audience_sync.operators.aep import hubspot_connection_payload
from sandbox import connections
from sandbox_process import start_sandbox


@pytest.fixture
def aep(tmp_path, monkeypatch):
    """An AEP sandbox whose runs take 0.5 s, with aep_default pointing at it."""
    server = start_sandbox("aep", tmp_path)
    server.set_faults(extra={"flow_run_seconds": 0.5})
    monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", connections.aep_connection(server.url))
    yield server
    server.stop()


@pytest.fixture
def client(aep) -> FlowServiceClient:
    return FlowServiceClient(AepHook())


@pytest.fixture
def base_connection(aep) -> str:
    """A HubSpot base connection made the way connect makes it (OAuth params are placeholders here)."""
    params = {"clientId": "id", "clientSecret": "secret", "refreshToken": "refresh", "accessToken": "access"}
    return AepClient(AepHook()).create_connection(hubspot_connection_payload("HubSpot base", "", params))["id"]
