"""Exits never create: "update" rows go through batch update by email; contacts HubSpot deleted, GDPR-deleted
or merged away are reported as gone, never re-created, whatever variant of "not found" HubSpot answers. A
merged-away address is never updated either, even where HubSpot resolves it to the merged contact."""

from __future__ import annotations

import pandas as pd
import pytest
import requests
from audience_sync.upsert import upsert_file
from sandbox import credentials

SUMMARY_KEYS = {
    "records", "sent", "created", "updated", "gone", "rejected", "rejected_by_category", "requests",
    "results_path", "rejects_path", "gone_path", "started_at", "finished_at",
}
STATUS = "aep_gold"


def api(hs, method: str, path: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {credentials.HUBSPOT_PRIVATE_APP_TOKEN}"}
    url = f"{hs.sandbox.url}/crm/objects/2026-03/contacts{path}"
    return requests.request(method, url, headers=headers, timeout=10, **kwargs)


def world(hs, client) -> dict[str, str]:
    """Six members in HubSpot; then p1 archived, p2 GDPR-deleted, p4 merged into p3. Returns email → id."""
    hs.audience_property(client, STATUS)
    ids = {}
    for i in range(6):
        email = f"p{i}@example.com"
        response = api(hs, "POST", "", json={"properties": {"email": email, STATUS: "realized"}})
        assert response.status_code == 201, response.text
        ids[email] = response.json()["id"]
    assert api(hs, "DELETE", f"/{ids['p1@example.com']}").status_code == 204
    gdpr = api(hs, "POST", "/gdpr-delete", json={"objectId": "p2@example.com", "idProperty": "email"})
    assert gdpr.status_code == 204
    pair = {"primaryObjectId": ids["p3@example.com"], "objectIdToMerge": ids["p4@example.com"]}
    merged = api(hs, "POST", "/merge", json=pair)
    assert merged.status_code == 200
    ids["merged"] = merged.json()["id"]
    return ids


def plan_chunk(hs) -> str:
    """Two upserts (a newcomer, a member still exported) and five exits (rows sorted by email, like the plan's)."""
    rows = [
        ("new@example.com", "realized", "upsert"),
        ("p0@example.com", "existing", "upsert"),
        ("never@example.com", "exited", "update"),
        ("p1@example.com", "exited", "update"),
        ("p2@example.com", "exited", "update"),
        ("p4@example.com", "exited", "update"),
        ("p5@example.com", "exited", "update"),
    ]
    frame = pd.DataFrame(rows, columns=["email", STATUS, "_write"]).astype("string")
    path = hs.tmp_path / "send-0000.parquet"
    frame.to_parquet(path, index=False)
    return str(path)


def by_email(hs) -> dict[str, dict]:
    return {c["properties"]["email"]: c for c in hs.contacts()}


@pytest.mark.parametrize(
    ("variant", "trace_ids", "update_requests"),
    [
        ("207", True, 1),  # per-input OBJECT_NOT_FOUND errors by trace id
        ("207", False, 2),  # no trace ids: the sandbox refuses the whole batch with a 404 naming the ids
        ("404", True, 2),  # whole-batch 404, context.ids names the missing ones: they are gone, the rest resent
        ("400", True, 2),  # whole-batch 400 OBJECT_NOT_FOUND quoting the ids in its message only
        ("404_silent", True, None),  # whole-batch 404 naming nothing: halving down to the missing ones
    ],
)
def test_exits_update_only_existing_contacts_and_report_the_gone(hs, tmp_path, variant, trace_ids, update_requests):
    client = hs.connect(trace_ids=trace_ids)
    ids = world(hs, client)
    hs.server(update_not_found=variant, merged_email_lookup="primary")
    summary = upsert_file(client, plan_chunk(hs), tmp_path / "out")

    assert set(summary) == SUMMARY_KEYS
    stored = by_email(hs)
    assert not {"p1@example.com", "p2@example.com", "never@example.com"} & set(stored)  # never re-created
    gone = sorted(pd.read_parquet(summary["gone_path"])["email"])
    assert gone == ["never@example.com", "p1@example.com", "p2@example.com", "p4@example.com"]
    assert (summary["gone"], summary["created"], summary["rejected"], summary["rejected_by_category"]) == (4, 1, 0, {})
    assert stored["p5@example.com"]["properties"][STATUS] == "exited"
    assert stored["p0@example.com"]["properties"][STATUS] == "existing"
    # "primary": the merged-away address would resolve to the merged record, whose own address (p3) is still
    # a member: the read by email shows its primary email differs, so p4 is gone and p3 is left as it was
    merged = stored["p3@example.com"]
    assert merged["id"] == ids["merged"] and merged["properties"][STATUS] == "realized"
    assert len(stored) == 4  # new, p0, p3 (merged), p5
    results = pd.read_parquet(summary["results_path"]).set_index("email")
    assert set(results.index) == {"new@example.com", "p0@example.com", "p5@example.com"}
    assert not results["new"].loc[["p0@example.com", "p5@example.com"]].any()
    updates = hs.requests("/batch/update")
    assert len(hs.requests("/batch/upsert")) == 1
    assert len(hs.requests("/batch/read")) == 1  # the one extra request of an update batch
    if update_requests is not None:
        assert len(updates) == update_requests == summary["requests"] - 2
    else:
        assert 2 < len(updates) <= 10 and len(updates) == summary["requests"] - 2  # halving 4 inputs, 3 missing


def test_a_merged_away_address_that_finds_nothing_is_gone(hs, tmp_path):
    client = hs.connect()
    world(hs, client)
    hs.server(merged_email_lookup="not_found")
    summary = upsert_file(client, plan_chunk(hs), tmp_path / "out")
    gone = set(pd.read_parquet(summary["gone_path"])["email"])
    assert gone == {"never@example.com", "p1@example.com", "p2@example.com", "p4@example.com"}
    stored = by_email(hs)
    assert "p4@example.com" not in stored and stored["p3@example.com"]["properties"][STATUS] == "realized"
    # upsert, the read by email (p4 named not found: it goes on to the update, which finds nothing), the update
    assert summary["requests"] == 3 and len(hs.requests("/batch/read")) == len(hs.requests("/batch/update")) == 1


def test_an_old_plan_file_without_write_column_upserts_everything(hs, tmp_path):
    summary = upsert_file(hs.connect(), hs.chunk(5), tmp_path / "out")
    assert (summary["created"], summary["gone"], summary["requests"]) == (5, 0, 1)
    assert hs.requests("/batch/update") == []
    assert pd.read_parquet(summary["gone_path"]).empty


def test_an_unknown_write_kind_is_rejected_not_sent(hs, tmp_path):
    path = hs.chunk(3, _write=["upsert", "delete", None])
    summary = upsert_file(hs.connect(), path, tmp_path / "out")
    assert (summary["created"], summary["rejected"], summary["rejected_by_category"]) == (1, 2, {"INVALID_WRITE": 2})
    assert len(hs.contacts()) == 1
