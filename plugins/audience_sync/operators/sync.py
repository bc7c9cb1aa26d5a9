"""The sync's own steps between the API operators: map + plan, finalise the snapshot, report.

Each is thin: it resolves run-scoped paths, calls the pure functions in ``mapping``,
``incremental`` and ``report``, and passes only paths and counts through XCom.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from datetime import datetime, timezone
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowSkipException

from audience_sync import incremental, mapping, naming, report, storage
from audience_sync.config import load_sync_config
from audience_sync.templating import rendered_bool

log = logging.getLogger(__name__)

SNAPSHOT_NAME = "snapshot.parquet"


def _run_dir(context: Context) -> storage.ObjectStoragePath:
    return storage.run_folder(context["dag"].dag_id, context["run_id"])


def choose_writes(params: dict, **_: Any) -> list[str]:
    """Branch after mapping: a dry run goes straight to the report; otherwise both paths run."""
    if rendered_bool(params["dry_run"]):
        return ["run_report"]
    return ["ensure_audience_properties", "run_report"]


class MapContactsOperator(BaseOperator):
    """Map the AEP export to HubSpot contacts and plan what this run must send.

    Returns the list of upsert chunk files (the upsert task is mapped over it; empty in a dry run
    or when nothing changed). Other results go to keyed XComs: ``plan`` (counts and paths),
    ``audiences`` (id, name, property) and ``target_properties`` (for the property check).
    """

    template_fields = ("export", "mapping_path", "property_prefix", "full_refresh", "dry_run", "chunk_rows")

    def __init__(
        self,
        *,
        export: Any,
        mapping_path: str,
        property_prefix: str = naming.DEFAULT_PREFIX,
        full_refresh: Any = False,
        dry_run: Any = False,
        chunk_rows: Any = 10_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.export = export
        self.mapping_path = mapping_path
        self.property_prefix = property_prefix
        self.full_refresh = full_refresh
        self.dry_run = dry_run
        self.chunk_rows = chunk_rows

    def execute(self, context: Context) -> list[str]:
        run_dir = _run_dir(context)
        config = load_sync_config()
        contact_mapping = mapping.load_mapping(config.resolve(self.mapping_path))
        audiences = self.export["audiences"]
        properties = naming.audience_property_names(audiences, self.property_prefix)
        snapshot = storage.state_folder(context["dag"].dag_id) / SNAPSHOT_NAME
        previous = str(snapshot) if snapshot.exists() else None

        with tempfile.TemporaryDirectory(prefix="audience-sync-in-") as downloads, storage.staged_folder(
            run_dir
        ) as (work, published):
            started = time.monotonic()
            mapped = mapping.map_export(
                storage.fetched(self.export["paths"], downloads),
                contact_mapping,
                properties,
                out_dir=os.path.join(work, "map"),
                chunk_rows=int(self.chunk_rows),
            )
            map_seconds = time.monotonic() - started
            log.info("mapped %d exported profiles: %s", mapped.counts.get("exported", 0), mapped.counts)

            started = time.monotonic()
            plan = incremental.plan(
                mapped.mapped_paths,
                storage.fetched([previous], downloads)[0] if previous else None,
                list(properties.values()),
                full_refresh=rendered_bool(self.full_refresh),
                out_dir=os.path.join(work, "plan"),
                chunk_rows=int(self.chunk_rows),
                hold_emails=incremental.rejected_emails(mapped.rejects_path),
            )
            plan_seconds = time.monotonic() - started
            mapped_paths = [published(p) for p in mapped.mapped_paths]
            rejects_path = published(mapped.rejects_path)
            send_paths = [published(p) for p in plan.send_paths]
            next_snapshot = published(plan.next_snapshot_path)
        dry_run = rendered_bool(self.dry_run)
        log.info("plan: %s%s", plan.counts, " (dry run: nothing will be sent)" if dry_run else "")
        ti = context["ti"]
        ti.xcom_push(
            key="plan",
            value={
                "map": {"counts": mapped.counts, "duration_s": round(map_seconds, 3), "rejects_path": rejects_path},
                "plan": {
                    "counts": plan.counts,
                    "sent_by_audience": plan.sent_by_audience,
                    "duration_s": round(plan_seconds, 3),
                },
                "send_paths": send_paths,
                "next_snapshot": next_snapshot,
                "previous_snapshot": previous,
                "dry_run": dry_run,
                "full_refresh": plan.full_refresh,
            },
        )
        ti.xcom_push(key="audiences", value=[{**a, "property": properties[a["id"]]} for a in audiences])
        ti.xcom_push(key="target_properties", value=contact_mapping.target_properties)
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = {
                "mapped_paths": mapped_paths,
                "valid_contacts": mapped.counts.get("valid", 0),
            }
        return [] if dry_run else send_paths


class FinalizeSnapshotOperator(BaseOperator):
    """Build the candidate snapshot (minus records HubSpot rejected, so they are retried next run)
    and the counts HubSpot should hold, for validation. Nothing is committed here."""

    template_fields = ("plan", "upsert_results", "audiences")

    def __init__(self, *, plan: Any, upsert_results: Any, audiences: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.upsert_results = upsert_results
        self.audiences = audiences

    def execute(self, context: Context) -> dict[str, Any]:
        if self.plan["dry_run"]:
            raise AirflowSkipException("dry run: nothing was sent, so there is nothing to validate")
        run_dir = _run_dir(context)
        results = _results(self.upsert_results)
        with tempfile.TemporaryDirectory(prefix="audience-sync-in-") as downloads, storage.staged_folder(
            run_dir / "plan"
        ) as (work, published):
            rejected: list[str] = []
            for rejects in storage.fetched([r["rejects_path"] for r in results], downloads):
                rejected += incremental.rejected_emails(rejects, exclude_categories=())
            previous = self.plan["previous_snapshot"]
            local_candidate = incremental.next_snapshot_without(
                storage.fetched([self.plan["next_snapshot"]], downloads)[0],
                rejected,
                previous_snapshot_path=storage.fetched([previous], downloads)[0] if previous else None,
                out_path=os.path.join(work, "snapshot-candidate.parquet"),
            )
            expected = incremental.expected_counts(local_candidate, [a["property"] for a in self.audiences])
            candidate = published(local_candidate)
        expected_path = storage.write_json(expected, run_dir / "expected_counts.json")
        log.info("snapshot candidate keeps %d upsert-rejected record(s) out; expected counts written", len(rejected))
        return {"snapshot_candidate": candidate, "expected_counts_path": expected_path, "upsert_rejected": len(rejected)}


def _results(upsert_results: Any) -> list[dict[str, Any]]:
    """The mapped upsert's results (a lazy sequence; empty when nothing was sent). Indexed rather
    than iterated: iterating probes one offset past the end, which Airflow logs as an error."""
    if not upsert_results:
        return []
    return [r for r in (upsert_results[i] for i in range(len(upsert_results))) if r]


def _sum_upserts(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts summed over the mapped upsert tasks, and their wall time from first start to last end."""
    totals: dict[str, Any] = {"chunks": len(results)}
    for result in results:
        for key, value in result.items():
            if key not in ("started_at", "finished_at") and isinstance(value, int) and not isinstance(value, bool):
                totals[key] = totals.get(key, 0) + value
    if results:
        wall = max(r["finished_at"] for r in results) - min(r["started_at"] for r in results)
        totals["wall_seconds"] = round(wall, 3)
    return totals


