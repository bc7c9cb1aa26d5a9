"""The sync's own steps between the API operators: map, plan, the snapshot candidate, its commit, the report.

Each is thin: it resolves run-scoped paths, calls the pure functions in ``mapping``, ``incremental`` and
``report``, and passes only the typed records of ``audience_sync.contracts`` through XCom. No operator
knows another task's id: the DAG passes XComArgs or ids.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.task.trigger_rule import TriggerRule
from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowSkipException

from audience_sync import incremental, mapping, naming, report, storage
from audience_sync.alerts import FAILURE_RECORD
from audience_sync.config import (
    APPROVAL_MODES,
    expired_run_folders,
    load_sync_config,
    resolve_within_roots,
)
from audience_sync.contracts import (
    Audience,
    CommitResult,
    ConnectResult,
    ExportResult,
    MapResult,
    PlanResult,
    ReportResult,
    SnapshotCandidate,
    UpsertSummary,
    ValidationResult,
)
from audience_sync.errors import ConfigurationError
from audience_sync.templating import rendered_bool

log = logging.getLogger(__name__)


def _run_dir(context: Context) -> storage.ObjectStoragePath:
    return storage.run_folder(context["dag"].dag_id, context["run_id"])


def choose_writes(params: dict, write_task_id: str, report_task_id: str, **_: Any) -> list[str]:
    """``BranchPythonOperator`` callable after planning: a dry run goes straight to the report;
    otherwise both paths run. The DAG passes both task ids (``op_kwargs``)."""
    if rendered_bool(params["dry_run"]):
        return [report_task_id]
    return [write_task_id, report_task_id]


def approval_applies(mode: str, run_type: Any) -> bool:
    """Whether a run the mass-change guard stopped may wait for a person's approval instead of failing
    (setting ``approval_on_mass_change``): ``manual`` runs only (the default), ``always``, or ``never``."""
    if mode not in APPROVAL_MODES:
        raise ConfigurationError(f"approval_on_mass_change must be one of {', '.join(APPROVAL_MODES)}, not {mode!r}")
    return mode == "always" or (mode == "manual" and str(getattr(run_type, "value", run_type)) == "manual")


def mass_change_summary(plan: dict | None) -> str:
    """The approval request's text (Markdown): the guard's reasons and numbers, and what each answer does."""
    guard = (plan or {}).get("guard") or {}
    reasons = "\n".join(f"- {reason}" for reason in guard.get("blocked_because", [])) or "- (no reason recorded)"
    numbers = "\n".join(
        f"| {name} | {guard[name]} |"
        for name in ("snapshot_contacts", "exiting", "exit_fraction", "losing_values", "max_exit_fraction",
                     "exported", "rejected", "reject_fraction", "max_reject_fraction")
        if name in guard
    )
    return (
        "The mass-change guard stopped this run before any write:\n\n" + reasons
        + "\n\n| number | value |\n| --- | --- |\n" + numbers
        + "\n\n**Approve** sends this plan to HubSpot once; **Reject** (or no answer in time) writes nothing. "
        "Check the export (audiences, merge policy, identity namespace, source files) and the map rejects first."
    )


REGISTRY_NAME = "audience_properties.json"


def read_property_registry(dag_id: str) -> dict[str, str]:
    """{audience id: HubSpot property name} pinned by earlier runs (``incremental.read_registry``), from the
    DAG's state folder on local or object storage; none yet: empty."""
    path = storage.state_folder(dag_id) / REGISTRY_NAME
    if not path.exists():
        return {}
    with tempfile.TemporaryDirectory(prefix="audience-sync-in-") as downloads:
        return incremental.read_registry(storage.fetched([str(path)], downloads)[0])


def record_property_names(dag_id: str, names: dict[str, str]) -> dict[str, str]:
    """Pin this run's audience property names (``naming.merge_registry``: a registered audience keeps its
    first name), so a rename in AEP changes the label only. Called once HubSpot holds the properties."""
    registry = read_property_registry(dag_id)
    merged = naming.merge_registry(registry, names)
    if merged != registry:
        with storage.staged_folder(storage.state_folder(dag_id)) as (work, _):
            incremental.write_registry(os.path.join(work, REGISTRY_NAME), merged)
    return merged


