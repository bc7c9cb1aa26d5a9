"""
### HubSpot audience sync

Keeps HubSpot contacts in step with Adobe Experience Platform audiences, nightly or on demand.

connect → export audiences → map contacts → plan sync → (dry run?) → approve mass change (only when the
guard stopped a manual run) → ensure audience properties → upsert contacts (mapped over chunks, pool
`hubspot_api`) → build snapshot candidate → validate counts → commit snapshot; the run report runs last
whatever happened (failures, skips, dry runs), then run folders past `retention_days` are deleted.

Scheduled runs take their audiences from `include/sync_config.yaml`; manual runs can override
everything in the trigger form. Every run writes `report.json` and `report.md` under
`<base>/runs/hubspot_audience_sync/<run_id>/` (see README, "The run report").
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.python import BranchPythonOperator
from airflow.sdk import DAG, Asset, Param
from audience_sync.alerts import notify_failure
from audience_sync.config import load_sync_config
from audience_sync.constants import MAX_BATCH
from audience_sync.operators.aep import EnsureHubSpotConnectionOperator, ExportAudiencesOperator
from audience_sync.operators.hubspot import (
    EnsureAudiencePropertiesOperator,
    UpsertContactsOperator,
    ValidateContactCountsOperator,
)
from audience_sync.operators.sync import (
    ApproveMassChangeOperator,
    BuildSnapshotCandidateOperator,
    CommitSnapshotOperator,
    DeleteExpiredRunFoldersOperator,
    MapContactsOperator,
    PlanSyncOperator,
    RunReportOperator,
    StalePlanGuard,
    choose_writes,
    log_failure_summary,
    record_duration,
)
from audience_sync.retry_policy import SYNC_RETRY_POLICY
from audience_sync.storage import run_folder

config = load_sync_config()
# Other DAGs can schedule on this; each event's extra lists the run's mapped Parquet files.
MAPPED_CONTACTS = Asset(name="hubspot_audience_sync_mapped_contacts")

# No silent hang: every task has a bound sized for its work, and the run one under the daily schedule, so a
# stuck run never blocks the next night (max_active_runs=1). The export waits for AEP's job (its own
# job_timeout, 3 h) then downloads; validation polls at most validation_max_wait_seconds; an approval
# request waits APPROVAL_WAIT, then counts as rejected.
EXPORT_JOB = timedelta(hours=3)
APPROVAL_WAIT = timedelta(hours=8)
SHORT, LONG = timedelta(minutes=15), timedelta(hours=1)
VALIDATION = timedelta(seconds=config.validation_max_wait_seconds) + SHORT


with DAG(
    dag_id="hubspot_audience_sync",
    description="Sync AEP audience members to HubSpot contacts, with one status property per audience",
    schedule=config.schedule,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=20),
    # One alert per failed run (not one per failed task or mapped upsert): a DAG-level callback.
    on_failure_callback=notify_failure,
    render_template_as_native_obj=True,
    user_defined_macros={"run_folder": lambda dag_id, run_id: str(run_folder(dag_id, run_id))},
    doc_md=__doc__,
    tags=["hubspot", "aep", "audiences", "sync"],
    default_args={
        "owner": "data-engineering",
        "retries": 3,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "on_failure_callback": log_failure_summary,
        "on_success_callback": record_duration,
        "retry_policy": SYNC_RETRY_POLICY,
        "execution_timeout": SHORT,
    },
    params={
        "audiences": Param(
            config.audiences,
            type="array",
            items={"type": "string"},
            minItems=1,
            description="AEP audience ids or names to sync (scheduled runs use include/sync_config.yaml).",
        ),
        "mapping": Param(
            config.mapping,
            type="string",
            description="Mapping file (XDM path → HubSpot property), relative to the project root.",
        ),
        "dry_run": Param(
            False, type="boolean", description="Map and report what would change; write nothing to HubSpot."
        ),
        "full_refresh": Param(
            False, type="boolean", description="Resend every contact instead of only what changed since the last run."
        ),
        "allow_mass_change": Param(
            False,
            type="boolean",
            description="Let this run through the mass-change guard (many exits, cleared values or rejects) on purpose.",
        ),
        "batch_size": Param(
            config.batch_size,
            type="integer",
            minimum=1,
            maximum=MAX_BATCH,
            description="Contacts per HubSpot batch request.",
        ),
        "export_dataset_id": Param(
            None,
            type=["null", "string"],
            description="AEP dataset the export job writes to; empty = the aep_default connection's extra.",
        ),
        "merge_policy_id": Param(
            None,
            type=["null", "string"],
            description="AEP merge policy of the export; empty = the aep_default connection's extra.",
        ),
        "source_files": Param(
            None,
            type=["null", "string"],
            description="Read a file-based audience export (CSV/Parquet path, glob or object-storage URL) "
            "instead of running an AEP export job.",
        ),
    },
) as dag:
    connect = EnsureHubSpotConnectionOperator(task_id="connect", dry_run="{{ params.dry_run }}")

    export = ExportAudiencesOperator(
        task_id="export_audiences",
        audiences="{{ params.audiences }}",
        export_dataset_id="{{ params.export_dataset_id }}",
        merge_policy_id="{{ params.merge_policy_id }}",
        source_files="{{ params.source_files }}",
        output_dir="{{ run_folder(dag.dag_id, run_id) }}/export",
        job_timeout=EXPORT_JOB,
        execution_timeout=EXPORT_JOB + LONG,
    )

    map_contacts = MapContactsOperator(
        task_id="map_contacts",
        export=export.output,
        mapping_path="{{ params.mapping }}",
        property_prefix=config.property_prefix,
        chunk_rows=config.chunk_rows,
        outlets=[MAPPED_CONTACTS],
        execution_timeout=LONG,
    )

    plan = PlanSyncOperator(
        task_id="plan_sync",
        mapped=map_contacts.output,
        max_exit_fraction=config.max_exit_fraction,
        max_reject_fraction=config.max_reject_fraction,
        full_refresh="{{ params.full_refresh }}",
        dry_run="{{ params.dry_run }}",
        allow_mass_change="{{ params.allow_mass_change }}",
        approval_on_mass_change=config.approval_on_mass_change,
        chunk_rows=config.chunk_rows,
        parallel_tasks=config.hubspot_pool_slots,
        execution_timeout=LONG,
    )

    plan_result = plan.output[PlanSyncOperator.result_key]
    approve = ApproveMassChangeOperator(
        task_id="approve_mass_change", plan=plan_result, response_timeout=APPROVAL_WAIT, execution_timeout=None
    )

    # A write task cleared alone on an old run refuses once a newer run committed (StalePlanGuard).
    stale_plan_guard = StalePlanGuard(plan.task_id)
    ensure_properties = EnsureAudiencePropertiesOperator(
        task_id="ensure_audience_properties",
        pre_execute=stale_plan_guard,
        audiences="{{ ti.xcom_pull(task_ids='%s')['audiences'] }}" % map_contacts.task_id,
        target_properties="{{ ti.xcom_pull(task_ids='%s')['target_properties'] }}" % map_contacts.task_id,
        prefix=config.property_prefix,
    )

    upsert = UpsertContactsOperator.partial(
        task_id="upsert_contacts",
        output_dir="{{ run_folder(dag.dag_id, run_id) }}/upsert",
        batch_size="{{ params.batch_size }}",
        threads=config.upsert_threads,
        # The pool runs at most `slots` upserts at once: each keeps to this share of the rate budget while
        # others send, and takes the whole budget alone (audience_sync.ratelimit). The plan writes one chunk
        # or a multiple of `slots`; one chunk gets the whole share.
        rate_share="{{ 1.0 / ([%d, ti.xcom_pull(task_ids='%s') | length] | min) }}"
        % (config.hubspot_pool_slots, plan.task_id),
        pool=config.hubspot_pool,
        execution_timeout=LONG,
        pre_execute=stale_plan_guard,
    ).expand(input_path=plan.output)

    candidate = BuildSnapshotCandidateOperator(
        task_id="build_snapshot_candidate",
        plan=plan_result,
        mapped=map_contacts.output,
        upsert_results=upsert.output,
        trigger_rule="none_failed_min_one_success",  # also when nothing changed (no upsert chunk)
        execution_timeout=LONG,
    )

    validate = ValidateContactCountsOperator(
        task_id="validate_counts",
        expected="{{ ti.xcom_pull(task_ids='%s')['expected_counts_path'] }}" % candidate.task_id,
        tolerance=config.validation_tolerance,
        max_wait_s=config.validation_max_wait_seconds,
        poll_s=config.validation_poll_seconds,
        execution_timeout=VALIDATION,
    )

    commit = CommitSnapshotOperator(task_id="commit_snapshot", candidate=candidate.output)

    run_report = RunReportOperator(
        task_id="run_report",
        connect_task_id=connect.task_id,
        export_task_id=export.task_id,
        map_task_id=map_contacts.task_id,
        plan_task_id=plan.task_id,
        upsert_task_id=upsert.task_id,
        validate_task_id=validate.task_id,
        # Reports failed and dry runs too; `commit_snapshot`, a leaf beside it, still fails the run then.
        trigger_rule="all_done",
    )

    retention = DeleteExpiredRunFoldersOperator(
        task_id="delete_expired_run_folders", retention_days=config.retention_days, trigger_rule="all_done"
    )

    choose = BranchPythonOperator(
        task_id="dry_run_or_write",
        python_callable=choose_writes,
        op_kwargs={"write_task_id": approve.task_id, "report_task_id": run_report.task_id},
    )

    connect >> export >> map_contacts >> plan >> choose >> [approve, run_report]
    approve >> ensure_properties >> upsert >> candidate >> validate >> [commit, run_report]
    run_report >> retention
