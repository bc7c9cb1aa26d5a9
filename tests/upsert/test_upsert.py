"""Batch upserts against the HubSpot sandbox over HTTP: rejects, validation rules, rate limits, 429 storms."""

from __future__ import annotations

import pandas as pd
import pytest
from audience_sync.errors import ConfigurationError
from audience_sync.upsert import REJECT_COLUMNS, RESULT_COLUMNS, upsert_file


def three_bad_of_100(hs, client) -> str:
    """100 contacts: one invalid email, one invalid audience option, one value for a property that does not exist."""
    hs.audience_property(client, "aep_gold")
    gold = ["realized"] * 100
    gold[40] = "platinum"  # not an option
    extra = [None] * 100
    extra[70] = "x"  # the only row carrying an unknown property
    path = hs.chunk(100, aep_gold=gold, no_such_property=extra)
    frame = pd.read_parquet(path)
    frame.loc[10, "email"] = "not-an-email"
    frame.to_parquet(path, index=False)
    return path


def check_three_rejects(hs, summary: dict) -> None:
    assert (summary["records"], summary["created"], summary["updated"], summary["rejected"]) == (100, 97, 0, 3)
    rejects = pd.read_parquet(summary["rejects_path"])
    assert list(rejects.columns) == REJECT_COLUMNS
    by_email = rejects.set_index("email")
    assert set(by_email.index) == {"not-an-email", "person00040@example.com", "person00070@example.com"}
    assert set(rejects["stage"]) == {"upsert"}
    assert (by_email["record_id"] == by_email.index).all()
    assert by_email.loc["not-an-email", "field"] == "email"
    assert "INVALID_EMAIL" in by_email.loc["not-an-email", "reason"]
    assert by_email.loc["person00040@example.com", "field"] == "aep_gold"
    assert "INVALID_OPTION" in by_email.loc["person00040@example.com", "reason"]
    assert "platinum" in by_email.loc["person00040@example.com", "reason"]
    assert by_email.loc["person00070@example.com", "field"] == "no_such_property"
    assert "PROPERTY_DOESNT_EXIST" in by_email.loc["person00070@example.com", "reason"]
    assert set(rejects["category"]) == {"VALIDATION_ERROR"}
    results = pd.read_parquet(summary["results_path"])
    assert list(results.columns) == RESULT_COLUMNS
    assert len(results) == 97 and results["new"].all() and results["hubspot_id"].notna().all()
    stored = {c["properties"]["email"]: c for c in hs.contacts()}
    assert len(stored) == 97
    assert stored["person00001@example.com"]["properties"]["aep_gold"] == "realized"
    assert "_source_row" not in stored["person00001@example.com"]["properties"]
    assert set(results["hubspot_id"]) == {c["id"] for c in stored.values()}


def test_three_invalid_records_among_100_take_one_request_with_trace_ids(hs, tmp_path):
    client = hs.connect()
    path = three_bad_of_100(hs, client)
    summary = upsert_file(client, path, tmp_path / "out")
    check_three_rejects(hs, summary)
    assert len(hs.requests("/batch/upsert")) == 1
    assert summary["requests"] == 1


def test_a_whole_batch_400_is_isolated_without_halving(hs, tmp_path):
    """Without trace ids HubSpot refuses the whole batch: the error's property and refused values name the culprits."""
    client = hs.connect(trace_ids=False)
    path = three_bad_of_100(hs, client)
    summary = upsert_file(client, path, tmp_path / "out")
    check_three_rejects(hs, summary)
    # the refused batch names all three (the unknown property's carrier, the refused option and email, each the
    # subject of its message); the 97 good ones are written once in one call
    upserts = hs.requests("/batch/upsert")
    assert sorted(r["status"] for r in upserts) == [200, 400]
    assert summary["requests"] == 2


