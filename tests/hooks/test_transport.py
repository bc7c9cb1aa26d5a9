"""Transport: a host without a scheme means https, and a bearer token never goes over plain http unless the
connection says ``http://``. Over loopback against the sandboxes."""

from __future__ import annotations

import json

import pytest
import requests
from sandbox import credentials
from sandbox.connections import aep_connection

from audience_sync.errors import ConfigurationError
from audience_sync.hooks.aep import AepHook
from audience_sync.hooks.base import BearerAuth, RetriesExhausted, RetrySettings, base_url_for
from audience_sync.hooks.hubspot import HubSpotHook

ONE_TRY = RetrySettings(max_attempts=1)


@pytest.mark.parametrize(
    ("host", "schema", "port", "url"),
    [
        ("api.hubapi.com", None, None, "https://api.hubapi.com"),
        (None, None, None, "https://default.example"),
        ("https://api.hubapi.com/", None, None, "https://api.hubapi.com"),
        ("http://127.0.0.1:8081", None, None, "http://127.0.0.1:8081"),
        ("127.0.0.1", None, 8081, "https://127.0.0.1:8081"),
        ("127.0.0.1", "http", 8081, "http://127.0.0.1:8081"),
        ("HTTPS://platform.adobe.io", None, None, "HTTPS://platform.adobe.io"),
    ],
)
def test_base_url_defaults_to_https(host, schema, port, url):
    assert base_url_for(host, "https://default.example", schema, port) == url


def test_other_schemes_are_a_configuration_error():
    with pytest.raises(ConfigurationError, match="ftp"):
        base_url_for("ftp://files.example", "https://default.example")


def hubspot_conn(monkeypatch, **fields) -> None:
    conn = {"conn_type": "http", "password": credentials.HUBSPOT_PRIVATE_APP_TOKEN, **fields}
    monkeypatch.setenv("AIRFLOW_CONN_HUBSPOT_DEFAULT", json.dumps(conn))


def test_a_host_without_scheme_never_gets_the_token_in_clear(hubspot_sandbox, monkeypatch):
    port = int(hubspot_sandbox.url.rsplit(":", 1)[1])
    hubspot_conn(monkeypatch, host="127.0.0.1", port=port)
    hook = HubSpotHook(retry=ONE_TRY)
    with pytest.raises(RetriesExhausted, match="CONNECTION_ERROR"):
        hook.request_json("GET", hook.path("crm/properties", "contacts/groups"))
    assert hook.base_url == f"https://127.0.0.1:{port}"
    assert hubspot_sandbox.admin("GET", "requests")["requests"] == []  # TLS handshake failed; no request, no token


def test_an_explicit_http_host_is_honoured(hubspot_sandbox, monkeypatch):
    hubspot_conn(monkeypatch, host=hubspot_sandbox.url)
    hook = HubSpotHook(retry=ONE_TRY)
    assert hook.request_json("GET", hook.path("crm/properties", "contacts/groups"))["results"]


def test_bearer_auth_refuses_plain_http_unless_allowed():
    request = requests.Request("GET", "http://api.example/x").prepare()
    with pytest.raises(ConfigurationError, match="plain HTTP"):
        BearerAuth(lambda: "secret-token")(request)
    assert BearerAuth(lambda: "t", allow_http=True)(request).headers["Authorization"] == "Bearer t"
    secure = requests.Request("GET", "https://api.example/x").prepare()
    assert BearerAuth(lambda: "t")(secure).headers["Authorization"] == "Bearer t"


def test_aep_host_and_ims_url_without_scheme_mean_https(aep_sandbox, monkeypatch):
    port = int(aep_sandbox.url.rsplit(":", 1)[1])
    conn = json.loads(aep_connection(aep_sandbox.url, ims_url=f"127.0.0.1:{port}"))
    conn["host"] = "platform.example"
    monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", json.dumps(conn))
    hook = AepHook(retry=ONE_TRY)
    assert hook.settings.ims_url == f"https://127.0.0.1:{port}"
    with pytest.raises(RetriesExhausted, match="CONNECTION_ERROR"):
        hook.access_token()
    assert aep_sandbox.admin("GET", "requests")["requests"] == []  # the client secret never went out in clear
    hook.get_conn()
    assert hook.base_url == "https://platform.example"
