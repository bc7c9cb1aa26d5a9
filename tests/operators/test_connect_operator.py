"""EnsureHubSpotConnectionOperator against the AEP and HubSpot sandboxes, for every documented form of
``hubspot_default`` and every ``flow_service_connection`` mode: create once, then find; dry run; skips
and refusals. The access token handed to AEP is refreshed through HubSpot's token endpoint each time."""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3

import pytest
import requests
from sandbox import credentials
from sandbox.connections import STALE_ACCESS_TOKEN, hubspot_connection_form
from sandbox_process import start_sandbox

from audience_sync.clients.aep import HUBSPOT_CONNECTION_SPEC_ID, AepClient
from audience_sync.config import ConfigError, load_sync_config
from audience_sync.errors import ConfigurationError
from audience_sync.hooks.aep import AepHook
from audience_sync.hooks.base import ApiError
from audience_sync.operators.aep import (
    DEFAULT_CONNECTION_NAME,
    EnsureHubSpotConnectionOperator,
    hubspot_flow_credentials,
)

SECRETS = (credentials.HUBSPOT_CLIENT_SECRET, credentials.HUBSPOT_REFRESH_TOKEN, STALE_ACCESS_TOKEN, "sandbox-at-")
OAUTH_FORMS = ("oauth", "oauth-stale", "token+oauth")
TOKEN_PATH = "/oauth/2026-03/token"


class HubSpot:
    """The HubSpot sandbox and the form of ``hubspot_default`` pointing at it."""

    def __init__(self, server, monkeypatch) -> None:
        self.server = server
        self.monkeypatch = monkeypatch
        self.use("oauth")

    def use(self, form: str, **extra) -> None:
        self.monkeypatch.setenv("AIRFLOW_CONN_HUBSPOT_DEFAULT", hubspot_connection_form(self.server.url, form, **extra))

    def token_requests(self) -> list[dict]:
        return [r for r in self.server.admin("GET", "requests")["requests"] if r["path"] == TOKEN_PATH]


@pytest.fixture
def hubspot(aep, tmp_path, monkeypatch):
    """After ``aep`` (which points hubspot_default at a dead port): the HubSpot sandbox, form (b)."""
    folder = tmp_path / "hubspot"
    folder.mkdir()
    server = start_sandbox("hubspot", folder)
    yield HubSpot(server, monkeypatch)
    server.stop()


def run(**kwargs) -> dict:
    return EnsureHubSpotConnectionOperator(task_id="connect", **kwargs).execute({})


def stored_params(aep) -> dict:
    """The auth params of the connection AEP stores (secrets as sha256 fingerprints of what was POSTed)."""
    with sqlite3.connect(aep.server.db) as db:
        return json.loads(db.execute("SELECT body FROM connections").fetchone()[0])["auth"]["params"]