def test_validation_rule_of_2026_09_is_a_reject_not_a_failure(hs, tmp_path):
    hs.server(validation_rules=["lastname"])
    lastnames = [f"Last{i}" for i in range(20)]
    lastnames[5] = None  # not sent, and not on the stored contact either
    path = hs.chunk(20, lastname=lastnames)

    summary = upsert_file(hs.connect(api_version="2026-03"), path, tmp_path / "old")
    assert summary["rejected"] == 0  # the rules apply from 2026-09 only

    hs.sandbox.reset()
    hs.server(validation_rules=["lastname"])
    summary = upsert_file(hs.connect(api_version="2026-09"), path, tmp_path / "new")
    assert (summary["created"], summary["rejected"]) == (19, 1)
    reject = pd.read_parquet(summary["rejects_path"]).iloc[0]
    assert (reject["email"], reject["field"], reject["category"]) == ("person00005@example.com", "lastname", "VALIDATION_ERROR")
    assert "validation rule" in reject["reason"]
    assert all("/crm/objects/2026-09/contacts/batch/upsert" == r["path"] for r in hs.requests("/batch/upsert"))


def test_local_rejects_and_updates(hs, tmp_path):
    """Rows without an email or repeating one are rejected before sending; a second run updates, nothing new."""
    emails = [f"p{i}@example.com" for i in range(10)]
    emails[3], emails[7] = None, "P2@example.com"
    path = hs.chunk(10, email=emails)
    client = hs.connect()
    first = upsert_file(client, path, tmp_path / "a")
    assert (first["sent"], first["created"], first["rejected"]) == (8, 8, 2)
    rejects = pd.read_parquet(first["rejects_path"]).set_index("category")
    assert rejects.loc["MISSING_EMAIL", "field"] == "email"
    assert rejects.loc["DUPLICATE_EMAIL", "email"] == "P2@example.com"
    second = upsert_file(client, path, tmp_path / "b")
    assert (second["created"], second["updated"]) == (0, 8)
    assert len(hs.contacts()) == 8


def test_limiter_sized_from_headers_stays_under_a_low_limit_near_full_speed(hs, tmp_path, window_peak):
    """The sandbox allows 20 calls per second; the client learns it from the first answer's headers."""
    hs.server(rate_limit=20, interval_ms=1000)
    path = hs.chunk(600)
    client = hs.connect()
    summary = upsert_file(client, path, tmp_path / "out", batch_size=10, threads=4)
    assert (summary["created"], summary["rejected"]) == (600, 0)
    assert hs.stats().get("status_429", 0) == 0
    times = [r["time"] for r in hs.requests("/batch/upsert")]
    assert len(times) == 60
    assert window_peak(times, 1.0) <= 20
    rate = (len(times) - 1) / (max(times) - min(times))
    assert rate >= 0.8 * 20, f"{rate:.1f} calls/s under a 20/s limit"
    assert client.hook.limiter.limit == 20 and client.hook.limiter.interval_s == 1.0


def test_a_429_storm_delays_the_sync_but_never_fails_it(hs, tmp_path):
    hs.server(interval_ms=300)
    hs.sandbox.set_faults(force_429=12)
    path = hs.chunk(300)
    summary = upsert_file(hs.connect(), path, tmp_path / "out", batch_size=50, threads=3)
    assert (summary["created"], summary["rejected"]) == (300, 0)
    assert hs.stats()["status_429"] == 12
    assert len(hs.contacts()) == 300
    assert sum(r["status"] == 200 for r in hs.requests("/batch/upsert")) == 6  # every batch written once


@pytest.mark.parametrize("size", [0, 101])
def test_bad_batch_size_is_refused_before_any_request(hs, tmp_path, size):
    with pytest.raises(ConfigurationError, match="batch_size must be between 1 and 100"):
        upsert_file(hs.connect(), hs.chunk(1), tmp_path, batch_size=size)
    assert hs.requests("/batch/upsert") == []