class MapContactsOperator(BaseOperator):
    """Map the AEP export to HubSpot contacts (valid ones in ``map/mapped``, the rest in ``map/rejects``).

    The mapping file must lie inside the sync config's ``allowed_roots``; the config's ``blocked_fields``
    always apply. Audience property names come from the DAG's registry (``read_property_registry``) for
    audiences synced before, from their current names otherwise; statuses are read in each audience's
    own segmentMembership namespace.

    :param export: the export task's :class:`~audience_sync.contracts.ExportResult` (an XComArg).
    :param mapping_path: the mapping file, relative to the project root or absolute, inside the allowed roots.
    :param property_prefix: the audience property name prefix.
    :param chunk_rows: rows per mapped Parquet file.
    :return: a :class:`~audience_sync.contracts.MapResult`, as a dict; each outlet's event names the files.
    """

    template_fields: Sequence[str] = ("export", "mapping_path", "property_prefix")

    def __init__(
        self,
        *,
        export: Any,
        mapping_path: str,
        property_prefix: str = naming.DEFAULT_PREFIX,
        chunk_rows: int = 10_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.export = export
        self.mapping_path = mapping_path
        self.property_prefix = property_prefix
        self.chunk_rows = int(chunk_rows)

    def execute(self, context: Context) -> dict[str, Any]:
        export = ExportResult.from_xcom(self.export)
        config = load_sync_config()
        mapping_file = resolve_within_roots(self.mapping_path, config.roots(str(storage.base_path())))
        plain = [{"id": a.id, "name": a.name} for a in export.audiences]
        registry = read_property_registry(context["dag"].dag_id)
        properties = naming.audience_property_names(plain, self.property_prefix, registry)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="audience-sync-in-") as downloads, storage.staged_folder(
            _run_dir(context)
        ) as (work, published):
            contact_mapping = mapping.load_mapping(storage.fetched([mapping_file], downloads)[0], config.blocked_fields)
            mapped = mapping.map_export(
                storage.fetched(list(export.paths), downloads),
                contact_mapping,
                properties,
                out_dir=os.path.join(work, "map"),
                chunk_rows=self.chunk_rows,
                audience_namespaces={a.id: a.namespace for a in export.audiences if a.namespace},
            )
            mapped_paths = [published(p) for p in mapped.mapped_paths]
            rejects_path = published(mapped.rejects_path)
        log.info("mapped %d exported profiles: %s", mapped.counts.get("exported", 0), mapped.counts)
        result = MapResult(
            mapped_paths=tuple(mapped_paths),
            rejects_path=rejects_path,
            counts=mapped.counts,
            duration_s=round(time.monotonic() - started, 3),
            audiences=tuple(
                Audience(a.id, a.name, a.namespace, properties[a.id]) for a in export.audiences
            ),
            target_properties=tuple(contact_mapping.target_properties),
            keep_on_missing=tuple(contact_mapping.keep_on_missing),
        )
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = {
                "mapped_paths": mapped_paths,
                "valid_contacts": mapped.counts.get("valid", 0),
            }
        return result.to_xcom()

    def get_openlineage_facets_on_complete(self, task_instance) -> Any:
        """OpenLineage: the export read; the mapped contacts and the rejects file written."""
        from audience_sync import lineage  # the provider calls this; the module imports OpenLineage lazily
        return lineage.map_lineage(self.export, task_instance.xcom_pull(task_ids=self.task_id)).operator_lineage()


