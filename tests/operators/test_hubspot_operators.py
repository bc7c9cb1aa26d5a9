"""EnsureAudienceProperties and ValidateContactCounts operators, executed directly against the sandbox."""

from __future__ import annotations

import json
import time

import pytest
from audience_sync.naming import PropertyNameCollision
from audience_sync.operators.hubspot import (
    CountMismatch,
    EnsureAudiencePropertiesOperator,
    PropertySetupError,
    ValidateContactCountsOperator,
)
from audience_sync.upsert import upsert_file

AUDIENCES = [{"id": "seg-1", "name": "Gold Members (EU)"}, {"id": "seg-2", "name": "Churn risk"}]
TARGETS = ["email", "firstname", "lastname", "city"]


def ensure(**kwargs):
    return EnsureAudiencePropertiesOperator(
        task_id="ensure", audiences=kwargs.pop("audiences", AUDIENCES), target_properties=kwargs.pop("targets", TARGETS), **kwargs
    ).execute(context={})


def writes(hs) -> list[dict]:
    return [r for r in hs.requests() if r["method"] in ("POST", "PATCH")]


def test_creates_group_and_one_select_property_per_audience_idempotently(hs):
    assert ensure() == {"seg-1": "aep_gold_members_eu", "seg-2": "aep_churn_risk"}
    client = hs.connect()
    prop = client.get_property("aep_gold_members_eu")
    assert (prop["label"], prop["type"], prop["fieldType"], prop["groupName"]) == (
        "Gold Members (EU)", "enumeration", "select", "adobe_experience_platform_audiences",
    )
    assert [o["value"] for o in prop["options"]] == ["realized", "existing", "exited"]
    assert "adobe_experience_platform_audiences" in {g["name"] for g in client.list_groups()}
    assert len(writes(hs)) == 3  # group + two properties

    assert ensure(audiences=json.dumps(AUDIENCES)) == {"seg-1": "aep_gold_members_eu", "seg-2": "aep_churn_risk"}
    assert len(writes(hs)) == 3  # the second run writes nothing


def test_a_missing_option_is_added_with_a_patch(hs):
    ensure()
    client = hs.connect()
    prop = client.get_property("aep_churn_risk")
    client.update_property("aep_churn_risk", {"options": [o for o in prop["options"] if o["value"] != "exited"]})
    before = len(writes(hs))
    ensure()
    assert [r["method"] for r in writes(hs)[before:]] == ["PATCH"]
    assert {o["value"] for o in client.get_property("aep_churn_risk")["options"]} == {"realized", "existing", "exited"}


def test_a_missing_mapped_property_fails_before_any_write(hs):
    with pytest.raises(PropertySetupError, match=r"do not exist: favourite_colour, shoe_size\..*nothing was written"):
        ensure(targets=[*TARGETS, "shoe_size", "favourite_colour"])
    assert writes(hs) == []
    assert hs.connect().get_property("aep_gold_members_eu") is None


def test_a_property_name_taken_by_someone_else_is_an_error(hs):
    client = hs.connect()
    client.create_property(
        {"name": "aep_churn_risk", "label": "Churn", "type": "string", "fieldType": "text", "groupName": "contactinformation"}
    )
    before = len(writes(hs))
    with pytest.raises(PropertySetupError, match=r"aep_churn_risk \(group 'contactinformation', type 'string'\)"):
        ensure()
    assert len(writes(hs)) == before
    assert client.get_property("aep_churn_risk")["type"] == "string"


def test_two_audiences_with_one_property_name_are_refused(hs):
    with pytest.raises(PropertyNameCollision):
        ensure(audiences=[{"id": "a", "name": "VIP!"}, {"id": "b", "name": "vip"}])
    assert writes(hs) == []


def test_counts_pass_once_the_search_index_catches_up(hs, tmp_path):
    hs.server(index_delay_seconds=1.5)
    names = ensure()
    gold = ["realized"] * 25 + ["exited"] * 5 + [None] * 10
    upsert_file(hs.connect(), hs.chunk(40, **{names["seg-1"]: gold}), tmp_path / "out")
    started = time.monotonic()
    expected = {"aep_gold_members_eu": {"realized": 25, "exited": 5, "existing": 0}}
    result = ValidateContactCountsOperator(task_id="validate", expected=expected, max_wait_s=20, poll_s=0.3).execute(context={})
    rows = result["rows"]  # a ValidationResult
    assert time.monotonic() - started >= 1.0  # the first counts were short: the index lagged the writes
    assert [(r["status"], r["expected"], r["found"], r["ok"]) for r in rows] == [
        ("existing", 0, 0, True), ("exited", 5, 5, True), ("realized", 25, 25, True),
    ]
    searches = hs.requests("/contacts/search")
    assert len(searches) >= 6 and all(r["status"] == 200 for r in searches)


def test_a_real_mismatch_fails_with_the_table(hs, tmp_path):
    hs.server(index_delay_seconds=0)
    names = ensure()
    upsert_file(hs.connect(), hs.chunk(10, **{names["seg-2"]: ["realized"] * 10}), tmp_path / "out")
    path = tmp_path / "expected.json"
    path.write_text(json.dumps({"aep_churn_risk": {"realized": 12, "exited": 0}}))
    operator = ValidateContactCountsOperator(task_id="validate", expected=str(path), max_wait_s=3, poll_s=0.5)
    with pytest.raises(CountMismatch) as raised:
        operator.execute(context={})
    message = str(raised.value)
    assert "audience property  status    expected  found  difference" in message
    assert "aep_churn_risk     realized  12        10     -2          MISMATCH" in message
    assert "aep_churn_risk     exited    0         0      +0          ok" in message
    rows = ValidateContactCountsOperator(
        task_id="validate", expected=str(path), tolerance=2, max_wait_s=0, poll_s=0.5
    ).execute(context={})["rows"]
    assert all(r["ok"] for r in rows)
