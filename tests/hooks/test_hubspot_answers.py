"""HubSpot answers: mapping them back to inputs (shapes the sandbox does not produce), and every answer shape the
sandbox serves on demand (423, capped Retry-After, HTML pages, cut and malformed bodies, scope refusals) through the
hook's one retry loop over HTTP."""

from __future__ import annotations

import logging
import time

import pytest
from audience_sync.clients.hubspot import HubSpotClient, attribute_errors, quoted_values, read_upsert_answer
from audience_sync.errors import TransientError
from audience_sync.hooks import base
from audience_sync.hooks.base import ApiError, RetriesExhausted, RetrySettings
from audience_sync.hooks.hubspot import HubSpotHook

INPUTS = [
    {"idProperty": "email", "id": "a@example.com", "properties": {"city": "Paris"}, "objectWriteTraceId": "t0"},
    {"idProperty": "email", "id": "B@example.com", "properties": {"city": "Oslo", "shoe": "9"}, "objectWriteTraceId": "t1"},
    {"idProperty": "email", "id": "c@example.com", "properties": {"city": "Rome"}, "objectWriteTraceId": "t2"},
]


def test_errors_name_inputs_by_ids_when_there_is_no_trace_id():
    entries = [{"category": "OBJECT_NOT_FOUND", "message": "gone", "context": {"ids": ["b@example.com"]}}]
    blamed = attribute_errors(entries, INPUTS)
    assert list(blamed) == [1]
    assert (blamed[1].category, blamed[1].reason, blamed[1].field) == ("OBJECT_NOT_FOUND", "gone", None)


def test_an_unknown_property_blames_only_the_inputs_that_carry_it():
    entries = [{"message": 'Property "shoe" does not exist', "code": "PROPERTY_DOESNT_EXIST", "context": {"propertyName": ["shoe"]}}]
    blamed = attribute_errors(entries, INPUTS)
    assert list(blamed) == [1] and blamed[1].field == "shoe" and blamed[1].reason.startswith("PROPERTY_DOESNT_EXIST: ")


def test_a_quoted_value_is_only_a_suspect():
    details = [{"message": "Oslo was not one of the allowed options", "context": {"propertyName": ["city"]}}]
    assert quoted_values(details, INPUTS) == {1}
    assert attribute_errors(details, INPUTS) == {}  # no code that condemns the property itself


def test_results_without_trace_ids_match_by_email_or_by_count():
    body = {
        "status": "COMPLETE",
        "results": [
            {"id": "11", "new": True, "properties": {"email": "b@example.com"}},
            {"id": "12", "new": False, "properties": {}},
        ],
        "errors": [{"category": "VALIDATION_ERROR", "message": "bad", "context": {"objectWriteTraceId": ["t0"]}}],
    }
    answer = read_upsert_answer(body, INPUTS, "email")
    assert answer.written[1].hubspot_id == "11" and answer.written[1].new
    assert answer.written[2].hubspot_id is None and not answer.written[2].new  # the one result left, id unknown
    assert list(answer.rejected) == [0]


def test_an_answer_that_accounts_for_nothing_is_never_a_silent_drop():
    answer = read_upsert_answer({"status": "COMPLETE", "results": []}, INPUTS, "email")
    assert answer.written == {} and {r.category for r in answer.rejected.values()} == {"UNCONFIRMED"}
    assert sorted(answer.rejected) == [0, 1, 2]


# --- answer shapes served by the sandbox (``answers`` fault), through the hook's one retry loop ----------------------

FAST = RetrySettings(max_attempts=4, base_delay=0.01, max_delay=0.05, max_throttled_wait=30)
GROUPS = "/properties/2026-03/contacts/groups"


def fast_client(hs, **extra) -> HubSpotClient:
    hs.connect(**extra)
    return HubSpotClient(HubSpotHook(retry=FAST))


def statuses(hs, suffix):
    return [r["status"] for r in hs.requests(suffix)]


def gaps(hs, suffix):
    times = [r["time"] for r in hs.requests(suffix)]
    return [b - a for a, b in zip(times, times[1:])]


def test_423_locked_waits_at_least_two_seconds_and_is_never_permanent(hs):
    client = fast_client(hs)
    hs.sandbox.set_faults(answers=["423"])
    assert client.list_groups() is not None
    assert statuses(hs, GROUPS) == [423, 200]
    assert gaps(hs, GROUPS)[0] >= 2.0  # "wait at least 2 seconds", though backoff alone would retry at once


def test_423_with_retry_after_waits_what_it_says(hs):
    client = fast_client(hs)
    hs.sandbox.set_faults(answers=["423 retry-after=3"])
    client.list_groups()
    assert statuses(hs, GROUPS) == [423, 200] and gaps(hs, GROUPS)[0] >= 3.0


def test_a_huge_retry_after_is_capped_and_said_in_the_log(hs, monkeypatch, caplog):
    monkeypatch.setattr(base, "MAX_RETRY_AFTER_S", 0.5)  # the cap (60 s shipped) made short for the test
    client = fast_client(hs)
    hs.sandbox.set_faults(answers=["503 retry-after=86400"])
    started = time.monotonic()
    client.list_groups()
    assert time.monotonic() - started < 10
    assert statuses(hs, GROUPS) == [503, 200] and gaps(hs, GROUPS)[0] >= 0.5
    assert "HubSpot answered 503 with Retry-After 86400 s; waiting" in caplog.text and "(the cap)" in caplog.text