class RunReportOperator(BaseOperator):
    """Write ``report.json`` and ``report.md`` in the run folder, print the summary, and, for a
    successful non-dry run, commit the snapshot so the next run is incremental."""

    template_fields = ("export", "plan", "upsert_results", "finalize", "validation", "audiences")

    def __init__(
        self,
        *,
        export: Any,
        plan: Any,
        upsert_results: Any = None,
        finalize: Any = None,
        validation: Any = None,
        audiences: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.export = export
        self.plan = plan
        self.upsert_results = upsert_results
        self.finalize = finalize
        self.validation = validation
        self.audiences = audiences

    def execute(self, context: Context) -> dict[str, Any]:
        run_dir = _run_dir(context)
        durations = _task_durations(context)
        upserts = _sum_upserts(_results(self.upsert_results))
        stages: dict[str, dict[str, Any]] = {
            "connect": {"duration_s": durations.get("connect")},
            "export_audiences": {"duration_s": durations.get("export_audiences")},
            "map": self.plan["map"],
            "plan": self.plan["plan"],
        }
        if not self.plan["dry_run"]:
            stages["ensure_audience_properties"] = {"duration_s": durations.get("ensure_audience_properties")}
            stages["upsert"] = {"counts": upserts, "duration_s": upserts.get("wall_seconds", 0.0)}
            stages["finalize_snapshot"] = {"duration_s": durations.get("finalize_snapshot")}
        if self.validation:
            stages["verify"] = {
                "expected": _nest(self.validation, "expected"),
                "found": _nest(self.validation, "found"),
                "duration_s": durations.get("validate_counts"),
            }
        document = report.build_report(stages)
        document.update(
            dag_id=context["dag"].dag_id,
            run_id=context["run_id"],
            dry_run=self.plan["dry_run"],
            full_refresh=self.plan["full_refresh"],
            audience_ids={a["id"]: a["name"] for a in self.audiences},
            export_job_id=self.export.get("job_id"),
        )
        json_path = storage.write_json(document, run_dir / "report.json")
        markdown = report.render_markdown(document)
        (run_dir / "report.md").write_text(markdown)
        log.info("run report (%s):\n%s", run_dir / "report.md", markdown)
        committed = None
        if not self.plan["dry_run"]:
            snapshot = storage.state_folder(context["dag"].dag_id) / SNAPSHOT_NAME
            storage.write_bytes_atomically(storage.as_path(self.finalize["snapshot_candidate"]).read_bytes(), snapshot)
            committed = str(snapshot)
            log.info("snapshot committed to %s: the next run sends only what changes after this one", snapshot)
        return {"report": json_path, "snapshot": committed}


def _nest(rows: list[dict[str, Any]], field: str) -> dict[str, dict[str, int]]:
    nested: dict[str, dict[str, int]] = {}
    for row in rows:
        nested.setdefault(row["property"], {})[row["status"]] = row[field]
    return nested


def _task_durations(context: Context) -> dict[str, float]:
    """Seconds per task (mapped tasks summed), as recorded by ``record_duration``."""
    ti = context["ti"]
    durations: dict[str, float] = {}
    for task in context["dag"].tasks:
        if task.task_id == context["task"].task_id or getattr(task, "is_mapped", False):
            continue  # this task is still running; mapped tasks report their own wall time
        task_id = task.task_id
        values = ti.xcom_pull(task_ids=task_id, key="duration_seconds", map_indexes=None)
        if values is None:
            continue
        values = [values] if isinstance(values, (int, float)) else [v for v in values if v is not None]
        if values:
            durations[task_id] = round(sum(values), 3)
    return durations


def record_duration(context: Context) -> None:
    """``on_success_callback``: keep each task's wall time in XCom so the report can show it
    (tasks have no metadata-DB access in Airflow 3 to read other task instances)."""
    ti = context["ti"]
    if ti.start_date is not None:
        seconds = (datetime.now(timezone.utc) - ti.start_date).total_seconds()
        ti.xcom_push(key="duration_seconds", value=round(seconds, 3))


def log_failure_summary(context: Context) -> None:
    """``on_failure_callback``: one readable paragraph for whoever reads the task log next."""
    ti = context.get("ti")
    error = context.get("exception")
    run_dir = storage.run_folder(context["dag"].dag_id, context["run_id"])
    log.error(
        "SYNC FAILED: task %s (try %s) of run %s failed: %s. Intermediate files: %s. "
        "The snapshot was not advanced: the next run resends whatever this one did not confirm.",
        getattr(ti, "task_id", "?"),
        getattr(ti, "try_number", "?"),
        context["run_id"],
        f"{type(error).__name__}: {error}" if error else "unknown error",
        run_dir,
    )
