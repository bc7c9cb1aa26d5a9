"""The sync DAG's shape: task roles in order, the snapshot committed only after validation, a report that
runs whatever happened, and operators that name no other task."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TASKS = [
    "connect", "export_audiences", "map_contacts", "plan_sync", "dry_run_or_write", "ensure_audience_properties",
    "upsert_contacts", "build_snapshot_candidate", "validate_counts", "commit_snapshot", "run_report",
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
    assert upstream(dag, "build_snapshot_candidate") >= {"upsert_contacts", "plan_sync"}
    assert upstream(dag, "validate_counts") == {"build_snapshot_candidate"}
    assert upstream(dag, "commit_snapshot") >= {"validate_counts", "build_snapshot_candidate"}
    assert {t.task_id for t in dag.tasks if not t.downstream_task_ids} == {"commit_snapshot", "run_report"}


def test_the_report_runs_whatever_happened_and_the_commit_only_after_success(dag):
    assert dag.get_task("run_report").trigger_rule == "all_done"
    assert upstream(dag, "run_report") == {"dry_run_or_write", "validate_counts"}
    assert dag.get_task("commit_snapshot").trigger_rule == "all_success"
    assert dag.get_task("upsert_contacts").pool == "hubspot_api"


def test_no_operator_names_another_task():
    sources = "\n".join(p.read_text() for p in (ROOT / "plugins" / "audience_sync" / "operators").glob("*.py"))
    named = [t for t in TASKS if re.search(rf"[\"']{t}[\"']", sources)]
    assert named == []