@pytest.mark.parametrize("shape", ["html 502", "html 503", "html 200", "truncated-json", "cut-body"])
def test_an_unreadable_answer_is_retried(hs, shape, caplog):
    client = fast_client(hs)
    hs.sandbox.set_faults(answers=[shape])
    assert isinstance(client.list_groups(), list)
    assert len(hs.requests(GROUPS)) == 2
    assert "retry 1/3" in caplog.text


@pytest.mark.parametrize("shape", ["html 503", "html 200", "truncated-json", "cut-body"])
def test_an_answer_that_stays_unreadable_is_transient_not_a_value_error(hs, shape):
    client = fast_client(hs)
    hs.sandbox.set_faults(answers=[shape] * FAST.max_attempts)
    with pytest.raises(RetriesExhausted) as raised:
        client.list_groups()
    assert isinstance(raised.value, TransientError)
    assert "<html" not in str(raised.value)
    assert len(hs.requests(GROUPS)) == FAST.max_attempts


@pytest.mark.parametrize("shape", ["truncated-json", "cut-body"])
def test_a_batch_upsert_whose_answer_was_lost_is_resent_and_writes_each_contact_once(hs, shape):
    client = fast_client(hs)
    records = [(f"p{i}@example.com", {"firstname": f"F{i}"}) for i in range(5)]
    hs.sandbox.set_faults(answers=[shape])
    answer = client.batch_upsert(records)
    assert sorted(answer.written) == list(range(5)) and not answer.rejected
    assert statuses(hs, "/batch/upsert") == [200, 200]  # carried out, answer damaged, resent
    assert sorted(c["properties"]["email"] for c in hs.contacts()) == sorted(e for e, _ in records)


def test_a_create_whose_answer_was_lost_is_not_resent(hs):
    client = fast_client(hs)
    hs.sandbox.set_faults(answers=["cut-body"])
    with pytest.raises(RetriesExhausted, match="not resent") as raised:
        client.create_group("test_group", "Test group")
    assert isinstance(raised.value, TransientError)
    assert len(hs.requests(GROUPS, method="POST")) == 1  # the group exists; a second POST would answer 409
    assert "test_group" in {g["name"] for g in client.list_groups()}


@pytest.mark.parametrize("shape", ["503", "423", "html 503"])
def test_a_create_refused_before_acting_is_resent(hs, shape):
    client = fast_client(hs)
    hs.sandbox.set_faults(answers=[shape])
    client.create_group("test_group", "Test group")
    assert len(hs.requests(GROUPS, method="POST")) == 2


def test_a_429_storm_is_bounded_by_total_wait(hs):
    hs.connect()
    hook = HubSpotHook(retry=RetrySettings(max_attempts=2, base_delay=0.01, max_delay=0.05, max_throttled_wait=1.5))
    hs.server(interval_ms=200)
    hs.sandbox.set_faults(force_429=100)
    with pytest.raises(RetriesExhausted) as raised:
        HubSpotClient(hook).list_groups()
    assert raised.value.status == 429
    assert len(hs.requests(GROUPS)) > 2  # not bounded by max_attempts, but by the wait


@pytest.mark.parametrize("status", [401, 403])
def test_usage_endpoint_refused_for_scope_is_skipped_once_in_the_log(hs, status, caplog):
    hs.server(usage_status=status)
    hook = fast_client(hs).hook
    endpoint = hook.path("account-info", "api-usage/daily/private-apps")
    assert hook.optional_json(endpoint, "the daily API budget pre-check") is None
    assert hook.optional_json(endpoint, "the daily API budget pre-check") is None
    assert caplog.text.count("HubSpot refused the daily API budget pre-check") == 1
    assert f"({status} MISSING_SCOPES)" in caplog.text
    with pytest.raises(ApiError) as raised:  # a plain call still raises: only optional calls are skipped
        hook.request_json("GET", endpoint)
    assert raised.value.status == status and raised.value.category == "MISSING_SCOPES"
    hs.server(usage_status=None)
    assert hook.optional_json(endpoint, "the daily API budget pre-check")


def test_oauth_refresh_goes_through_the_retry_loop(hs, caplog):
    caplog.set_level(logging.INFO)
    hs.sandbox.set_faults(error_rate=0.5)
    for _ in range(40):  # each fresh hook refreshes once; stop at the first retried refresh
        hs.connect(oauth=True)
        hook = HubSpotHook(retry=RetrySettings(max_attempts=14, base_delay=0.01, max_delay=0.05))
        assert hook.access_token().startswith("sandbox-at-")
        if "HubSpot OAuth token refresh answered 50" in caplog.text:
            break
    assert "HubSpot OAuth token refresh answered 50" in caplog.text


def test_a_refresh_inside_a_call_takes_no_rate_limit_slot_of_its_own(hs):
    hs.sandbox.set_faults(token_ttl_seconds=1)
    hs.connect(oauth=True)
    hook = HubSpotHook(retry=FAST)
    for _ in range(3):  # each call finds its token expired and refreshes it inside its own bearer auth
        hook.request_json("GET", hook.path("crm/properties", "contacts/groups"))
        time.sleep(1.0)
    assert len(hs.requests("/oauth/2026-03/token")) == 3
    assert len(hook.limiter._slots) == 3  # one slot per API call, none for the token calls, none released early
    assert all(slot.done is not None for slot in hook.limiter._slots)