class PlanSyncOperator(BaseOperator):
    """Diff the mapped contacts with the last committed snapshot (``incremental.plan``): what to send, and
    the snapshot the run would commit, with the version of the snapshot planned on. First it refuses a run
    whose export is older than the snapshot (``incremental.pin_plan_base``: a cleared old run after a newer
    run committed), then the mass-change guard (``incremental.check_mass_change``) stops a plan that looks
    like broken input before any write, or marks it as waiting for a person's approval
    (``approval_on_mass_change``). Writes nothing outside the run folder.

    :param mapped: the map task's :class:`~audience_sync.contracts.MapResult` (an XComArg).
    :param max_exit_fraction: the guard's limit on contacts exiting or losing a value (sync config).
    :param max_reject_fraction: the guard's limit on exported profiles rejected by the mapping (sync config).
    :param full_refresh: resend every contact; templated from the run's params (a bool when rendered natively).
    :param dry_run: plan only (the guard then reports instead of stopping); templated from the run's params.
    :param allow_mass_change: let one run through the guard on purpose; templated from the run's params.
    :param approval_on_mass_change: ``manual`` (default), ``always`` or ``never``: which runs the guard
        stopped wait for an approval (``guard["awaiting_approval"]``) instead of failing.
    :param chunk_rows: the most rows per send chunk (one upsert task each).
    :param parallel_tasks: upsert tasks that run at once (the HubSpot pool's slots): chunks come in full waves
        of equal size (:func:`~audience_sync.incremental.balanced_chunk_rows`).
    :return: the chunks to upsert (empty in a dry run): the mapped upsert expands over them, and Airflow
        maps only over a return value. The :class:`~audience_sync.contracts.PlanResult` goes to the XCom
        key ``plan`` (``result_key``).
    """

    template_fields: Sequence[str] = ("mapped", "full_refresh", "dry_run", "allow_mass_change")
    result_key = "plan"

    def __init__(
        self,
        *,
        mapped: Any,
        max_exit_fraction: float,
        max_reject_fraction: float,
        full_refresh: Any = False,
        dry_run: Any = False,
        allow_mass_change: Any = False,
        approval_on_mass_change: str = "never",
        chunk_rows: int = 10_000,
        parallel_tasks: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.mapped = mapped
        self.max_exit_fraction = float(max_exit_fraction)
        self.max_reject_fraction = float(max_reject_fraction)
        self.full_refresh = full_refresh
        self.dry_run = dry_run
        self.allow_mass_change = allow_mass_change
        self.approval_on_mass_change = approval_on_mass_change
        self.chunk_rows = int(chunk_rows)
        self.parallel_tasks = int(parallel_tasks)

    def execute(self, context: Context) -> list[str]:
        mapped = MapResult.from_xcom(self.mapped)
        dry_run, full_refresh = rendered_bool(self.dry_run), rendered_bool(self.full_refresh)
        allow = dry_run or rendered_bool(self.allow_mass_change)
        dag_run = context.get("dag_run")
        may_wait = approval_applies(self.approval_on_mass_change, getattr(dag_run, "run_type", None))
        snapshot = storage.snapshot_path(context["dag"].dag_id)
        previous = str(snapshot) if snapshot.exists() else None
        run_dir = _run_dir(context)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="audience-sync-in-") as downloads, storage.staged_folder(
            run_dir
        ) as (work, published):
            local_mapped = storage.fetched(list(mapped.mapped_paths), downloads)
            local_rejects, *local_previous = storage.fetched(
                [mapped.rejects_path, *([previous] if previous else [])], downloads
            )
            local_snapshot = local_previous[0] if local_previous else os.path.join(downloads, snapshot.name)
            version_record = snapshot.name + incremental.VERSION_SUFFIX
            storage.download_to(snapshot.parent / version_record, local_snapshot + incremental.VERSION_SUFFIX)
            pin = os.path.join(work, "plan", PLAN_BASE)
            storage.download_to(run_dir / "plan" / PLAN_BASE, pin)
            base = incremental.snapshot_version(local_snapshot)
            incremental.pin_plan_base(pin, base, local_snapshot, context["run_id"], _run_after(context))
            plan = incremental.plan(
                local_mapped,
                local_previous[0] if local_previous else None,
                mapped.audience_properties,
                full_refresh=full_refresh,
                out_dir=os.path.join(work, "plan"),
                chunk_rows=self.chunk_rows,
                hold_emails=incremental.rejected_emails(local_rejects),
                keep_on_missing=list(mapped.keep_on_missing),
                parallel_tasks=self.parallel_tasks,
            )
            guard = incremental.check_mass_change(
                plan.counts, mapped.counts, self.max_exit_fraction, self.max_reject_fraction, allow=allow or may_wait
            )
            awaiting = bool(guard["blocked_because"]) and not allow
            guard = {**guard, "allowed": guard["allowed"] and not awaiting, "awaiting_approval": awaiting}
            send_paths = tuple(published(p) for p in plan.send_paths)
            next_snapshot = published(plan.next_snapshot_path)
        log.info("plan: %s%s", plan.counts, " (dry run: nothing will be sent)" if dry_run else "")
        result = PlanResult(
            send_paths=send_paths,
            next_snapshot_path=next_snapshot,
            previous_snapshot_path=previous,
            counts=plan.counts,
            sent_by_audience=plan.sent_by_audience,
            duration_s=round(time.monotonic() - started, 3),
            dry_run=dry_run,
            full_refresh=plan.full_refresh,
            snapshot_version=plan.snapshot_version,
            guard=guard,
        )
        if guard["blocked_because"]:
            state = "dry run" if dry_run else "waiting for approval" if awaiting else "allowed"
            log.warning("mass-change guard (%s): %s", state, guard["blocked_because"])
        context["ti"].xcom_push(key=self.result_key, value=result.to_xcom())
        return [] if dry_run else list(send_paths)

    def get_openlineage_facets_on_complete(self, task_instance) -> Any:
        """OpenLineage: the mapped contacts, map rejects and last snapshot read; the send chunks and next
        snapshot written."""
        from audience_sync import lineage  # the provider calls this; the module imports OpenLineage lazily
        return lineage.plan_lineage(
            self.mapped, task_instance.xcom_pull(task_ids=self.task_id, key=self.result_key)
        ).operator_lineage()


