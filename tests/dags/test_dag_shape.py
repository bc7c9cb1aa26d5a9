"""The sync DAG's shape: task roles in order, the snapshot committed only after validation, a report that
runs whatever happened, and operators that name no other task."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TASKS = [
    "connect", "export_audiences", "map_contacts", "plan_sync", "dry_run_or_write", "approve_mass_change",
    "ensure_audience_properties", "upsert_contacts", "build_snapshot_candidate", "validate_counts", "commit_snapshot",
    "run_report", "delete_expired_run_folders",
]


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "hubspot_audience_sync.py"))
    assert bag.import_errors == {}
    return bag.dags["hubspot_audience_sync"]


def upstream(dag, task_id: str) -> set[str]:
    return set(dag.get_task(task_id).upstream_task_ids)


def test_the_tasks_and_their_order(dag):
    assert {t.task_id for t in dag.tasks} == set(TASKS)
    assert upstream(dag, "plan_sync") >= {"map_contacts"}
    assert upstream(dag, "dry_run_or_write") == {"plan_sync"}
    assert upstream(dag, "approve_mass_change") == {"dry_run_or_write", "plan_sync"}
    assert upstream(dag, "ensure_audience_properties") == {"approve_mass_change"}
    assert upstream(dag, "build_snapshot_candidate") >= {"upsert_contacts", "plan_sync"}
    assert upstream(dag, "validate_counts") == {"build_snapshot_candidate"}
    assert upstream(dag, "commit_snapshot") >= {"validate_counts", "build_snapshot_candidate"}
    leaves = {t.task_id for t in dag.tasks if not t.downstream_task_ids}
    assert leaves == {"commit_snapshot", "delete_expired_run_folders"}


def test_the_report_runs_whatever_happened_and_the_commit_only_after_success(dag):
    assert dag.get_task("run_report").trigger_rule == "all_done"
    assert upstream(dag, "run_report") == {"dry_run_or_write", "validate_counts"}
    assert dag.get_task("commit_snapshot").trigger_rule == "all_success"
    assert dag.get_task("upsert_contacts").pool == "hubspot_api"


def test_no_operator_names_another_task():
    sources = "\n".join(p.read_text() for p in (ROOT / "plugins" / "audience_sync" / "operators").glob("*.py"))
    named = [t for t in TASKS if re.search(rf"[\"']{t}[\"']", sources)]
    assert named == []


def test_nothing_hangs_silently(dag):
    """Every task has a bound (the approval waits through its response_timeout instead), and so has the run."""
    from datetime import timedelta

    unbounded = [t.task_id for t in dag.tasks if t.execution_timeout is None and t.task_id != "approve_mass_change"]
    assert unbounded == []
    assert dag.get_task("approve_mass_change").response_timeout is not None
    assert dag.get_task("export_audiences").execution_timeout > dag.get_task("export_audiences").job_timeout
    validate = dag.get_task("validate_counts")
    assert validate.execution_timeout > timedelta(seconds=validate.max_wait_s)
    longest = max(t.execution_timeout for t in dag.tasks if t.execution_timeout)
    assert longest < dag.dagrun_timeout < timedelta(days=1)  # under the nightly schedule


def test_one_alert_per_failed_run_and_retention_last(dag):
    from audience_sync.alerts import notify_failure

    assert dag.on_failure_callback is notify_failure  # DAG level: once per run, not per failed (mapped) task
    assert all(notify_failure not in (t.on_failure_callback or []) for t in dag.tasks)
    assert dag.get_task("delete_expired_run_folders").trigger_rule == "all_done"
