"""The sync's own operators on real Parquet files: plan_sync → build_snapshot_candidate → commit_snapshot,
the next run's plan against the committed snapshot, the mass-change guard and a commit on a moved snapshot. The task context is the only stand-in (its ids and
an XCom recorder): these operators read nothing else from Airflow."""

from __future__ import annotations

from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow.sdk.exceptions import AirflowSkipException

from audience_sync import storage
from audience_sync.incremental import MassChangeBlocked, SnapshotMoved
from audience_sync.contracts import Audience, MapResult, PlanResult, SnapshotCandidate
from audience_sync.mapping import REJECT_SCHEMA
from audience_sync.operators.sync import (
    BuildSnapshotCandidateOperator,
    CommitSnapshotOperator,
    PlanSyncOperator,
    choose_writes,
)

COLUMNS = ["email", "firstname", "aep_gold"]


class XComRecorder:
    def __init__(self) -> None:
        self.pushed: dict = {}

    def xcom_push(self, key, value) -> None:
        self.pushed[key] = value


def context(run_id: str) -> dict:
    return {"dag": SimpleNamespace(dag_id="sync_test"), "run_id": run_id, "ti": XComRecorder()}


def mapped(tmp_path, rows: list[dict]) -> dict:
    folder = tmp_path / "mapped"
    folder.mkdir(exist_ok=True)
    path = folder / f"part-{len(list(folder.iterdir())):05d}.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([(c, pa.string()) for c in COLUMNS])), path)
    rejects = folder / "rejects.parquet"
    pq.write_table(REJECT_SCHEMA.empty_table(), rejects)
    audiences = (Audience("s1", "Gold", None, "aep_gold"),)
    return MapResult((str(path),), str(rejects), {"exported": len(rows), "valid": len(rows), "rejected": 0}, 0.1, audiences, ("email", "firstname")).to_xcom()


def upsert_rejecting(tmp_path, emails: list[str]) -> dict:
    rejects = tmp_path / "chunk.rejects.parquet"
    rows = [{"stage": "upsert", "record_id": e, "email": e, "field": "email", "category": "VALIDATION_ERROR",
             "reason": "INVALID_EMAIL"} for e in emails]
    pq.write_table(pa.Table.from_pylist(rows, schema=REJECT_SCHEMA), rejects)
    return {"records": 3, "sent": 3, "created": 3 - len(emails), "updated": 0, "rejected": len(emails),
            "requests": 1, "results_path": "unused", "rejects_path": str(rejects), "started_at": 1.0, "finished_at": 2.0}


def plan_run(mapped_result: dict, run_id: str, **flags) -> tuple[list[str], PlanResult]:
    ctx = context(run_id)
    limits = {"max_exit_fraction": 0.10, "max_reject_fraction": 0.05}
    send = PlanSyncOperator(task_id="plan_sync", mapped=mapped_result, **limits, **flags).execute(ctx)
    return send, PlanResult.from_xcom(ctx["ti"].pushed[PlanSyncOperator.result_key])


def test_plan_candidate_commit_then_the_next_run_resends_only_the_rejected(tmp_path):
    rows = [{"email": f"p{i}@example.com", "firstname": f"P{i}", "aep_gold": "realized"} for i in range(3)]
    first = mapped(tmp_path, rows)
    send, plan = plan_run(first, "run_1")
    assert plan.previous_snapshot_path is None and plan.counts["to_send"] == 3 and send == list(plan.send_paths)

    candidate = SnapshotCandidate.from_xcom(
        BuildSnapshotCandidateOperator(
            task_id="build_snapshot_candidate", plan=plan.to_xcom(), mapped=first,
            upsert_results=[upsert_rejecting(tmp_path, ["p1@example.com"])],
        ).execute(context("run_1"))
    )
    assert candidate.upsert_rejected == 1
    assert storage.read_json(candidate.expected_counts_path) == {"aep_gold": {"realized": 2}}
    assert not storage.snapshot_path("sync_test").exists()  # nothing committed before the commit task

    committed = CommitSnapshotOperator(task_id="commit_snapshot", candidate=candidate.to_xcom()).execute(
        context("run_1")
    )
    assert committed["snapshot_path"] == str(storage.snapshot_path("sync_test"))
    assert committed["version"]["generation"] == 1 and committed["version"]["run_id"] == "run_1"
    assert sorted(pq.read_table(committed["snapshot_path"]).column("email").to_pylist()) == [
        "p0@example.com", "p2@example.com",
    ]

    _, again = plan_run(mapped(tmp_path, rows), "run_2")
    assert again.previous_snapshot_path == committed["snapshot_path"]
    assert again.snapshot_version == committed["version"]["sha256"]
    assert again.counts["to_send"] == 1 and again.counts["unchanged"] == 2

    # run_1 committed again (a retried commit task) is a no-op; a stale candidate is refused
    retried = CommitSnapshotOperator(task_id="commit_snapshot", candidate=candidate.to_xcom()).execute(context("run_1"))
    assert retried["version"]["generation"] == 1
    with pytest.raises(SnapshotMoved, match="changed since this run planned"):
        CommitSnapshotOperator(task_id="commit_snapshot", candidate=candidate.to_xcom()).execute(context("run_3"))


def test_the_guard_stops_a_mass_exit_unless_allowed(tmp_path):
    rows = [{"email": f"p{i}@example.com", "firstname": f"P{i}", "aep_gold": "realized"} for i in range(10)]
    _, plan = plan_run(mapped(tmp_path, rows), "run_1")
    candidate = BuildSnapshotCandidateOperator(
        task_id="build_snapshot_candidate", plan=plan.to_xcom(), mapped=mapped(tmp_path, rows), upsert_results=[]
    ).execute(context("run_1"))
    CommitSnapshotOperator(task_id="commit_snapshot", candidate=candidate).execute(context("run_1"))

    one_left = mapped(tmp_path, rows[:1])  # nine of ten would exit
    with pytest.raises(MassChangeBlocked, match="9 of the snapshot's 10 contacts would exit"):
        plan_run(one_left, "run_2")
    _, dry = plan_run(one_left, "run_3", dry_run=True)
    assert dry.guard["exiting"] == 9 and dry.guard["blocked_because"]
    send, allowed = plan_run(one_left, "run_4", allow_mass_change="True")
    assert allowed.counts["exited"] == 9 and send


def test_a_dry_run_plans_sends_nothing_and_builds_no_candidate(tmp_path):
    result = mapped(tmp_path, [{"email": "a@example.com", "firstname": "A", "aep_gold": "existing"}])
    send, plan = plan_run(result, "dry", dry_run=True, full_refresh="True")
    assert send == [] and plan.dry_run and plan.full_refresh and plan.counts["to_send"] == 1
    with pytest.raises(AirflowSkipException):
        BuildSnapshotCandidateOperator(
            task_id="build_snapshot_candidate", plan=plan.to_xcom(), mapped=result, upsert_results=None
        ).execute(context("dry"))


def test_the_branch_uses_the_ids_it_is_given():
    assert choose_writes({"dry_run": True}, write_task_id="w", report_task_id="r") == ["r"]
    assert choose_writes({"dry_run": False}, write_task_id="w", report_task_id="r") == ["w", "r"]
