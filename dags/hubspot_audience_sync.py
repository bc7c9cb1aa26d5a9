"""
### HubSpot audience sync

Keeps HubSpot contacts in step with Adobe Experience Platform audiences, nightly or on demand.

connect → export audiences → map contacts → (dry run?) → ensure audience properties →
upsert contacts (mapped over chunks, pool `hubspot_api`) → finalise snapshot → validate counts → report

Scheduled runs take their audiences from `include/sync_config.yaml`; manual runs can override
everything in the trigger form. Every run writes `report.json` and `report.md` under
`<base>/runs/hubspot_audience_sync/<run_id>/` (see README, "The run report").
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.python import BranchPythonOperator
from airflow.sdk import DAG, Asset, Param
from audience_sync.config import load_sync_config
from audience_sync.operators.aep import EnsureHubSpotConnectionOperator, ExportAudiencesOperator
from audience_sync.operators.hubspot import (
    EnsureAudiencePropertiesOperator,
    UpsertContactsOperator,
    ValidateContactCountsOperator,
)
from audience_sync.operators.sync import (
    FinalizeSnapshotOperator,
    MapContactsOperator,
    RunReportOperator,
    choose_writes,
    log_failure_summary,
    record_duration,
)
from audience_sync.retry_policy import SYNC_RETRY_POLICY
from audience_sync.storage import run_folder

config = load_sync_config()
# Other DAGs can schedule on this; each event's extra lists the run's mapped Parquet files.
MAPPED_CONTACTS = Asset(name="hubspot_audience_sync_mapped_contacts")


with DAG(
    dag_id="hubspot_audience_sync",
    description="Sync AEP audience members to HubSpot contacts, with one status property per audience",
    schedule=config.schedule,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
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
        "batch_size": Param(
            config.batch_size, type="integer", minimum=1, maximum=100, description="Contacts per HubSpot batch request."
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
    )

    map_contacts = MapContactsOperator(
        task_id="map_contacts",
        export=export.output,
        mapping_path="{{ params.mapping }}",
        property_prefix=config.property_prefix,
        full_refresh="{{ params.full_refresh }}",
        dry_run="{{ params.dry_run }}",
        chunk_rows=config.chunk_rows,
        outlets=[MAPPED_CONTACTS],
    )

    choose_writes = BranchPythonOperator(task_id="dry_run_or_write", python_callable=choose_writes)

    ensure_properties = EnsureAudiencePropertiesOperator(
        task_id="ensure_audience_properties",
        audiences=map_contacts.output["audiences"],
        target_properties=map_contacts.output["target_properties"],
        prefix=config.property_prefix,
    )

    upsert = UpsertContactsOperator.partial(
        task_id="upsert_contacts",
        output_dir="{{ run_folder(dag.dag_id, run_id) }}/upsert",
        batch_size="{{ params.batch_size }}",
        threads=config.upsert_threads,
        # The pool runs at most `slots` upserts at once; each takes its share of the rate budget
        # (a run with fewer chunks than slots gives each chunk a larger share).
        rate_share=(
            "{{ 1.0 / ([%d, ti.xcom_pull(task_ids='map_contacts') | length] | min) }}" % config.hubspot_pool_slots
        ),
        pool=config.hubspot_pool,
    ).expand(input_path=map_contacts.output)

    finalize = FinalizeSnapshotOperator(
        task_id="finalize_snapshot",
        plan=map_contacts.output["plan"],
        upsert_results=upsert.output,
        audiences=map_contacts.output["audiences"],
        trigger_rule="none_failed_min_one_success",
    )

    validate = ValidateContactCountsOperator(
        task_id="validate_counts",
        expected="{{ ti.xcom_pull(task_ids='finalize_snapshot')['expected_counts_path'] }}",
        tolerance=config.validation_tolerance,
        max_wait_s=config.validation_max_wait_seconds,
        poll_s=config.validation_poll_seconds,
    )

    run_report = RunReportOperator(
        task_id="run_report",
        export=export.output,
        plan=map_contacts.output["plan"],
        upsert_results=upsert.output,
        finalize=finalize.output,
        validation=validate.output,
        audiences=map_contacts.output["audiences"],
        trigger_rule="none_failed_min_one_success",
    )

    connect >> export >> map_contacts >> choose_writes >> [ensure_properties, run_report]
    ensure_properties >> upsert >> finalize >> validate >> run_report
