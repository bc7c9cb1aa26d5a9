"""Auth, API versions, daily budget and secrecy of the HubSpot hook and client, over HTTP."""

from __future__ import annotations

import logging

import pytest
from audience_sync.clients.hubspot import DailyBudgetExceeded
from audience_sync.hooks.base import ApiError
from audience_sync.operators.hubspot import UpsertContactsOperator
from audience_sync.upsert import upsert_file
from sandbox import credentials

SECRETS = (
    credentials.HUBSPOT_PRIVATE_APP_TOKEN,
    credentials.HUBSPOT_CLIENT_SECRET,
    credentials.HUBSPOT_REFRESH_TOKEN,
    "sandbox-at-",  # every OAuth access token the sandbox issues
)


@pytest.mark.parametrize(
    ("version", "objects", "properties", "usage"),
    [
        ("v3", "/crm/v3/objects/contacts", "/crm/v3/properties/contacts", "/account-info/v3/api-usage/daily/private-apps"),
        (
            "2026-03",
            "/crm/objects/2026-03/contacts",
            "/crm/properties/2026-03/contacts",
            "/account-info/2026-03/api-usage/daily/private-apps",
        ),
    ],
)
def test_every_call_uses_the_configured_version(hs, tmp_path, version, objects, properties, usage):
    client = hs.connect(api_version=version)
    hs.audience_property(client, "aep_vip")
    assert client.get_property("aep_vip")["type"] == "enumeration"
    assert client.get_property("aep_missing") is None
    summary = upsert_file(client, hs.chunk(5, aep_vip=["realized"] * 5), tmp_path / "out")
    assert summary["created"] == 5
    lookup = client.lookup_emails(["Person00002@example.com", "nobody@example.com"])
    assert (lookup.primaries, lookup.not_found) == ({"person00002@example.com"}, {"nobody@example.com"})
    assert client.check_daily_budget(10)["usageLimit"] > 10
    paths = {r["path"] for r in hs.requests()}
    assert paths >= {
        f"{objects}/batch/upsert",
        f"{objects}/batch/read",
        f"{properties}/groups",
        f"{properties}/aep_missing",
        properties,
        usage,
    }
    assert all(p.startswith((objects, properties, usage)) for p in paths)


def test_oauth_token_expiring_mid_run_is_refreshed(hs, tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    hs.sandbox.set_faults(token_ttl_seconds=1, latency_ms=60)
    client = hs.connect(oauth=True)
    summary = upsert_file(client, hs.chunk(400), tmp_path / "out", batch_size=10, threads=2)
    assert (summary["created"], summary["rejected"]) == (400, 0)
    refreshes = hs.requests("/oauth/2026-03/token", method="POST")
    assert len(refreshes) >= 2  # the first token and at least one renewal before it ran out
    assert not hs.requests("/oauth/v1/token")
    assert hs.stats().get("status_401", 0) <= 2  # renewed ahead of expiry, not after failures
    assert_no_secrets(caplog, capfd)


def test_an_expired_token_gets_one_refresh_on_401(hs):
    client = hs.connect(oauth=True)
    client.list_groups()
    assert len(hs.requests("/token")) == 1
    client.hook._access_token = "sandbox-at-expired"  # as if the clock had lied: the sandbox answers 401
    client.hook._expires_at = float("inf")
    assert client.list_groups()
    assert len(hs.requests("/token")) == 2 and len(hs.requests("/groups")) == 3

    hs.sandbox.set_faults(token_ttl_seconds=0)  # every new token is born expired: one renewal, then give up
    client.hook._access_token, client.hook._expires_at = "sandbox-at-expired", float("inf")
    with pytest.raises(ApiError) as raised:
        client.list_groups()
    assert raised.value.status == 401 and raised.value.category == "EXPIRED_AUTHENTICATION"
    assert len(hs.requests("/groups")) == 5  # the call and its one retry after renewal


def test_daily_budget_too_low_fails_before_any_write(hs, tmp_path):
    hs.server(daily_limit=3)
    path = hs.chunk(250)
    operator = UpsertContactsOperator(task_id="upsert", input_path=path, output_dir=str(tmp_path / "out"))
    with pytest.raises(DailyBudgetExceeded, match=r"2 of 3 calls left today.*needs about 3. Nothing was written"):
        operator.execute(context={})
    assert not hs.requests("/batch/upsert")
    assert hs.contacts() == []


def test_the_budget_counts_the_read_before_each_update_batch(hs, tmp_path):
    hs.server(daily_limit=4)
    path = hs.chunk(200, _write=["upsert"] * 150 + ["update"] * 50)  # 2 upsert batches, 1 update batch and its read
    operator = UpsertContactsOperator(task_id="upsert", input_path=path, output_dir=str(tmp_path / "out"))
    with pytest.raises(DailyBudgetExceeded, match=r"3 of 4 calls left today.*needs about 4. Nothing was written"):
        operator.execute(context={})
    assert not hs.requests("/batch/upsert") and not hs.requests("/batch/read")


def test_upsert_operator_returns_counts_and_paths(hs, tmp_path):
    operator = UpsertContactsOperator(
        task_id="upsert", input_path=hs.chunk(120), output_dir=str(tmp_path / "out"), batch_size=50, threads=2, rate_share=0.5
    )
    summary = operator.execute(context={})
    assert (summary["created"], summary["requests"]) == (120, 3)
    assert summary["results_path"].endswith("chunk-0000.results.parquet")
    assert summary["rejects_path"].endswith("chunk-0000.rejects.parquet")


def test_errors_and_logs_carry_no_token_and_no_email(hs, tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    client = hs.connect()
    hs.server(interval_ms=200)  # a 429 waits out one window
    hs.sandbox.set_faults(force_429=2)
    with pytest.raises(ApiError) as raised:
        client.batch_upsert([("someone@example.com", {"no_such_property": "x"})] * 2)  # duplicate ids: a 400
    assert raised.value.status == 400
    assert "someone@example.com" not in str(raised.value)
    upsert_file(client, hs.chunk(20, email=[f"bad email {i}" for i in range(20)]), tmp_path / "out")
    assert_no_secrets(caplog, capfd)
    assert "@example.com" not in caplog.text


def test_a_daily_limit_429_is_not_waited_out(hs):
    client = hs.connect()
    hs.server(daily_limit=1)
    client.list_groups()
    with pytest.raises(ApiError) as raised:
        client.list_groups()
    assert raised.value.status == 429
    assert len(hs.requests("/groups")) == 2  # no retry against a limit that resets at midnight


def assert_no_secrets(caplog, capfd) -> None:
    out, err = capfd.readouterr()
    for text in (caplog.text, out, err):
        for secret in SECRETS:
            assert secret not in text