def fingerprint(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


@pytest.mark.parametrize("form", OAUTH_FORMS)
def test_each_oauth_form_creates_once_with_a_fresh_access_token_then_finds(aep, hubspot, form, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    hubspot.use(form)
    first = run()
    assert first["created"] is True and first["connection_id"] and first["etag"] and first["skipped"] is None
    second = run()
    assert second == {**first, "created": False}
    assert len(aep.requests("/flowservice/connections", "POST")) == 1
    assert len(hubspot.token_requests()) == 2  # each run refreshes, whatever the connection holds
    stored = AepClient(AepHook()).get_connection(first["connection_id"])
    assert stored["name"] == DEFAULT_CONNECTION_NAME
    assert stored["connectionSpec"] == {"id": HUBSPOT_CONNECTION_SPEC_ID, "version": "1.0"}
    assert stored["auth"]["specName"] == "Basic Authentication"
    assert stored["auth"]["params"]["clientId"] == credentials.HUBSPOT_CLIENT_ID
    params = stored_params(aep)
    assert params["clientSecret"] == fingerprint(credentials.HUBSPOT_CLIENT_SECRET)
    assert params["refreshToken"] == fingerprint(credentials.HUBSPOT_REFRESH_TOKEN)
    assert params["accessToken"].startswith("sha256:") and params["accessToken"] != fingerprint(STALE_ACCESS_TOKEN)
    logged = capsys.readouterr().out + caplog.text  # task logs go to stdout outside a task runner
    assert "Created AEP HubSpot connection" in logged and "already exists" in logged
    text = logged + json.dumps(first) + json.dumps(second)
    assert not any(secret in text for secret in SECRETS)


@pytest.mark.parametrize("form", OAUTH_FORMS)
def test_flow_credentials_carry_an_access_token_hubspot_accepts(aep, hubspot, form):
    hubspot.use(form)
    params = hubspot_flow_credentials("hubspot_default")
    assert set(params) == {"clientId", "clientSecret", "refreshToken", "accessToken"}
    assert params["accessToken"] != STALE_ACCESS_TOKEN
    url = f"{hubspot.server.url}/crm/objects/2026-03/contacts"
    fresh = requests.get(url, headers={"Authorization": f"Bearer {params['accessToken']}"}, timeout=10)
    stale = requests.get(url, headers={"Authorization": f"Bearer {STALE_ACCESS_TOKEN}"}, timeout=10)
    assert (fresh.status_code, stale.status_code) == (200, 401)


def test_a_private_app_token_alone_skips_the_connection_in_auto_mode(aep, hubspot, capsys):
    hubspot.use("token")
    result = run(flow_service_connection="auto")
    assert result["connection_id"] is None and result["created"] is False and result["dry_run"] is False
    assert "'hubspot_default' holds no HubSpot OAuth app" in result["skipped"]
    assert "Flow Service HubSpot connection skipped: Airflow connection 'hubspot_default'" in capsys.readouterr().out
    assert aep.requests() == [] and hubspot.token_requests() == []


def test_a_private_app_token_alone_fails_when_the_connection_is_required(aep, hubspot):
    hubspot.use("token")
    with pytest.raises(ConfigurationError, match="holds no HubSpot OAuth app .*flow_service_connection is 'required'"):
        run(flow_service_connection="required")
    assert aep.requests() == []


def test_required_with_an_oauth_app_creates_the_connection(aep, hubspot):
    assert run(flow_service_connection="required")["created"] is True


def test_off_skips_without_calling_aep_or_hubspot(aep, hubspot, capsys):
    result = run(flow_service_connection="off", dry_run=True)
    assert result == {"connection_id": None, "etag": None, "created": False, "dry_run": True,
                      "skipped": "flow_service_connection is 'off' in the sync config"}
    assert "connection skipped: flow_service_connection is 'off'" in capsys.readouterr().out
    assert aep.requests() == [] and hubspot.token_requests() == []


@pytest.mark.parametrize(
    ("setting", "form", "outcome"),
    [("off", "oauth", "skipped"), ("'off'", "oauth", "skipped"), ("required", "token", "error"), ("auto", "oauth", "created")],
)
def test_the_mode_comes_from_the_sync_config_by_default(aep, hubspot, tmp_path, monkeypatch, setting, form, outcome):
    """A bare ``off`` is YAML's false: it still means off."""
    config = tmp_path / "sync_config.yaml"
    config.write_text(f"audiences: [Gold Members]\nflow_service_connection: {setting}\n")
    monkeypatch.setenv("AUDIENCE_SYNC_CONFIG", str(config))
    hubspot.use(form)
    if outcome == "error":
        with pytest.raises(ConfigurationError, match="'required'"):
            run()
        return
    result = run()
    assert (result["created"], result["skipped"] is not None) == (outcome == "created", outcome == "skipped")


def test_the_sync_config_defaults_to_auto_and_refuses_other_modes(tmp_path):
    config = tmp_path / "sync_config.yaml"
    config.write_text("audiences: [Gold Members]\n")
    assert load_sync_config(config).flow_service_connection == "auto"
    for bad in ("on", "yes", "always"):
        config.write_text(f"flow_service_connection: {bad}\n")
        with pytest.raises(ConfigError, match="flow_service_connection must be one of auto, required, off"):
            load_sync_config(config)


def test_an_unknown_mode_parameter_is_refused(aep, hubspot):
    with pytest.raises(ConfigurationError, match="must be one of auto, required, off, not 'sometimes'"):
        run(flow_service_connection="sometimes")
    assert aep.requests() == []


def test_dry_run_validates_and_creates_nothing(aep, hubspot):
    result = run(dry_run=True)
    assert result == {"connection_id": None, "etag": None, "created": False, "dry_run": True, "skipped": None}
    assert aep.requests("/connections", "POST") == []
    assert len(aep.requests("/ims/token/v3")) == 1
    assert len(aep.requests(f"/connectionSpecs/{HUBSPOT_CONNECTION_SPEC_ID}")) == 1
    assert len(hubspot.token_requests()) == 1  # the OAuth app's credentials were checked with HubSpot
    assert AepClient(AepHook()).list_connections() == []


def test_dry_run_flag_rendered_as_text_is_honoured(aep, hubspot):
    """Without native rendering ``{{ params.dry_run }}`` arrives as "True" / "False"."""
    assert run(dry_run="True")["created"] is False
    assert aep.requests("/connections", "POST") == []
    assert run(dry_run="False")["created"] is True


def test_a_partial_oauth_app_is_named_and_nothing_is_created(aep, hubspot):
    hubspot.use("token", client_id=credentials.HUBSPOT_CLIENT_ID)
    with pytest.raises(ConfigurationError, match="'hubspot_default' lacks extra\\(s\\) client_secret, refresh_token"):
        run(dry_run=True)
    assert aep.requests() == [] and hubspot.token_requests() == []


def test_a_refused_refresh_fails_without_creating_or_leaking(aep, hubspot):
    hubspot.use("oauth", refresh_token="revoked-refresh-token")
    with pytest.raises(ApiError, match="HubSpot API error 400") as error:
        run()
    assert "revoked-refresh-token" not in str(error.value)
    assert aep.requests("/connections", "POST") == []


def test_an_existing_disabled_connection_is_refused(aep, hubspot):
    created = run()
    with sqlite3.connect(aep.server.db) as db:
        body = json.loads(db.execute("SELECT body FROM connections").fetchone()[0])
        body["state"] = "disabled"
        db.execute("UPDATE connections SET body = ?", (json.dumps(body),))
    with pytest.raises(ConfigurationError, match=f"{created['connection_id']} .* is 'disabled', not enabled"):
        run()
    assert len(aep.requests("/connections", "POST")) == 1


def test_a_differently_named_connection_is_not_reused(aep, hubspot):
    first = run(name="Another HubSpot connection")
    second = run()
    assert first["connection_id"] != second["connection_id"] and second["created"] is True
