"""AepHook and AepClient over HTTP against the AEP sandbox: IMS token reuse and renewal, gateway headers,
retries, paging, error bodies, and no secret in any message or log line."""

from __future__ import annotations

import logging
import sqlite3
import time

import pytest
import requests
from sandbox.connections import aep_connection
from sandbox import credentials

from audience_sync.clients.aep import AepClient, UnknownAudienceError
from audience_sync.hooks.aep import AepHook
from audience_sync.hooks.base import ApiError, RetriesExhausted, RetrySettings

FAST_RETRY = RetrySettings(max_attempts=14, base_delay=0.02, max_delay=0.2)


def test_one_ims_call_serves_many_platform_calls(aep):
    hook = AepHook()
    client = AepClient(hook)
    for _ in range(5):
        assert len(client.list_audiences()) == 3
    client.list_connections()
    assert hook.token_requests == 1
    assert len(aep.requests("/ims/token/v3")) == 1
    assert len(aep.requests("/data/")) == 6


def test_ims_url_may_be_the_full_token_url(aep, monkeypatch):
    token_url = f"{aep.server.url}/ims/token/v3"
    monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", aep_connection(aep.server.url, ims_url=token_url))
    assert len(AepClient(AepHook()).list_audiences()) == 3
    assert [r["status"] for r in aep.requests("/ims/token/v3")] == [200]


def test_token_is_renewed_before_it_expires(aep):
    aep.server.set_faults(token_ttl_seconds=2)
    hook = AepHook()
    client = AepClient(hook)
    client.list_audiences()
    time.sleep(2.1)
    client.list_audiences()  # renewed at 90 % of the lifetime, before the gateway would refuse it
    assert hook.token_requests == 2
    assert [r["status"] for r in aep.requests("/data/")] == [200, 200]


def test_unexpected_401_renews_the_token_once(aep):
    hook = AepHook()
    client = AepClient(hook)
    client.list_audiences()
    with sqlite3.connect(aep.server.db) as db:  # IMS revoked every token behind the hook's back
        db.execute("DELETE FROM tokens")
    assert len(client.list_audiences()) == 3
    assert hook.token_requests == 2
    assert [r["status"] for r in aep.requests("/audiences")] == [200, 401, 200]


@pytest.mark.parametrize(
    "missing, status, words",
    [
        ("x-api-key", 403, "Api Key is required"),
        ("x-gw-ims-org-id", 400, "x-gw-ims-org-id"),
        ("x-sandbox-name", 400, "x-sandbox-name"),
    ],
)
def test_gateway_refuses_a_request_without_a_header(aep, missing, status, words):
    hook = AepHook()
    session = hook.get_conn()
    url = f"{hook.base_url}/data/core/ups/audiences"
    assert session.get(url, timeout=10).status_code == 200
    prepared = session.prepare_request(requests.Request("GET", url))
    del prepared.headers[missing]
    response = session.send(prepared, timeout=10)
    assert response.status_code == status
    error = hook.error_from_response(response)
    assert error.status == status and words in error.message


def test_hook_sends_the_gateway_headers_and_no_extras(aep):
    session = AepHook().get_conn()
    assert session.headers["x-api-key"] == credentials.AEP_CLIENT_ID
    assert session.headers["x-gw-ims-org-id"] == credentials.AEP_ORG_ID
    assert session.headers["x-sandbox-name"] == credentials.AEP_SANDBOX_NAME
    leaked = {"ims_url", "export_dataset_id", "merge_policy_id", "org_id", "sandbox_name"} & {
        name.lower() for name in session.headers
    }
    assert not leaked


def test_a_5xx_burst_is_retried_through(aep):
    aep.server.set_faults(error_rate=0.5)
    client = AepClient(AepHook(retry=FAST_RETRY))
    for _ in range(6):
        assert [a["id"] for a in client.list_audiences(page_size=2)] == [a["id"] for a in aep.audiences]
    assert [r["status"] for r in aep.requests("/audiences")] == [200] * 12
    assert aep.server.admin("GET", "stats")["stats"]["injected_5xx"] > 0  # injected answers are not logged


def test_ims_token_request_is_retried(aep, caplog):
    aep.server.set_faults(error_rate=0.5)
    for _ in range(40):  # each fresh hook asks IMS once; stop at the first retried answer
        hook = AepHook(retry=FAST_RETRY)
        assert hook.access_token().startswith("eyJ") and hook.token_requests == 1
        if "AEP IMS token request answered 50" in caplog.text:
            break
    assert "AEP IMS token request answered 50" in caplog.text


def test_forced_429_is_waited_out(aep):
    aep.server.set_faults(force_429=2)
    client = AepClient(AepHook(retry=FAST_RETRY))
    assert len(client.list_audiences()) == 3
    assert [r["status"] for r in aep.requests("/audiences")] == [429, 429, 200]


def test_audience_paging_and_resolution(aep):
    client = AepClient(AepHook())
    assert [a["id"] for a in client.list_audiences(page_size=1)] == [a["id"] for a in aep.audiences]
    assert len(aep.requests("/audiences")) == 3
    first, second = aep.audiences[0], aep.audiences[1]
    resolved = client.resolve_audiences([first["name"], second["id"], first["id"]])
    assert resolved == [{**first, "namespace": "ups"}, {**second, "namespace": "ups"}]  # segment-built: ups
    with pytest.raises(UnknownAudienceError) as error:
        client.resolve_audiences(["Gold Members", "No Such Audience"])
    assert "'No Such Audience'" in str(error.value)
    for audience in aep.audiences:
        assert repr(audience["name"]) in str(error.value)


def test_platform_error_carries_title_detail_and_request_id(aep):
    client = AepClient(AepHook())
    with pytest.raises(ApiError) as error:
        client.get_export_job(999999)
    assert error.value.status == 404
    assert error.value.category == "Not Found" and "999999" in error.value.message
    assert error.value.request_id


def test_wrong_client_secret_fails_without_echoing_it(aep, monkeypatch, caplog):
    wrong = "wrong-secret-value-123"
    monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", aep_connection(aep.server.url).replace(
        credentials.AEP_CLIENT_SECRET, wrong))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ApiError) as error:
        AepClient(AepHook()).list_audiences()
    assert error.value.status == 401 and "IMS" in str(error.value) and "invalid_client" in str(error.value)
    assert wrong not in str(error.value) + caplog.text


def test_no_secret_in_logs_or_errors(aep, caplog):
    caplog.set_level(logging.DEBUG)
    hook = AepHook(retry=RetrySettings(max_attempts=2, base_delay=0.01))
    client = AepClient(hook)
    client.list_audiences()
    aep.server.set_faults(error_rate=1.0)
    with pytest.raises(RetriesExhausted) as exhausted:
        client.list_audiences()
    aep.server.set_faults(error_rate=0.0)
    with pytest.raises(ApiError) as not_found:
        client.get_connection("nope")
    text = caplog.text + str(exhausted.value) + str(not_found.value)
    assert "retry 1/1" in caplog.text and "AEP API error 404" in text and "AEP API error 50" in text
    for secret in (credentials.AEP_CLIENT_SECRET, hook.access_token()):
        assert secret not in text
