"""The sync DAG under Airflow's real scheduler, not ``dag.test()``.

Scheduler, dag-processor, api-server and triggerer run as their own processes (LocalExecutor on
SQLite, as ``airflow standalone`` runs them) against both sandboxes; the run is triggered, watched
and read back through the REST API only, and HubSpot's state is checked in the sandbox.
"""

from __future__ import annotations

import json
import re

import pytest
from audience_sync.storage import as_path
from e2e_support import DAG_ID, start_world

from scripts.airflow_stack import AirflowStack, print_outcome, run_once, standalone_env

TASKS = {
    "connect",
    "export_audiences",
    "map_contacts",
    "plan_sync",
    "approve_mass_change",
    "dry_run_or_write",
    "ensure_audience_properties",
    "upsert_contacts",
    "build_snapshot_candidate",
    "delete_expired_run_folders",
    "validate_counts",
    "commit_snapshot",
    "run_report",
}


@pytest.mark.timeout(240)
def test_triggered_run_syncs_hubspot_under_the_real_scheduler(tmp_path, monkeypatch):
    world = start_world(tmp_path, monkeypatch, profiles=400)
    stack = AirflowStack(standalone_env(tmp_path / "airflow"), tmp_path / "stack")
    chosen = world.audiences[:2]
    try:
        outcome = run_once(stack, DAG_ID, {"audiences": [a["id"] for a in chosen], "full_refresh": True}, 150)
        api, run = stack.api, outcome["run"]
        print_outcome(api, DAG_ID, outcome)  # shown by pytest when an assertion below fails
        assert run["state"] == "success"
        assert run["conf"]["full_refresh"] is True
        tasks = {(t["task_id"], t["map_index"]): t for t in outcome["tasks"]}
        assert {task_id for task_id, _ in tasks} == TASKS
        assert all(t["state"] == "success" for t in tasks.values())
        assert tasks[("upsert_contacts", 0)]["pool"] == "hubspot_api"

        run_id = run["dag_run_id"]
        assert api.json("GET", f"dags/{DAG_ID}/dagRuns")["total_entries"] == 1  # no scheduled run besides
        export_log = api.task_log(DAG_ID, run_id, "export_audiences")
        assert "Started AEP export job" in export_log
        upsert_log = api.task_log(DAG_ID, run_id, "upsert_contacts", map_index=0)
        done = re.search(r"upsert \S+ done: (\d+) records, (\d+) created, 0 updated, 0 gone in HubSpot, 0 rejected",
                         upsert_log)
        assert done, upsert_log[-2000:]
        assert re.search(r"upsert \S+: \d+/\d+ records \(100%\)", upsert_log)
        # the resources listener (plugins/audience_sync_resources.py) runs in the task's own process
        peak = re.search(r"upsert_contacts: task process peak memory (\d+) MiB", upsert_log)
        assert peak and 50 < int(peak.group(1)) < 1536, upsert_log[-2000:]
        report_log = api.task_log(DAG_ID, run_id, "run_report")
        assert "run report (" in report_log and "## Contacts" in report_log

        report = world.run_folder(run_id) / "report.json"
        assert as_path(api.xcom(DAG_ID, run_id, "run_report")["report"]).path == str(report)
        summary = json.loads(report.read_text())
        assert set(summary["audience_ids"]) == {a["id"] for a in chosen}
        contacts = world.contacts()
        assert len(contacts) == summary["profiles"]["valid"] == summary["contacts"]["created"] > 100
        assert int(done.group(2)) == len(contacts)
        assert f"| created in HubSpot | {len(contacts)} |" in report_log
    finally:
        stack.stop()
        world.stop()
