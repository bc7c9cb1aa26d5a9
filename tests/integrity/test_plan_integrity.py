"""Issue 13 at the pure level: clears, exits that never create, subset history, replay safety,
deterministic order, convergent expected counts and the mass-change guard (real Parquet files)."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from audience_sync import incremental
from audience_sync.errors import InputError, PermanentError
from audience_sync.incremental import (
    MassChangeBlocked,
    SnapshotMoved,
    apply_gone,
    build_candidate,
    check_mass_change,
    commit_snapshot,
    expected_counts,
    pin_plan_base,
    plan,
    read_version_record,
    snapshot_version,
)

GOLD, CHURN = "aep_gold", "aep_churn"


def mapped(folder, rows: list[dict], audiences=(GOLD, CHURN), chunk: int = 1000) -> list[str]:
    columns = ["email", "firstname", "city", *audiences, "_profile_id"]
    schema = pa.schema([(c, pa.string()) for c in columns])
    folder.mkdir(parents=True)
    paths = []
    for start in range(0, max(len(rows), 1), chunk):
        path = folder / f"part-{start // chunk:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(rows[start : start + chunk], schema=schema), path)
        paths.append(str(path))
    return paths if rows else []


def row(email, first=None, city=None, **statuses):
    return {"email": email, "firstname": first, "city": city, "_profile_id": email, **statuses}


def sent(result) -> pd.DataFrame:
    frames = [pq.read_table(p).to_pandas() for p in result.send_paths]
    return pd.concat(frames).set_index("email") if frames else pd.DataFrame()


def run(tmp_path, name, rows, previous=None, audiences=(GOLD, CHURN), **kwargs):
    return plan(mapped(tmp_path / name, rows, audiences), previous, list(audiences), kwargs.pop("full_refresh", False),
                str(tmp_path / f"plan-{name}"), **kwargs)


# --- 2. clears ---------------------------------------------------------------------------------------
def test_a_value_removed_in_aep_is_cleared_once(tmp_path):
    first = run(tmp_path, "1", [row("a@x.com", "Ann", "Paris", aep_gold="realized")])
    second = run(tmp_path, "2", [row("a@x.com", "Ann", None, aep_gold="realized")], first.next_snapshot_path)
    frame = sent(second)
    assert frame.loc["a@x.com", "city"] == "" and frame.loc["a@x.com", "firstname"] == "Ann"
    assert second.counts["cleared_values"] == 1
    third = run(tmp_path, "3", [row("a@x.com", "Ann", None, aep_gold="realized")], second.next_snapshot_path)
    assert third.counts["to_send"] == 0  # the clear is remembered: not sent again


def test_never_set_properties_are_not_cleared_and_keep_rows_are_not(tmp_path):
    first = run(tmp_path, "1", [row("a@x.com", "Ann", "Paris", aep_gold="realized"), row("b@x.com", "Ben")])
    second = run(
        tmp_path, "2", [row("a@x.com", None, None, aep_gold="realized"), row("b@x.com", "Bob")],
        first.next_snapshot_path, keep_on_missing=["firstname"],
    )
    frame = sent(second)
    assert pd.isna(frame.loc["a@x.com", "firstname"])  # on_missing: keep → not sent (null = don't touch)
    assert frame.loc["a@x.com", "city"] == ""
    assert pd.isna(frame.loc["b@x.com", "city"])  # b never had a city from us: nothing to clear


def test_full_refresh_resends_everything_clears_included(tmp_path):
    first = run(tmp_path, "1", [row("a@x.com", "Ann", None, aep_gold="realized")])
    again = run(tmp_path, "2", [row("a@x.com", "Ann", None, aep_gold="realized")], first.next_snapshot_path,
                full_refresh=True)
    frame = sent(again)
    assert frame.loc["a@x.com", "city"] == "" and frame.loc["a@x.com", "_write"] == "upsert"


def test_a_snapshot_from_before_clears_still_plans(tmp_path):
    old = tmp_path / "old.parquet"
    pq.write_table(pa.table({"email": ["a@x.com"], "_hash": pa.array([1], pa.uint64()), GOLD: ["realized"]}), old)
    result = run(tmp_path, "1", [row("a@x.com", "Ann", aep_gold="realized")], str(old))
    assert result.counts["changed"] == 1 and pd.isna(sent(result).loc["a@x.com", "city"])


# --- 3 + 6. exits never create; deterministic order ---------------------------------------------------
def test_absent_contacts_are_updates_sorted_by_email(tmp_path):
    emails = [f"{c}{i}@x.com" for i in range(40) for c in "zmab"]
    first = run(tmp_path, "1", [row(e, aep_gold="realized") for e in emails])
    second = run(tmp_path, "2", [row("new@x.com", aep_churn="realized")], first.next_snapshot_path)
    frame = pd.concat(pq.read_table(p).to_pandas() for p in second.send_paths)
    assert frame.iloc[0]["email"] == "new@x.com" and frame.iloc[0]["_write"] == "upsert"
    absent = frame.iloc[1:]
    assert list(absent["email"]) == sorted(emails) and set(absent["_write"]) == {"update"}
    assert second.counts["to_update"] == len(emails)


def test_gone_contacts_leave_the_snapshot_and_the_expected_counts(tmp_path):
    first = run(tmp_path, "1", [row("a@x.com", aep_gold="realized"), row("b@x.com", aep_gold="realized")])
    second = run(tmp_path, "2", [row("a@x.com", aep_gold="realized")], first.next_snapshot_path)
    path, dropped = apply_gone(second.next_snapshot_path, ["b@x.com", "unknown@x.com"], str(tmp_path / "c.parquet"))
    assert dropped == 1
    assert expected_counts(path, [GOLD]) == {GOLD: {"realized": 1}}
    third = run(tmp_path, "3", [row("a@x.com", aep_gold="realized")], path)
    assert third.counts["to_send"] == 0  # b is never written again: never re-created


# --- 4. history -------------------------------------------------------------------------------------
def test_a_subset_run_keeps_the_other_audiences_history(tmp_path):
    both = [row("a@x.com", aep_gold="realized", aep_churn="realized"), row("b@x.com", aep_churn="existing")]
    first = run(tmp_path, "1", both)
    subset = run(tmp_path, "2", [row("a@x.com", aep_gold="realized")], first.next_snapshot_path, audiences=(GOLD,))
    assert subset.counts["to_send"] == 0
    snap = pq.read_table(subset.next_snapshot_path).to_pandas().set_index("email")
    assert snap.loc["a@x.com", CHURN] == "realized" and snap.loc["b@x.com", CHURN] == "existing"
    # the full run afterwards still sees churn's exits
    full = run(tmp_path, "3", [row("a@x.com", aep_gold="realized")], subset.next_snapshot_path)
    frame = sent(full)
    assert frame.loc["a@x.com", CHURN] == "exited" and frame.loc["b@x.com", CHURN] == "exited"
    assert frame.loc["b@x.com", "_write"] == "update"


# --- 5. replay safety -------------------------------------------------------------------------------
def test_commit_refuses_a_snapshot_that_moved(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    snapshot = str(state / "snapshot.parquet")
    first = run(tmp_path, "1", [row("a@x.com", aep_gold="realized")])
    assert first.snapshot_version == ""
    record = commit_snapshot(first.next_snapshot_path, snapshot, first.snapshot_version, "run-1")
    assert record["generation"] == 1 and record["run_id"] == "run-1"
    assert record["sha256"] == snapshot_version(snapshot)
    # two runs planned on generation 1; the first commits, the stale one is refused
    newer = run(tmp_path, "2", [row("a@x.com", "Ann", aep_gold="realized")], snapshot)
    stale = run(tmp_path, "3", [], snapshot)
    assert newer.snapshot_version == stale.snapshot_version == record["sha256"]
    commit_snapshot(newer.next_snapshot_path, snapshot, newer.snapshot_version, "run-2")
    assert commit_snapshot(newer.next_snapshot_path, snapshot, newer.snapshot_version, "run-2")["generation"] == 2
    before = open(snapshot, "rb").read()
    with pytest.raises(SnapshotMoved) as error:
        commit_snapshot(stale.next_snapshot_path, snapshot, stale.snapshot_version, "run-3")
    assert isinstance(error.value, PermanentError)
    assert "run-2" in str(error.value) and "Trigger a new run" in str(error.value)
    assert open(snapshot, "rb").read() == before
    assert read_version_record(snapshot)["generation"] == 2
    assert not [p for p in state.iterdir() if p.name.endswith(".tmp")]


def test_a_cleared_old_run_cannot_replan_on_a_newer_snapshot(tmp_path):
    snapshot = tmp_path / "snapshot.parquet"
    pin = str(tmp_path / "run" / "plan-base.json")
    assert pin_plan_base(pin, "", str(snapshot)) == ""
    assert pin_plan_base(pin, "", str(snapshot)) == ""  # a retry on the same base is fine
    first = run(tmp_path, "1", [row("a@x.com", aep_gold="realized")])
    commit_snapshot(first.next_snapshot_path, str(snapshot), "", "run-other")
    with pytest.raises(SnapshotMoved, match="run-other"):
        pin_plan_base(pin, snapshot_version(str(snapshot)), str(snapshot))


def test_corrupt_snapshot_is_an_input_error(tmp_path):
    bad = tmp_path / "snapshot.parquet"
    bad.write_bytes(b"PAR1 not really parquet PAR1")
    with pytest.raises(InputError) as error:
        run(tmp_path, "1", [row("a@x.com")], str(bad))
    assert str(bad) in str(error.value) and "full_refresh" in str(error.value)


# --- 7. validation converges --------------------------------------------------------------------------
def test_full_refresh_reconciles_a_drifted_snapshot(tmp_path):
    first = run(tmp_path, "1", [row("a@x.com", aep_gold="realized"), row("b@x.com", aep_gold="realized"),
                                row("c@x.com", aep_gold="realized")])
    # b left AEP and was deleted in HubSpot; c is rejected by HubSpot this time
    refresh = run(tmp_path, "2", [row("a@x.com", aep_gold="realized"), row("c@x.com", aep_gold="existing")],
                  first.next_snapshot_path, full_refresh=True)
    assert sent(refresh).loc["b@x.com", "_write"] == "update"
    path, counts = build_candidate(refresh.next_snapshot_path, ["c@x.com"], ["b@x.com"], first.next_snapshot_path,
                                   True, str(tmp_path / "candidate.parquet"))
    assert counts == {"upsert_rejected": 1, "gone_in_hubspot": 1}
    assert expected_counts(path, [GOLD]) == {GOLD: {"realized": 1}}  # only what HubSpot confirmed
    # an incremental run restores the rejected contact's previous row instead, so it is retried
    path, _ = build_candidate(refresh.next_snapshot_path, ["c@x.com"], [], first.next_snapshot_path, False,
                              str(tmp_path / "candidate2.parquet"))
    snap = pq.read_table(path).to_pandas().set_index("email")
    assert snap.loc["c@x.com", GOLD] == "realized"


# --- 1. mass-change guard ---------------------------------------------------------------------------
def test_guard_blocks_an_empty_export_against_a_snapshot(tmp_path):
    first = run(tmp_path, "1", [row(f"{i}@x.com", aep_gold="realized") for i in range(10)])
    empty = run(tmp_path, "2", [], first.next_snapshot_path)
    with pytest.raises(MassChangeBlocked) as error:
        check_mass_change(empty.counts, {"exported": 0, "rejected": 0}, 0.10, 0.05)
    message = str(error.value)
    assert "export is empty" in message and "10 contacts" in message and "allow_mass_change" in message
    numbers = check_mass_change(empty.counts, {"exported": 0, "rejected": 0}, 0.10, 0.05, allow=True)
    assert numbers["exiting"] == 10 and numbers["exit_fraction"] == 1.0 and numbers["allowed"] is True


def test_guard_thresholds(tmp_path):
    first = run(tmp_path, "1", [row(f"{i:02d}@x.com", aep_gold="realized") for i in range(20)])
    two_leave = run(tmp_path, "2", [row(f"{i:02d}@x.com", aep_gold="realized") for i in range(18)],
                    first.next_snapshot_path)
    ok = check_mass_change(two_leave.counts, {"exported": 18, "rejected": 0}, 0.10, 0.05)
    assert ok["exit_fraction"] == 0.1 and ok["blocked_because"] == [] and ok["allowed"] is False
    with pytest.raises(MassChangeBlocked, match="2 of the snapshot's 20 contacts would exit"):
        check_mass_change(two_leave.counts, {"exported": 18, "rejected": 0}, 0.05, 0.05)
    rejects = {"exported": 100, "rejected": 12, "rejected_by_category": {"DUPLICATE_EMAIL": 6, "MISSING_EMAIL": 6}}
    with pytest.raises(MassChangeBlocked, match="6 of 100 exported profiles were rejected"):
        check_mass_change({"previous": 0}, rejects, 0.10, 0.05)
    assert check_mass_change({"previous": 0}, rejects, 0.10, 0.06)["reject_fraction"] == 0.06


def test_version_sidecar_is_json(tmp_path):
    first = run(tmp_path, "1", [row("a@x.com")])
    snapshot = str(tmp_path / "s.parquet")
    commit_snapshot(first.next_snapshot_path, snapshot, "", "r1")
    assert json.loads(open(snapshot + incremental.VERSION_SUFFIX).read())["generation"] == 1


def test_guard_blocks_a_field_vanishing_from_the_export(tmp_path):
    """A mapped field missing from an export would clear it on every contact: that is a mass change too."""
    first = run(tmp_path, "1", [row(f"{i:02d}@x.com", "F", f"City{i}", aep_gold="realized") for i in range(10)])
    no_city = run(tmp_path, "2", [row(f"{i:02d}@x.com", "F", None, aep_gold="realized") for i in range(10)],
                  first.next_snapshot_path)
    assert no_city.counts["losing_values"] == 10 and no_city.counts["exiting"] == 0
    with pytest.raises(MassChangeBlocked, match="10 of the snapshot's 10 contacts would have a value cleared"):
        check_mass_change(no_city.counts, {"exported": 10, "rejected": 0}, 0.10, 0.05)
    kept = run(tmp_path, "3", [row(f"{i:02d}@x.com", "F", None, aep_gold="realized") for i in range(10)],
               first.next_snapshot_path, keep_on_missing=["city"])
    assert check_mass_change(kept.counts, {"exported": 10, "rejected": 0}, 0.10, 0.05)["losing_values"] == 0
