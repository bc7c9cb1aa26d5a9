"""Pure modules: the task contracts' XCom round trip, the shared constants, HubSpot property reconciliation,
and the one atomic write."""

from __future__ import annotations

import json

import pytest

from audience_sync import storage
from audience_sync.constants import MAX_BATCH, checked_batch_size
from audience_sync.contracts import (
    Audience,
    ConnectResult,
    ExportResult,
    MapResult,
    PlanResult,
    UpsertSummary,
    ValidationResult,
)
from audience_sync.errors import ConfigurationError, InputError
from audience_sync.properties import PropertySetupError, audience_options, reconcile

SUMMARY = {
    "records": 10, "sent": 9, "created": 6, "updated": 1, "rejected": 3, "requests": 1,
    "results_path": "r.parquet", "rejects_path": "x.parquet", "started_at": 10.0, "finished_at": 12.5,
}


def test_every_contract_survives_json_as_xcom_carries_it():
    records = [
        ConnectResult("c-1", "e", True, False),
        ExportResult(("a.parquet",), 3, (Audience("s1", "Gold"),), 7),
        MapResult(("m.parquet",), "rej.parquet", {"valid": 3}, 0.5, (Audience("s1", "Gold", None, "aep_gold"),), ("email",)),
        PlanResult(("p.parquet",), "next.parquet", None, {"to_send": 3}, {"aep_gold": {"realized": 3}}, 0.1, False, True),
        UpsertSummary.from_xcom(SUMMARY),
        ValidationResult.from_xcom({"rows": [
            {"property": "aep_gold", "status": "realized", "expected": 3, "found": 3, "difference": 0, "ok": True},
        ]}),
    ]
    for record in records:
        assert type(record).from_xcom(json.loads(json.dumps(record.to_xcom()))) == record


def test_a_missing_field_names_the_record_and_the_field():
    with pytest.raises(InputError, match="PlanResult from XCom lacks dry_run, full_refresh"):
        PlanResult.from_xcom({k: v for k, v in PlanResult((), "n", None, {}, {}, 0.0, False, False).to_xcom().items()
                              if k not in ("dry_run", "full_refresh")})


def test_upsert_summary_tolerates_the_fields_upsert_does_not_send_yet_and_totals():
    first = UpsertSummary.from_xcom(SUMMARY)
    assert (first.gone, first.rejected_by_category, first.gone_path) == (0, {}, None)
    second = UpsertSummary.from_xcom({**SUMMARY, "started_at": 11.0, "finished_at": 20.0, "gone": 2,
                                      "rejected_by_category": {"VALIDATION_ERROR": 3}})
    totals = UpsertSummary.total([first, second])
    assert totals["created"] == 12 and totals["gone"] == 2 and totals["chunks"] == 2
    assert totals["rejected_by_category"] == {"VALIDATION_ERROR": 3}
    assert totals["wall_seconds"] == 10.0


def test_connect_result_without_skipped_and_audience_without_property():
    assert ConnectResult.from_xcom({"connection_id": None, "etag": None, "created": False, "dry_run": True}).skipped is None
    assert Audience("s1", "Gold").to_xcom() == {"id": "s1", "name": "Gold"}


def test_the_batch_limit_is_checked_once_here():
    assert checked_batch_size(MAX_BATCH) == 100 and checked_batch_size(1) == 1
    for bad in (0, 101):
        with pytest.raises(ConfigurationError, match="between 1 and 100"):
            checked_batch_size(bad)


def prop(name, group="adobe_experience_platform_audiences", type_="enumeration", label=None, options=None):
    return {"name": name, "groupName": group, "type": type_, "label": label or name,
            "options": audience_options() if options is None else options}


def test_reconcile_creates_what_is_missing_and_patches_options_and_labels():
    existing = [prop("email", "contactinformation", "string"), prop("aep_gold", label="Gold"),
                prop("aep_churn", label="Old label", options=audience_options()[:2])]
    labels = {"aep_gold": "Gold", "aep_churn": "Churn", "aep_new": "New"}
    changes = reconcile(existing, ["contactinformation"], labels, ["email"])
    assert changes.create_group
    assert [p["name"] for p in changes.create] == ["aep_new"]
    assert [o["value"] for o in changes.create[0]["options"]] == ["realized", "existing", "exited"]
    assert dict(changes.update)["aep_churn"]["label"] == "Churn"
    assert [o["value"] for o in dict(changes.update)["aep_churn"]["options"]] == ["realized", "existing", "exited"]
    again = reconcile([*existing[:2], prop("aep_churn", label="Churn"), prop("aep_new", label="New")],
                      ["adobe_experience_platform_audiences"], labels, ["email"])
    assert again.empty


def test_reconcile_refuses_missing_targets_and_foreign_properties():
    with pytest.raises(PropertySetupError, match="do not exist: shoe_size"):
        reconcile([prop("email", "contactinformation", "string")], [], {}, ["email", "shoe_size"])
    with pytest.raises(PropertySetupError, match=r"aep_gold \(group 'contactinformation', type 'string'\)"):
        reconcile([prop("aep_gold", "contactinformation", "string")], [], {"aep_gold": "Gold"}, [])


def test_atomic_path_leaves_the_old_file_on_failure_and_no_temp(tmp_path):
    target = tmp_path / "snapshot.parquet"
    storage.write_bytes_atomically(b"old", target)
    with pytest.raises(RuntimeError), storage.atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["snapshot.parquet"]
