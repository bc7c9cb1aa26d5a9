"""EnsureHubSpotConnectionOperator against the AEP sandbox: create once, then find; dry run; refusals."""

from __future__ import annotations

import json
import logging
import sqlite3

import pytest
from sandbox import credentials
from sandbox.connections import hubspot_connection

from audience_sync.clients.aep import HUBSPOT_CONNECTION_SPEC_ID, AepClient
from audience_sync.hooks.aep import AepHook
from audience_sync.operators.aep import DEFAULT_CONNECTION_NAME, EnsureHubSpotConnectionOperator

HUBSPOT_SECRETS = (credentials.HUBSPOT_CLIENT_SECRET, credentials.HUBSPOT_REFRESH_TOKEN, "sandbox-initial-access-token")


def run(**kwargs) -> dict:
    return EnsureHubSpotConnectionOperator(task_id="connect", **kwargs).execute({})


def test_connect_creates_once_then_finds_the_connection(aep, caplog):
    caplog.set_level(logging.DEBUG)
    first = run()
    assert first["created"] is True and first["connection_id"] and first["etag"]
    second = run()
    assert second == {**first, "created": False}
    assert len(aep.requests("/flowservice/connections", "POST")) == 1
    stored = AepClient(AepHook()).get_connection(first["connection_id"])
    assert stored["name"] == DEFAULT_CONNECTION_NAME
    assert stored["connectionSpec"] == {"id": HUBSPOT_CONNECTION_SPEC_ID, "version": "1.0"}
    assert stored["auth"]["specName"] == "Basic Authentication"
    assert stored["auth"]["params"]["clientId"] == credentials.HUBSPOT_CLIENT_ID
    with sqlite3.connect(aep.server.db) as db:  # the sandbox keeps fingerprints: the POST carried the real values
        body = json.loads(db.execute("SELECT body FROM connections").fetchone()[0])
    assert body["auth"]["params"]["clientSecret"].startswith("sha256:")
    text = caplog.text + json.dumps(first) + json.dumps(second)
    assert not any(secret in text for secret in HUBSPOT_SECRETS)


def test_dry_run_validates_and_creates_nothing(aep):
    result = run(dry_run=True)
    assert result == {"connection_id": None, "etag": None, "created": False, "dry_run": True}
    assert aep.requests("/connections", "POST") == []
    assert len(aep.requests("/ims/token/v3")) == 1
    assert len(aep.requests(f"/connectionSpecs/{HUBSPOT_CONNECTION_SPEC_ID}")) == 1
    assert AepClient(AepHook()).list_connections() == []


def test_dry_run_flag_rendered_as_text_is_honoured(aep):
    """Without native rendering ``{{ params.dry_run }}`` arrives as "True" / "False"."""
    assert run(dry_run="True")["created"] is False
    assert aep.requests("/connections", "POST") == []
    assert run(dry_run="False")["created"] is True


def test_missing_hubspot_extras_are_named_and_nothing_is_created(aep, monkeypatch):
    conn = json.loads(hubspot_connection("http://127.0.0.1:9"))
    del conn["extra"]["refresh_token"], conn["extra"]["client_secret"]
    monkeypatch.setenv("AIRFLOW_CONN_HUBSPOT_DEFAULT", json.dumps(conn))
    with pytest.raises(ValueError, match="'hubspot_default' lacks extra\\(s\\) client_secret, refresh_token"):
        run(dry_run=True)
    assert aep.requests("/connections", "POST") == []


def test_an_existing_disabled_connection_is_refused(aep):
    created = run()
    with sqlite3.connect(aep.server.db) as db:
        body = json.loads(db.execute("SELECT body FROM connections").fetchone()[0])
        body["state"] = "disabled"
        db.execute("UPDATE connections SET body = ?", (json.dumps(body),))
    with pytest.raises(RuntimeError, match=f"{created['connection_id']} .* is 'disabled', not enabled"):
        run()
    assert len(aep.requests("/connections", "POST")) == 1


def test_a_differently_named_connection_is_not_reused(aep):
    first = run(name="Another HubSpot connection")
    second = run()
    assert first["connection_id"] != second["connection_id"] and second["created"] is True