def test_server_errors_and_dropped_connections_are_retried(hs, tmp_path, caplog):
    hs.sandbox.set_faults(error_rate=0.2, drop_rate=0.1)
    caplog.set_level("INFO", logger="audience_sync.upsert")
    summary = upsert_file(hs.connect(), hs.chunk(400), tmp_path / "out", batch_size=20, threads=2, progress_every_s=0.05)
    hs.sandbox.set_faults(error_rate=0, drop_rate=0)
    assert (summary["created"] + summary["updated"], summary["rejected"]) == (400, 0)
    assert len(hs.contacts()) == 400
    stats = hs.stats()
    assert stats.get("injected_5xx", 0) + stats.get("dropped", 0) > 0
    progress = [r.getMessage() for r in caplog.records if "records (" in r.getMessage()]
    assert progress and all("rec/s" in line and "ETA" in line and "@" not in line for line in progress)
    assert progress[-1].startswith("upsert chunk-0000: 400/400 records (100%)")


def test_a_task_starting_right_after_another_does_not_burst_into_429s(hs):
    """Each upsert task has its own limiter; the second learns from the server how full the window is."""
    hs.server(rate_limit=20, interval_ms=2000)
    for _ in range(2):  # two tasks one after the other, each with a fresh hook and limiter
        client = hs.connect()
        for _ in range(19):
            client.list_groups()
    assert hs.stats().get("status_429", 0) == 0


@pytest.mark.parametrize(("mode", "most_requests"), [("400", 2), ("400_silent", 27)])  # plain halving took 35
def test_email_upserts_refused_whole_despite_trace_ids_are_isolated(hs, tmp_path, mode, most_requests):
    """"Partial upserts are not supported when using email as the idProperty": even with trace ids a bad input
    may fail the whole batch. A refusal naming the bad values costs one extra request; one naming nothing
    is halved down to the bad records."""
    client = hs.connect()
    path = three_bad_of_100(hs, client)
    hs.server(upsert_errors=mode)
    summary = upsert_file(client, path, tmp_path / "out")
    if mode == "400_silent":  # nothing names the field: the reason is HubSpot's whole-batch message
        rejects = pd.read_parquet(summary["rejects_path"])
        assert set(rejects["email"]) == {"not-an-email", "person00040@example.com", "person00070@example.com"}
        assert (summary["created"], summary["rejected"]) == (97, 3)
    else:
        check_three_rejects(hs, summary)
    upserts = hs.requests("/batch/upsert")
    assert len(upserts) == summary["requests"] <= most_requests
    assert sum(r["status"] == 200 for r in upserts) >= 1 and len(hs.contacts()) == 97


def test_a_refusal_that_holds_for_every_record_is_not_sent_again(hs, tmp_path):
    """An option the property lacks, or a property that does not exist, fails every batch carrying it: after
    HubSpot's first whole-batch 400 names it, later records holding it are rejected without a request. A bad
    email is that record's own: it still costs its batch a refused request."""
    client = hs.connect()
    hs.audience_property(client, "aep_gold")
    gold, extra = ["realized"] * 500, [None] * 500
    for batch in range(5):
        gold[batch * 100 + 40] = "platinum"
        extra[batch * 100 + 70] = "x"
    path = hs.chunk(500, aep_gold=gold, no_such_property=extra)
    frame = pd.read_parquet(path)
    frame.loc[310, "email"] = "not-an-email"
    frame.to_parquet(path, index=False)
    hs.server(upsert_errors="400")
    summary = upsert_file(client, path, tmp_path / "out", threads=1)

    assert (summary["created"], summary["rejected"]) == (489, 11)
    upserts = hs.requests("/batch/upsert")
    # batch 1: refused, then resent without its 2 culprits; batches 2, 3, 5: once, screened; batch 4: its bad email
    assert [r["status"] for r in upserts] == [400, 200, 200, 200, 400, 200, 200]
    assert summary["requests"] == len(upserts) == 7  # 10 without the learning: one refusal per batch
    rejects = pd.read_parquet(summary["rejects_path"]).set_index("email")
    screened = rejects[rejects["reason"].str.contains("refused for another record earlier in this run")]
    assert len(screened) == 8 and set(screened["field"]) == {"aep_gold", "no_such_property"}
    assert screened["reason"].str.contains("INVALID_OPTION|PROPERTY_DOESNT_EXIST").all()
    assert "not sent" in screened.iloc[0]["reason"] and "INVALID_EMAIL" in rejects.loc["not-an-email", "reason"]
    assert len(hs.contacts()) == 489
