"""Connection types ``aep`` and ``hubspot``: registered by the installed provider package, drawn by
the UI's form metadata, read by the sync's hooks, and tested by the api-server's Test endpoint
against the real sandboxes (in-process api-server app, real HTTP to the sandboxes)."""

from __future__ import annotations

import json

import pytest
from sandbox import credentials

from scripts.local_connections import sandbox_connections


def test_provider_registers_both_types_with_their_hooks():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "audience-sync-provider" in manager.providers
    hooks = manager.hooks
    assert hooks["aep"].hook_class_name == "audience_sync.hooks.forms.AepConnectionHook"
    assert hooks["hubspot"].hook_class_name == "audience_sync.hooks.forms.HubSpotConnectionHook"
    assert hooks["aep"].connection_id_attribute_name == "aep_conn_id"


@pytest.fixture
def api(airflow_db, monkeypatch):
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    monkeypatch.setenv("AIRFLOW__CORE__TEST_CONNECTION", "Enabled")
    client = TestClient(create_app("core"))
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def test_ui_form_shows_each_types_own_fields(api):
    meta = {m["connection_type"]: m for m in api.get("/ui/connections/hook_meta").json()}
    aep, hubspot = meta["aep"], meta["hubspot"]
    assert aep["hook_name"] == "Adobe Experience Platform"
    assert {"org_id", "sandbox_name", "export_dataset_id", "merge_policy_id"} <= set(aep["extra_fields"])
    assert aep["standard_fields"]["login"]["title"] == "Client ID"
    assert aep["standard_fields"]["password"]["title"] == "Client secret"
    assert aep["extra_fields"]["sandbox_name"]["value"] is None  # empty means prod (see local_connections)
    assert {"api_version", "client_id", "client_secret", "refresh_token"} <= set(hubspot["extra_fields"])
    assert hubspot["extra_fields"]["client_secret"]["schema"]["format"] == "password"
    assert hubspot["extra_fields"]["api_version"]["schema"]["enum"] == ["2026-03", "2026-09", "v3"]
    assert hubspot["standard_fields"]["login"]["hidden"] is True


def _test(api, conn_id: str, fields: dict) -> dict:
    response = api.post("/api/v2/connections/test", json={"connection_id": conn_id, **fields})
    assert response.status_code == 200, response.text
    return response.json()


def test_test_button_against_the_sandboxes(api, hubspot_sandbox, aep_sandbox):
    conns = sandbox_connections(hubspot_sandbox.url, aep_sandbox.url, "token")
    answer = _test(api, "hubspot_default", conns["hubspot_default"])
    assert answer == {"status": True, "message": "HubSpot: authenticated and read the API"}
    answer = _test(api, "aep_default", conns["aep_default"])
    assert answer == {"status": True, "message": "AEP: authenticated and read the API"}

    oauth = sandbox_connections(hubspot_sandbox.url, aep_sandbox.url, "oauth")["hubspot_default"]
    assert _test(api, "hubspot_default", oauth)["status"] is True  # the OAuth app form, no token

    wrong = {**conns["hubspot_default"], "password": "pat-na1-wrong-token-123456"}
    answer = _test(api, "hubspot_default", wrong)
    assert answer["status"] is False and "401" in answer["message"]
    assert "wrong-token" not in answer["message"]
    wrong = {**conns["aep_default"], "password": "not-the-aep-secret"}
    answer = _test(api, "aep_default", wrong)
    assert answer["status"] is False and "not-the-aep-secret" not in answer["message"]
    assert credentials.AEP_CLIENT_SECRET not in answer["message"]
    down = {**conns["aep_default"], "host": "http://127.0.0.1:9"}
    answer = _test(api, "aep_default", down)
    assert answer["status"] is False and "CONNECTION_ERROR" in answer["message"]


def test_sync_hooks_read_connections_of_the_new_types(monkeypatch, hubspot_sandbox, aep_sandbox):
    from audience_sync.hooks.aep import AepHook
    from audience_sync.hooks.hubspot import HubSpotHook

    for conn_id, fields in sandbox_connections(hubspot_sandbox.url, aep_sandbox.url).items():
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({**fields, "extra": json.loads(fields["extra"])})
        )
    aep = AepHook()
    assert aep.get_connection("aep_default").conn_type == "aep"
    assert aep.settings.org_id == credentials.AEP_ORG_ID
    assert aep.request_json("GET", "data/core/ups/audiences", params={"limit": 1}) is not None
    hubspot = HubSpotHook()
    assert hubspot.connection.conn_type == "hubspot" and hubspot.api_version == "2026-03"
    assert hubspot.request_json("GET", hubspot.path("crm/properties", "contacts/email"))["name"] == "email"
