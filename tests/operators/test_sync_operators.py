"""The sync's own operators on real Parquet files: plan_sync → build_snapshot_candidate → commit_snapshot,
the next run's plan against the committed snapshot, the mass-change guard and a commit on a moved snapshot. The task context is the only stand-in (its ids and
an XCom recorder): these operators read nothing else from Airflow."""

from __future__ import annotations

import time
from datetime import datetime
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow.sdk.exceptions import AirflowSkipException

from audience_sync import storage
from audience_sync.incremental import MassChangeBlocked, SnapshotMoved
from audience_sync.contracts import Audience, MapResult, PlanResult, SnapshotCandidate
from audience_sync.mapping import REJECT_SCHEMA
from audience_sync.errors import ConfigurationError
from audience_sync.operators.aep import AepExportFailed
from audience_sync.operators.hubspot import CountMismatch
from audience_sync.operators.sync import (
    ApproveMassChangeOperator,
    BuildSnapshotCandidateOperator,
    CommitSnapshotOperator,
    DeleteExpiredRunFoldersOperator,
    PlanSyncOperator,
    StalePlanGuard,
    approval_applies,
    choose_writes,
    mass_change_summary,
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


# ------------------------------------------------------------------------------------ replay safety


class DagRun(SimpleNamespace):
    """The two fields of a DAG run the plan reads: when it was due, and how it was started."""


def run_context(run_id: str, run_after: str, run_type: str = "scheduled") -> dict:
    ctx = context(run_id)
    ctx["dag_run"] = DagRun(run_after=datetime.fromisoformat(run_after), run_type=run_type)
    return ctx


def plan_in(mapped_result: dict, ctx: dict, **flags) -> PlanResult:
    limits = {"max_exit_fraction": 0.10, "max_reject_fraction": 0.05}
    PlanSyncOperator(task_id="plan_sync", mapped=mapped_result, **limits, **flags).execute(ctx)
    return PlanResult.from_xcom(ctx["ti"].pushed[PlanSyncOperator.result_key])


def complete(mapped_result: dict, ctx: dict) -> dict:
    """plan → candidate → commit in one run context; the commit's version record."""
    plan = plan_in(mapped_result, ctx)
    candidate = BuildSnapshotCandidateOperator(
        task_id="build_snapshot_candidate", plan=plan.to_xcom(), mapped=mapped_result, upsert_results=[]
    ).execute(ctx)
    return CommitSnapshotOperator(task_id="commit_snapshot", candidate=candidate).execute(ctx)["version"]


def test_an_old_run_never_plans_on_a_snapshot_a_newer_run_committed(tmp_path):
    rows = [{"email": f"p{i}@example.com", "firstname": f"P{i}", "aep_gold": "realized"} for i in range(20)]
    data = mapped(tmp_path, rows)
    old = run_context("scheduled__day1", "2026-11-01T02:00:00+00:00")
    assert complete(data, old)["run_after"] == "2026-11-01T02:00:00+00:00"

    # The same run cleared after its own commit: allowed, plans on what it committed, sends nothing again.
    again = plan_in(data, run_context("scheduled__day1", "2026-11-01T02:00:00+00:00"))
    assert again.counts["to_send"] == 0

    newer = run_context("scheduled__day2", "2026-11-02T02:00:00+00:00")
    assert complete(mapped(tmp_path, rows[:19]), newer)["run_id"] == "scheduled__day2"

    # The old run cleared now: its pin (first planned on "no snapshot") and the newer committer both refuse.
    with pytest.raises(SnapshotMoved, match="Trigger a new run instead of clearing this one"):
        plan_in(data, run_context("scheduled__day1", "2026-11-01T02:00:00+00:00"))
    # An old run that never planned (it failed before plan_sync) is refused by the committer's run_after.
    with pytest.raises(SnapshotMoved, match="was scheduled for 2026-10-31"):
        plan_in(data, run_context("scheduled__day0", "2026-10-31T02:00:00+00:00"))
    # A run due after the commit plans as usual.
    later = plan_in(data, run_context("scheduled__day3", "2026-11-03T02:00:00+00:00"))
    assert later.counts["to_send"] == 1  # the contact that exited comes back


# -------------------------------------------------------------------------------------- approval gate


@pytest.mark.parametrize(
    ("mode", "run_type", "waits"),
    [("manual", "manual", True), ("manual", "scheduled", False), ("always", "scheduled", True),
     ("never", "manual", False)],
)
def test_a_guard_stopped_run_waits_for_approval_only_where_configured(tmp_path, mode, run_type, waits):
    rows = [{"email": f"p{i}@example.com", "firstname": f"P{i}", "aep_gold": "realized"} for i in range(10)]
    complete(mapped(tmp_path, rows), run_context("r1", "2026-11-01T02:00:00+00:00"))
    one_left = mapped(tmp_path, rows[:1])
    ctx = run_context("r2", "2026-11-02T02:00:00+00:00", run_type)
    if not waits:
        with pytest.raises(MassChangeBlocked):
            plan_in(one_left, ctx, approval_on_mass_change=mode)
        return
    plan = plan_in(one_left, ctx, approval_on_mass_change=mode)
    assert plan.guard["awaiting_approval"] and not plan.guard["allowed"] and plan.guard["exiting"] == 9
    body = mass_change_summary(plan.to_xcom())
    assert "9 of the snapshot's 10 contacts would exit" in body and "| exiting | 9 |" in body and "@" not in body


def test_the_approval_task_passes_at_once_when_the_guard_did_not_stop_the_plan(tmp_path):
    rows = [{"email": "a@example.com", "firstname": "A", "aep_gold": "realized"}]
    plan = plan_in(mapped(tmp_path, rows), run_context("r1", "2026-11-01T02:00:00+00:00", "manual"),
                   approval_on_mass_change="manual")
    assert not plan.guard["awaiting_approval"]
    gate = ApproveMassChangeOperator(task_id="approve_mass_change", plan=plan.to_xcom())
    assert gate.execute(context("r1")) is None  # no human-in-the-loop request was made
    with pytest.raises(ConfigurationError, match="approval_on_mass_change"):
        approval_applies("sometimes", "manual")


# ------------------------------------------------------------------------------------------ retention


@pytest.mark.parametrize("base", ["local", "memory"])
def test_expired_run_folders_are_deleted_never_the_current_one(tmp_path, monkeypatch, base):
    if base == "memory":
        from airflow.sdk.io import attach
        from fsspec.implementations.memory import MemoryFileSystem

        attach("memory", fs=MemoryFileSystem())
        monkeypatch.setenv("AUDIENCE_SYNC_BASE_PATH", f"memory://retention-{tmp_path.name}")
    runs = storage.run_folder("sync_test", "current").parent
    for name in ("old", "recent", "current"):
        (runs / name / "plan").mkdir(parents=True, exist_ok=True)
        (runs / name / "plan" / "send.parquet").write_bytes(b"personal data")
    now = time.time()
    ages = {"old": now - 40 * 86_400, "recent": now - 2 * 86_400, "current": now - 90 * 86_400}

    def stat_with_age(path):  # object stores give no way to backdate a file: the edge, ages only
        info = dict(path.fs.info(path.path))
        run = next((n for n in ages if f"/{n}/" in str(path) or str(path).endswith(f"/{n}")), None)
        return {**info, "mtime": ages[run]} if run else info

    monkeypatch.setattr(storage.ObjectStoragePath, "stat", stat_with_age)
    counts = DeleteExpiredRunFoldersOperator(task_id="delete_expired_run_folders", retention_days=30).execute(
        context("current")
    )
    assert counts == {"deleted": 1, "kept": 2, "unknown_age": 0}
    assert sorted(p.name for p in runs.iterdir()) == ["current", "recent"]


# --------------------------------------------------------------------------------------- retry policy


@pytest.mark.parametrize(
    "error",
    [
        MassChangeBlocked("guard"),
        SnapshotMoved("moved"),
        CountMismatch("counts differ after the wait"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_stopped_run_fails_at_once_instead_of_retrying(error):
    from airflow.sdk import RetryAction

    from audience_sync.retry_policy import SYNC_RETRY_POLICY

    assert SYNC_RETRY_POLICY.evaluate(error, try_number=1, max_tries=4).action == RetryAction.FAIL


def test_a_failed_export_job_is_retried_with_a_fresh_job():
    from airflow.sdk import RetryAction

    from audience_sync.retry_policy import SYNC_RETRY_POLICY

    decision = SYNC_RETRY_POLICY.evaluate(AepExportFailed("job FAILED"), try_number=1, max_tries=4)
    assert decision.action == RetryAction.RETRY


class PlanPuller(XComRecorder):
    def __init__(self, plan: dict) -> None:
        super().__init__()
        self.plan = plan

    def xcom_pull(self, task_ids, key):
        assert (task_ids, key) == ("plan_sync", PlanSyncOperator.result_key)
        return self.plan


def test_a_write_task_cleared_alone_on_an_old_run_refuses_after_a_newer_commit(tmp_path):
    rows = [{"email": f"p{i}@example.com", "firstname": f"P{i}", "aep_gold": "realized"} for i in range(20)]
    data = mapped(tmp_path, rows)
    old_ctx = run_context("day1", "2026-11-01T02:00:00+00:00")
    old_plan = plan_in(data, old_ctx)
    guard = StalePlanGuard("plan_sync")
    old_ctx["ti"] = PlanPuller(old_plan.to_xcom())
    guard(old_ctx)  # nothing committed since the plan: the write goes ahead
    complete(mapped(tmp_path, rows[:19]), run_context("day2", "2026-11-02T02:00:00+00:00"))
    with pytest.raises(SnapshotMoved, match="committed the snapshot .generation 1. after this run planned"):
        guard(old_ctx)
    # the run that committed may resend its own chunks (its checkpoints skip what was sent)
    own = run_context("day2", "2026-11-02T02:00:00+00:00")
    own["ti"] = PlanPuller(old_plan.to_xcom())
    guard(own)
