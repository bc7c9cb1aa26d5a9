"""
### HubSpot → AEP ingest

Brings HubSpot CRM tables into Adobe Experience Platform through the Flow Service HubSpot source:

connect (the base connection, as in `hubspot_audience_sync`) → explore (tables, previews to the run folder)
→ ensure_dataflows (source connection, dataset, target connection, mapping set, dataflow; each found before
anything is created) → flow_runs (wait or trigger, defer while runs are in progress, report records read,
ingested and failed per run).

Settings: `include/ingest_config.yaml` and `include/mappings/hubspot_to_xdm.yaml` (see docs/ingest.md).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG
from audience_sync.ingest import load_ingest_config
from audience_sync.operators.aep import EnsureHubSpotConnectionOperator
from audience_sync.operators.ingest import EnsureDataflowsOperator, ExploreHubSpotOperator, FlowRunsOperator
from audience_sync.retry_policy import SYNC_RETRY_POLICY
from audience_sync.storage import run_folder

config = load_ingest_config()
CONNECTION_ID = "{{ ti.xcom_pull(task_ids='connect')['connection_id'] }}"  # connect's result (SHARED_CONTRACTS 4)

with DAG(
    dag_id="hubspot_to_aep_ingest",
    description="Create and monitor the Flow Service dataflows that bring HubSpot CRM tables into AEP",
    schedule=config.schedule,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    user_defined_macros={"run_folder": lambda dag_id, run_id: str(run_folder(dag_id, run_id))},
    doc_md=__doc__,
    tags=["hubspot", "aep", "flow-service", "ingest"],
    default_args={
        "owner": "data-engineering",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "retry_policy": SYNC_RETRY_POLICY,
    },
) as dag:
    # Without an OAuth app in hubspot_default, connect skips the base connection and explore fails saying why.
    connect = EnsureHubSpotConnectionOperator(task_id="connect")

    explore = ExploreHubSpotOperator(
        task_id="explore",
        base_connection_id=CONNECTION_ID,
        skipped_reason="{{ ti.xcom_pull(task_ids='connect')['skipped'] }}",
        output_dir="{{ run_folder(dag.dag_id, run_id) }}",
    )

    ensure = EnsureDataflowsOperator(
        task_id="ensure_dataflows", base_connection_id=CONNECTION_ID, explore_task_id="explore"
    )

    runs = FlowRunsOperator(
        task_id="flow_runs", chain_task_id="ensure_dataflows", output_dir="{{ run_folder(dag.dag_id, run_id) }}"
    )

    connect >> explore >> ensure >> runs