class StalePlanGuard:
    """``pre_execute`` of the write tasks (``ensure_audience_properties``, each ``upsert_contacts``): a write
    task cleared alone on an old run, after a newer run committed, would send that old plan. Refused
    before any request when the snapshot's version record (written by every commit) names another
    version than the one the plan was built on, committed by another run. Reads only the small sidecar.

    :param plan_task_id: the plan task, whose :class:`~audience_sync.contracts.PlanResult` (key ``plan``)
        holds the version planned on.
    """

    def __init__(self, plan_task_id: str) -> None:
        self.plan_task_id = plan_task_id

    def __call__(self, context: Context) -> None:
        plan = context["ti"].xcom_pull(task_ids=self.plan_task_id, key=PlanSyncOperator.result_key)
        if not plan:
            return
        snapshot = storage.snapshot_path(context["dag"].dag_id)
        sidecar = snapshot.parent / (snapshot.name + incremental.VERSION_SUFFIX)
        record = storage.read_json(sidecar) if sidecar.exists() else {"sha256": ""}
        planned = PlanResult.from_xcom(plan).snapshot_version
        if record.get("sha256", "") != planned and record.get("run_id") != context["run_id"]:
            raise incremental.SnapshotMoved(
                f"run {record.get('run_id')} committed the snapshot (generation {record.get('generation')}) after this "
                "run planned: sending this run's plan now would undo newer changes, so nothing was written. Trigger a "
                "new run instead of clearing this one."
            )


PLAN_BASE = "plan-base.json"  # in the run's plan folder: the snapshot version the run first planned on


def _run_after(context: Context) -> str | None:
    """The run's ``run_after`` (when it was due), ISO: orders runs for the replay check."""
    run_after = getattr(context.get("dag_run"), "run_after", None)
    return run_after.isoformat() if run_after else None


