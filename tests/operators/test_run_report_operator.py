"""run_report on the typed task results: report.json and report.md in the run folder, the log line. The task
context is the only stand-in (ids, params and an XCom store): the operator reads nothing else from Airflow."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from audience_sync import storage
from audience_sync.contracts import Audience, MapResult, PlanResult, UpsertSummary
from audience_sync.operators.sync import PlanSyncOperator, RunReportOperator
from audience_sync.report import DRY_RUN_NOTICE

IDS = {
    "connect_task_id": "connect",
    "export_task_id": "export",
    "map_task_id": "map",
    "plan_task_id": "plan",
    "upsert_task_id": "upsert",
    "validate_task_id": "validate",
}


class XComStore:
    def __init__(self, values: dict[tuple[str, str], object]) -> None:
        self.values = values

    def xcom_pull(self, task_ids, key="return_value", default=None, map_indexes=None):
        return self.values.get((task_ids, key), default)


def run_report(xcoms: dict, params: dict) -> tuple[dict, str]:
    task = SimpleNamespace(task_id="run_report", is_mapped=False)
    context = {
        "dag": SimpleNamespace(dag_id="sync_test", tasks=[task]),
        "task": task,
        "run_id": "manual__1",
        "params": params,
        "ti": XComStore(xcoms),
    }
    result = RunReportOperator(task_id="run_report", **IDS).execute(context)
    return storage.read_json(result["report"]), storage.as_path(result["report_md"]).read_text()


MAPPED = MapResult(
    ("m.parquet",), "rejects.parquet",
    {"exported": 10, "valid": 7, "rejected": 3, "rejected_by_category": {"DUPLICATE_EMAIL": 2, "INVALID_EMAIL": 1}},
    0.5, (Audience("s1", "Gold", None, "aep_gold"),), ("email",),
).to_xcom()


def plan(dry_run: bool, full_refresh: bool) -> dict:
    counts = {"new": 0, "changed": 1, "exited": 1, "unchanged": 5, "held": 0, "to_send": 7 if full_refresh else 2,
              "losing_values": 0}
    return PlanResult((), "next.parquet", None, counts, {"aep_gold": {"realized": 6, "exited": 1}}, 0.2, dry_run,
                      full_refresh).to_xcom()


def chunk(started: float, sent: int, rejected_by_category: dict) -> dict:
    rejected = sum(rejected_by_category.values())
    return UpsertSummary(
        records=sent, sent=sent, created=0, updated=sent - rejected, rejected=rejected, requests=1,
        results_path="unused", rejects_path="no-such-file.parquet", started_at=started, finished_at=started + 2,
        gone=1, rejected_by_category=rejected_by_category,
    ).to_xcom()


def test_a_full_refresh_dry_run_says_so_in_the_report_and_the_log(caplog):
    xcoms = {("map", "return_value"): MAPPED, ("plan", PlanSyncOperator.result_key): plan(True, True)}
    with caplog.at_level(logging.INFO, logger="audience_sync.operators.sync"):
        report, markdown = run_report(xcoms, {"dry_run": True, "full_refresh": True})
    assert report["dry_run"] is True and report["full_refresh"] is True
    assert report["profiles"] == {"exported": 10, "merged": 0, "deduplicated": 2, "rejected": 1, "valid": 7}
    assert (report["contacts"]["to_send"], report["contacts"]["resent"], report["contacts"]["unchanged"]) == (7, 5, 0)
    assert markdown.startswith(f"# AEP → HubSpot audience sync\n\n{DRY_RUN_NOTICE}\n")
    assert any(r.getMessage().startswith("DRY RUN report (nothing was sent to HubSpot)") for r in caplog.records)


def test_a_written_run_carries_each_upsert_task_s_timing_and_rejects(caplog):
    xcoms = {
        ("map", "return_value"): MAPPED,
        ("plan", PlanSyncOperator.result_key): plan(False, False),
        ("upsert", "return_value"): [chunk(200.0, 1, {}), chunk(100.0, 1, {"INVALID_OPTION": 1})],
    }
    with caplog.at_level(logging.INFO, logger="audience_sync.operators.sync"):
        report, markdown = run_report(xcoms, {"dry_run": False, "full_refresh": False})
    assert report["upsert_chunks"] == [
        {"started_at": 100.0, "finished_at": 102.0, "sent": 1},
        {"started_at": 200.0, "finished_at": 202.0, "sent": 1},
    ]
    # HubSpot's rejects come from the summaries themselves (the rejects file named there does not exist)
    assert {"stage": "upsert", "category": "INVALID_OPTION", "count": 1} in report["rejected_by_reason"]
    assert (report["contacts"]["rejected"], report["contacts"]["gone"], report["contacts"]["unchanged"]) == (1, 2, 5)
    assert "DRY RUN" not in markdown and "| created in HubSpot | 0 |" in markdown
    assert any(r.getMessage().startswith("run report (") for r in caplog.records)