class ApproveMassChangeOperator(ApprovalOperator):
    """The approval gate before the first write: when the mass-change guard stopped the plan and the run
    may wait (``PlanResult.guard["awaiting_approval"]``), asks a person through Airflow's human-in-the-loop
    ``ApprovalOperator`` with the guard's numbers (the run's "Required actions" in the UI); otherwise
    passes at once. Approve: the plan is sent; Reject, or no answer within ``response_timeout``: every
    write task is skipped and the snapshot does not move.

    :param plan: the plan task's :class:`~audience_sync.contracts.PlanResult` (an XComArg).
    """

    template_fields: Sequence[str] = (*ApprovalOperator.template_fields, "plan")

    def __init__(self, *, plan: Any, **kwargs: Any) -> None:
        kwargs.setdefault("subject", "Approve a mass change to HubSpot?")
        super().__init__(defaults=ApprovalOperator.REJECT, **kwargs)
        self.plan = plan

    def execute(self, context: Context) -> Any:
        plan = PlanResult.from_xcom(self.plan)
        if not plan.guard.get("awaiting_approval"):
            self.log.info("the mass-change guard did not stop this plan: no approval needed")
            return None
        self.body = mass_change_summary(plan.to_xcom())
        self.log.info("waiting for a person's approval of this plan:\n%s", self.body)
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Approve: the writes go ahead. Reject (or the timeout's default): every task after this one is
        skipped, not only the next (the snapshot candidate would otherwise be built from the unsent plan),
        except those that run whatever happened (the report, retention)."""
        answer = HITLOperator.execute_complete(self, context, event)
        approved = answer["chosen_options"] == [self.APPROVE]
        self.hitl_summary_extra["approved"] = approved
        if not approved:
            later = [t for t in self.get_flat_relatives(upstream=False) if t.trigger_rule != TriggerRule.ALL_DONE]
            self.log.info("rejected: nothing is written; skipping %d task(s)", len(later))
            self.skip(ti=context["ti"], tasks=later)
        return answer


def _summaries(upsert_results: Any) -> list[UpsertSummary]:
    """The mapped upsert's summaries (a lazy sequence, a list, a single dict or None). Indexed rather than
    iterated: iterating a lazy sequence probes one offset past the end, which Airflow logs as an error."""
    if not upsert_results:
        return []
    if isinstance(upsert_results, dict):
        upsert_results = [upsert_results]
    values = (upsert_results[i] for i in range(len(upsert_results)))
    return [UpsertSummary.from_xcom(r) for r in values if r]


class BuildSnapshotCandidateOperator(BaseOperator):
    """Build the snapshot candidate (``incremental.build_candidate``: the plan's next snapshot, where records
    HubSpot rejected get their previous row back, so they are retried next run, and contacts HubSpot no
    longer has leave) and the counts HubSpot should hold (``expected_counts.json``). Commits nothing.

    :param plan: the plan task's :class:`~audience_sync.contracts.PlanResult` (an XComArg).
    :param mapped: the map task's :class:`~audience_sync.contracts.MapResult` (for the audience properties).
    :param upsert_results: the mapped upsert's summaries (an XComArg; empty when nothing was sent).
    :return: a :class:`~audience_sync.contracts.SnapshotCandidate`, as a dict.
    """

    template_fields: Sequence[str] = ("plan", "mapped", "upsert_results")

    def __init__(self, *, plan: Any, mapped: Any, upsert_results: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.mapped = mapped
        self.upsert_results = upsert_results

    def execute(self, context: Context) -> dict[str, Any]:
        plan = PlanResult.from_xcom(self.plan)
        if plan.dry_run:
            raise AirflowSkipException("dry run: nothing was sent, so there is no snapshot to build")
        mapped = MapResult.from_xcom(self.mapped)
        run_dir = _run_dir(context)
        summaries = _summaries(self.upsert_results)
        with tempfile.TemporaryDirectory(prefix="audience-sync-in-") as downloads, storage.staged_folder(
            run_dir / "plan"
        ) as (work, published):
            rejected: list[str] = []
            for rejects in storage.fetched([s.rejects_path for s in summaries], downloads):
                rejected += incremental.rejected_emails(rejects, exclude_categories=())
            gone: list[str] = []
            for gone_file in storage.fetched([s.gone_path for s in summaries if s.gone_path], downloads):
                gone += storage.read_table(gone_file, columns=["email"]).column("email").drop_null().to_pylist()
            previous = plan.previous_snapshot_path
            local_candidate, kept_out = incremental.build_candidate(
                storage.fetched([plan.next_snapshot_path], downloads)[0],
                rejected,
                gone,
                storage.fetched([previous], downloads)[0] if previous else None,
                plan.full_refresh,
                out_path=os.path.join(work, "snapshot-candidate.parquet"),
            )
            expected = incremental.expected_counts(local_candidate, mapped.audience_properties)
            candidate = published(local_candidate)
        expected_path = storage.write_json(expected, run_dir / "expected_counts.json")
        log.info("snapshot candidate: %s; expected counts written", kept_out)
        return SnapshotCandidate(
            candidate, expected_path, kept_out["upsert_rejected"], kept_out["gone_in_hubspot"], plan.snapshot_version
        ).to_xcom()

    def get_openlineage_facets_on_complete(self, task_instance) -> Any:
        """OpenLineage: the plan's snapshots and the upsert rejects read; the candidate and expected counts written."""
        from audience_sync import lineage  # the provider calls this; the module imports OpenLineage lazily
        return lineage.candidate_lineage(
            self.plan, _summaries(self.upsert_results), task_instance.xcom_pull(task_ids=self.task_id)
        ).operator_lineage()


class CommitSnapshotOperator(BaseOperator):
    """Commit the validated snapshot candidate: the next run diffs against it. The only writer of the
    snapshot; it runs after ``validate_counts``, so a failed or unconfirmed run never advances it, and
    ``incremental.commit_snapshot`` refuses (``SnapshotMoved``) when the snapshot is no longer the version
    the run planned on. Works on a local copy of the state folder when it lives on object storage.

    :param candidate: the :class:`~audience_sync.contracts.SnapshotCandidate` (an XComArg).
    :return: a :class:`~audience_sync.contracts.CommitResult`, as a dict.
    """

    template_fields: Sequence[str] = ("candidate",)

    def __init__(self, *, candidate: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.candidate = candidate

    def execute(self, context: Context) -> dict[str, Any]:
        candidate = SnapshotCandidate.from_xcom(self.candidate)
        snapshot = storage.snapshot_path(context["dag"].dag_id)
        with tempfile.TemporaryDirectory(prefix="audience-sync-in-") as downloads, storage.staged_folder(
            snapshot.parent
        ) as (work, _):
            for name in (snapshot.name, snapshot.name + incremental.VERSION_SUFFIX):
                storage.download_to(snapshot.parent / name, os.path.join(work, name))
            version = incremental.commit_snapshot(
                storage.fetched([candidate.snapshot_candidate_path], downloads)[0],
                os.path.join(work, snapshot.name),
                candidate.planned_snapshot_version,
                context["run_id"],
                _run_after(context),
            )
        log.info("snapshot committed to %s (generation %s): the next run sends only what changes after this one",
                 snapshot, version.get("generation"))
        return CommitResult(str(snapshot), version).to_xcom()

    def get_openlineage_facets_on_complete(self, task_instance) -> Any:
        """OpenLineage: the snapshot candidate read, the snapshot written."""
        from audience_sync import lineage  # the provider calls this; the module imports OpenLineage lazily
        return lineage.commit_lineage(self.candidate, task_instance.xcom_pull(task_ids=self.task_id)).operator_lineage()


def _modified(info: dict) -> float | None:
    """A file's last-modified time (epoch seconds) from an fsspec ``info``: filesystems name it differently
    (local ``mtime``, S3 ``LastModified``, GCS ``updated``, Azure ``last_modified``, memory ``created``)."""
    for key in ("mtime", "LastModified", "updated", "last_modified", "created"):
        value = info.get(key)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, str):
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None


def _last_modified(folder: storage.ObjectStoragePath) -> float | None:
    """When anything in a run folder last changed: its newest file (object stores have no folder times)."""
    times = [_modified(path.stat()) for path in folder.rglob("*") if path.is_file()]
    times = [t for t in times if t is not None]
    return max(times) if times else _modified(folder.stat())


class DeleteExpiredRunFoldersOperator(BaseOperator):
    """Delete this DAG's run folders (they hold personal data) whose newest file is older than
    ``retention_days`` (``config.expired_run_folders``), on local or object storage. Never the current
    run's folder; logs counts only.

    :param retention_days: the setting ``retention_days``.
    :return: ``{"deleted": n, "kept": n, "unknown_age": n}``.
    """

    def __init__(self, *, retention_days: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.retention_days = int(retention_days)

    def execute(self, context: Context) -> dict[str, int]:
        current = _run_dir(context)
        runs = current.parent
        aged, unknown = [], 0
        for folder in runs.iterdir():
            if not folder.is_dir() or folder.name == current.name:
                continue
            modified = _last_modified(folder)
            if modified is None:
                unknown += 1
            else:
                aged.append((folder.name, modified))
        expired = expired_run_folders(aged, time.time(), self.retention_days)
        for name in expired:
            (runs / name).rmdir(recursive=True)
        counts = {"deleted": len(expired), "kept": len(aged) - len(expired) + 1, "unknown_age": unknown}
        log.info("run folders older than %d days deleted: %s", self.retention_days, counts)
        return counts


class RunReportOperator(BaseOperator):
    """Write ``report.json`` and ``report.md`` in the run folder and print the summary. Reads the other tasks'
    results by the ids the DAG gives; a result that is missing (a failed or skipped task) leaves its part
    of the report empty, so the report also describes failed and dry runs.

    :param connect_task_id: the Flow Service connection task (:class:`~audience_sync.contracts.ConnectResult`).
    :param export_task_id: the export task (:class:`~audience_sync.contracts.ExportResult`).
    :param map_task_id: the map task (:class:`~audience_sync.contracts.MapResult`).
    :param plan_task_id: the plan task (:class:`~audience_sync.contracts.PlanResult`, key ``plan``).
    :param upsert_task_id: the mapped upsert task (:class:`~audience_sync.contracts.UpsertSummary` each).
    :param validate_task_id: the count validation task (:class:`~audience_sync.contracts.ValidationResult`).
    :return: a :class:`~audience_sync.contracts.ReportResult`, as a dict.
    """

    template_fields: Sequence[str] = (
        "connect_task_id", "export_task_id", "map_task_id", "plan_task_id", "upsert_task_id", "validate_task_id",
    )

    def __init__(
        self,
        *,
        connect_task_id: str,
        export_task_id: str,
        map_task_id: str,
        plan_task_id: str,
        upsert_task_id: str,
        validate_task_id: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.connect_task_id = connect_task_id
        self.export_task_id = export_task_id
        self.map_task_id = map_task_id
        self.plan_task_id = plan_task_id
        self.upsert_task_id = upsert_task_id
        self.validate_task_id = validate_task_id

    def execute(self, context: Context) -> dict[str, Any]:
        ti = context["ti"]

        def pulled(task_id: str, contract: Any, key: str = "return_value") -> Any:
            value = ti.xcom_pull(task_ids=task_id, key=key, default=None)
            return contract.from_xcom(value) if value else None

        connect = pulled(self.connect_task_id, ConnectResult)
        export = pulled(self.export_task_id, ExportResult)
        mapped = pulled(self.map_task_id, MapResult)
        plan = pulled(self.plan_task_id, PlanResult, PlanSyncOperator.result_key)
        validation = pulled(self.validate_task_id, ValidationResult)
        upserts = _summaries(ti.xcom_pull(task_ids=self.upsert_task_id, default=None))
        durations = _task_durations(context)

        stages: dict[str, dict[str, Any]] = {}
        covered = {self.map_task_id, self.plan_task_id, self.upsert_task_id, self.validate_task_id}
        for task_id, seconds in durations.items():  # steps without counts of their own, in DAG order
            if task_id not in covered:
                stages[task_id] = {"duration_s": seconds}
        if mapped:
            stages["map"] = {"counts": mapped.counts, "duration_s": mapped.duration_s}
        if plan:
            stages["plan"] = {
                "counts": plan.counts, "sent_by_audience": plan.sent_by_audience, "duration_s": plan.duration_s,
            }
        if upserts:
            totals = UpsertSummary.total(upserts)
            stages["upsert"] = {
                "counts": totals,
                "duration_s": totals.get("wall_seconds", 0.0),
                "chunks": [{"started_at": s.started_at, "finished_at": s.finished_at, "sent": s.sent} for s in upserts],
            }
        if validation:
            stages["verify"] = {
                "expected": validation.table("expected"),
                "found": validation.table("found"),
                "duration_s": durations.get(self.validate_task_id),
            }
        params = context["params"]  # the mode when the plan did not run (a run that failed before it)
        document = report.build_report(
            stages,
            dry_run=plan.dry_run if plan else rendered_bool(params.get("dry_run", False)),
            full_refresh=plan.full_refresh if plan else rendered_bool(params.get("full_refresh", False)),
        )
        document.update(
            dag_id=context["dag"].dag_id,
            run_id=context["run_id"],
            mass_change_guard=plan.guard if plan else None,  # the guard's numbers, dry runs included
            audience_ids={a.id: a.name for a in export.audiences} if export else {},
            export_job_id=export.job_id if export else None,
            flow_service_connection=report.connection_summary(connect.to_xcom()) if connect else None,
        )
        run_dir = _run_dir(context)
        json_path = storage.write_json(document, run_dir / "report.json")
        markdown = report.render_markdown(document)
        md_path = storage.write_bytes_atomically(markdown.encode(), run_dir / "report.md")
        kind = "DRY RUN report (nothing was sent to HubSpot)" if document["dry_run"] else "run report"
        log.info("%s (%s):\n%s", kind, md_path, markdown)
        return ReportResult(json_path, md_path).to_xcom()


def _task_durations(context: Context) -> dict[str, float]:
    """Seconds per task, as recorded by ``record_duration``; mapped tasks report their own wall time."""
    ti = context["ti"]
    durations: dict[str, float] = {}
    for task in context["dag"].tasks:
        if task.task_id == context["task"].task_id or getattr(task, "is_mapped", False):
            continue
        values = ti.xcom_pull(task_ids=task.task_id, key="duration_seconds", map_indexes=None)
        if values is None:
            continue
        values = [values] if isinstance(values, (int, float)) else [v for v in values if v is not None]
        if values:
            durations[task.task_id] = round(sum(values), 3)
    return durations


def record_duration(context: Context) -> None:
    """``on_success_callback``: keep each task's wall time in XCom so the report can show it
    (tasks have no metadata-DB access in Airflow 3 to read other task instances)."""
    ti = context["ti"]
    if ti.start_date is not None:
        seconds = (datetime.now(timezone.utc) - ti.start_date).total_seconds()
        ti.xcom_push(key="duration_seconds", value=round(seconds, 3))


def log_failure_summary(context: Context) -> None:
    """``on_failure_callback`` of each task: one readable paragraph for whoever reads the task log next,
    and the run's first failure recorded in the run folder (``FAILURE_RECORD``), which the DAG-level alert
    (one per run, whose context carries no exception) reports."""
    ti = context.get("ti")
    error = context.get("exception")
    run_dir = storage.run_folder(context["dag"].dag_id, context["run_id"])
    if not (run_dir / FAILURE_RECORD).exists():
        storage.write_json(
            {
                "task_id": getattr(ti, "task_id", None),
                "try_number": getattr(ti, "try_number", None),
                "error_type": type(error).__name__ if error else None,
                "error": str(error) if error else None,
            },
            run_dir / FAILURE_RECORD,
        )
    log.error(
        "SYNC FAILED: task %s (try %s) of run %s failed: %s. Intermediate files: %s. "
        "The snapshot was not advanced: the next run resends whatever this one did not confirm.",
        getattr(ti, "task_id", "?"),
        getattr(ti, "try_number", "?"),
        context["run_id"],
        f"{type(error).__name__}: {error}" if error else "unknown error",
        run_dir,
    )
