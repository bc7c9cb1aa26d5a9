"""Operators of the HubSpot → AEP ingest DAG: explore the HubSpot source, make sure the dataflow chain exists
(source connection, dataset, target connection, mapping set, flow; each found and verified before anything
is created), and wait for and report the flows' runs. Bodies and summaries come from ``audience_sync.ingest``."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any

import pyarrow as pa
from airflow.sdk import BaseOperator

from audience_sync import ingest, storage
from audience_sync.clients.flow_service import FlowServiceClient
from audience_sync.errors import ConfigurationError, PermanentError, TransientError
from audience_sync.hooks.aep import AepHook
from audience_sync.templating import rendered_optional
from audience_sync.triggers.flow_runs import FlowRunsTrigger, waiting_for


class _IngestOperator(BaseOperator):
    """What the three operators share: the AEP hook, the Flow Service client and the ingest config."""

    def __init__(self, *, aep_conn_id: str = AepHook.default_conn_name, config_path: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.aep_conn_id = aep_conn_id
        self.config_path = config_path

    @cached_property
    def hook(self) -> AepHook:
        return AepHook(self.aep_conn_id)

    @cached_property
    def client(self) -> FlowServiceClient:
        return FlowServiceClient(self.hook)

    @cached_property
    def config(self) -> ingest.IngestConfig:
        return ingest.load_ingest_config(rendered_optional(self.config_path))


class ExploreHubSpotOperator(_IngestOperator):
    """Lists the tables the HubSpot base connection offers and previews each configured one.

    The task log gets counts and column names and types only; the preview rows (personal data) go to
    ``<output_dir>/explore/<table>.parquet`` and the columns to ``explore/tables.json``.

    :param base_connection_id: the Flow Service HubSpot base connection (the ``connect`` task's ``connection_id``)
    :param skipped_reason: the ``connect`` task's ``skipped``; set when no base connection could be made
    :param output_dir: the run folder
    :param aep_conn_id: the Airflow connection to AEP
    :param config_path: the ingest config file (default ``include/ingest_config.yaml``)
    :return: ``ExploreResult.to_xcom()``
    """

    template_fields: Sequence[str] = ("base_connection_id", "skipped_reason", "output_dir", "config_path")

    def __init__(self, *, base_connection_id: str | None, output_dir: str, skipped_reason: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.base_connection_id = base_connection_id
        self.skipped_reason = skipped_reason
        self.output_dir = output_dir

    def execute(self, context) -> dict[str, Any]:
        base_id = base_connection_id(self.base_connection_id, self.skipped_reason)
        offered = [t.get("path") or t.get("name") for t in ingest.explore_tables(self.client.explore_root(base_id))]
        self.log.info("HubSpot base connection %s offers %d table(s): %s", base_id, len(offered), ", ".join(offered))
        folder = storage.as_path(self.output_dir) / "explore"
        folder.mkdir(parents=True, exist_ok=True)
        previews = []
        for obj in self.config.objects:
            if obj.path not in offered:
                raise ConfigurationError(
                    f"HubSpot table {obj.path!r} (include/ingest_config.yaml) is not offered by the base connection; "
                    f"available: {', '.join(offered)}"
                )
            table = self.client.explore_table(base_id, obj.path, preview=True)
            columns = ingest.table_columns(table)
            rows = ingest.preview_rows(table)[: self.config.preview_rows]
            path = folder / f"{obj.label}.parquet"
            storage.write_parquet(preview_table(columns, rows), path)
            preview = ingest.TablePreview(obj.path, columns, len(rows), str(path))
            self.log.info("%s", preview.log_line())
            previews.append(preview)
        result = ingest.ExploreResult(base_id, offered, previews)
        storage.write_json(result.to_xcom(), folder / "tables.json")
        return result.to_xcom()


def base_connection_id(value: str | None, skipped_reason: str | None) -> str:
    """The base connection id, or a clear failure: the ingest cannot run without one."""
    value = rendered_optional(value)
    if value:
        return str(value)
    reason = rendered_optional(skipped_reason) or "the connect task returned no connection id"
    raise ConfigurationError(
        f"the HubSpot → AEP ingest needs AEP's Flow Service HubSpot base connection, and there is none: {reason}. "
        "Give hubspot_default a HubSpot OAuth app (extras client_id, client_secret, refresh_token)"
    )


def preview_table(columns: list[dict[str, str]], rows: list[dict[str, Any]]) -> pa.Table:
    """Preview rows as text columns in the explored order: the run folder keeps them as HubSpot gave them."""
    names = [c["name"] for c in columns]
    data = {name: [None if row.get(name) is None else str(row.get(name)) for row in rows] for name in names}
    return pa.table({name: pa.array(values, pa.string()) for name, values in data.items()})


class EnsureDataflowsOperator(_IngestOperator):
    """For each configured HubSpot table, finds or creates, in order: the source connection, the dataset
    (an existing id is checked instead), the target connection, the Data Prep mapping set and the dataflow.

    Each is looked up by its name (``name_prefix: <table> <kind>``) and verified; one that exists but differs
    (another table, dataset, schema, mapping or flow spec, or not enabled) fails the task naming the
    difference rather than creating a twin. The mapping set's name carries a hash of its rows.

    :param base_connection_id: the Flow Service HubSpot base connection
    :param explore_task_id: the explore task, whose columns every mapping source must be among
    :param aep_conn_id: the Airflow connection to AEP
    :param config_path: the ingest config file (default ``include/ingest_config.yaml``)
    :return: ``ChainResult.to_xcom()``: every resource with its id and whether this run created it
    """

    template_fields: Sequence[str] = ("base_connection_id", "config_path")

    def __init__(self, *, base_connection_id: str | None, explore_task_id: str = "explore", **kwargs):
        super().__init__(**kwargs)
        self.base_connection_id = base_connection_id
        self.explore_task_id = explore_task_id

    def execute(self, context) -> dict[str, Any]:
        base_id = base_connection_id(self.base_connection_id, None)
        explored = ingest.ExploreResult.from_xcom(context["ti"].xcom_pull(task_ids=self.explore_task_id))
        items: list[ingest.Ensured] = []
        for obj in self.config.objects:
            items += self._chain(base_id, obj, explored.columns(obj.path) or set())
        result = ingest.ChainResult(items)
        self.log.info("Dataflow chain: %d resource(s), %d created by this run", len(items), len(result.created))
        return result.to_xcom()

    def _chain(self, base_id: str, obj: ingest.IngestObject, columns: set[str]) -> list[ingest.Ensured]:
        config, client = self.config, self.client
        pairs = config.mappings[obj.path]
        unknown = ingest.unmapped_columns(pairs, columns)
        if unknown:
            raise ConfigurationError(
                f"the mapping of {obj.path} reads column(s) {', '.join(unknown)} that the HubSpot table does not have; "
                f"its columns: {', '.join(sorted(columns))}"
            )
        name = config.resource_name("source connection", obj)
        source = self._one(
            "source connection",
            obj,
            name,
            client.list_source_connections(f"baseConnectionId=={base_id}"),
            lambda found: source_differences(found, obj),
            lambda: client.create_source_connection(ingest.source_connection_body(name, base_id, obj))["id"],
        )
        dataset = self._dataset(obj)
        name = config.resource_name("target connection", obj)
        target = self._one(
            "target connection",
            obj,
            name,
            client.list_target_connections(f"connectionSpec.id=={ingest.DATA_LAKE_CONNECTION_SPEC_ID}"),
            lambda found: target_differences(found, obj, dataset.id),
            lambda: client.create_target_connection(ingest.target_connection_body(name, obj, dataset.id))["id"],
        )
        name = config.mapping_name(obj)
        mapping = self._one(
            "mapping set",
            obj,
            name,
            client.find_mapping_sets(name),
            lambda found: [] if ingest.mapping_pairs(found) == set(pairs) else ["its mappings differ from the file"],
            lambda: client.create_mapping_set(ingest.mapping_set_body(name, obj, pairs))["id"],
        )
        name = config.resource_name("dataflow", obj)
        wanted = ingest.flow_body(
            name, obj, source.id, target.id, mapping.id, 0, ingest.schedule_params(config, time.time())
        )
        flow = self._one(
            "dataflow",
            obj,
            name,
            client.list_flows(f"flowSpec.id=={ingest.CRM_FLOW_SPEC_ID}"),
            lambda found: ingest.flow_differences(found, wanted),
            lambda: self._create_flow(wanted),
        )
        return [source, dataset, target, mapping, flow]

    def _create_flow(self, body: dict[str, Any]) -> str:
        spec = self.client.get_flow_spec(ingest.CRM_FLOW_SPEC_ID)
        if spec.get("id") != ingest.CRM_FLOW_SPEC_ID:
            raise PermanentError(f"AEP has no flow spec {ingest.CRM_FLOW_SPEC_ID} ({ingest.CRM_FLOW_SPEC_NAME})")
        return self.client.create_flow(body)["id"]

    def _dataset(self, obj: ingest.IngestObject) -> ingest.Ensured:
        if obj.dataset_id:
            found = self.client.get_dataset(obj.dataset_id)
            if found is None:
                raise ConfigurationError(
                    f"dataset {obj.dataset_id} (objects[{obj.path}].dataset_id) does not exist in AEP"
                )
            problems = dataset_differences(found, obj)
            if problems:
                raise ConfigurationError(f"dataset {obj.dataset_id} cannot take {obj.path}: {'; '.join(problems)}")
            self.log.info("%s: using the existing dataset %s", obj.path, obj.dataset_id)
            return ingest.Ensured("dataset", obj.path, obj.dataset_id, False, found.get("name") or "")
        return self._one(
            "dataset",
            obj,
            obj.dataset_name,
            self.client.find_datasets(obj.dataset_name),
            lambda found: dataset_differences(found, obj),
            lambda: ingest.dataset_id_from_created(self.client.create_dataset(ingest.dataset_body(obj))),
        )

    def _one(
        self,
        kind: str,
        obj: ingest.IngestObject,
        name: str,
        candidates: list[dict[str, Any]],
        problems_of: Callable[[dict[str, Any]], list[str]],
        create: Callable[[], str],
    ) -> ingest.Ensured:
        """Find the one resource of this name and verify it, or create it: never a second of the same name."""
        named = [c for c in candidates if c.get("name") == name]
        if len(named) > 1:
            ids = ", ".join(str(c.get("id")) for c in named)
            raise ConfigurationError(f"{len(named)} AEP {kind}s are named {name!r} ({ids}); keep one")
        if named:
            problems = problems_of(named[0])
            if problems:
                raise ConfigurationError(
                    f"AEP {kind} {named[0].get('id')} named {name!r} exists but {'; '.join(problems)}; "
                    "fix or delete it in AEP (or change name_prefix), then rerun"
                )
            self.log.info("%s: %s %s already exists; nothing to do", obj.path, kind, named[0]["id"])
            return ingest.Ensured(kind, obj.path, named[0]["id"], False, name)
        created = create()
        self.log.info("%s: created %s %s (%s)", obj.path, kind, created, name)
        return ingest.Ensured(kind, obj.path, created, True, name)


def source_differences(found: dict[str, Any], obj: ingest.IngestObject) -> list[str]:
    problems = []
    if (found.get("params") or {}).get("path") != obj.path:
        problems.append(f"reads {(found.get('params') or {}).get('path')!r}, not {obj.path!r}")
    if (found.get("connectionSpec") or {}).get("id") != ingest.HUBSPOT_CONNECTION_SPEC_ID:
        problems.append("is not a HubSpot source connection")
    if not ingest.is_enabled(found):
        problems.append(f"is {found.get('state')!r}")
    return problems


def dataset_differences(found: dict[str, Any], obj: ingest.IngestObject) -> list[str]:
    schema = (found.get("schemaRef") or {}).get("id")
    return [] if schema == obj.schema_id else [f"its schema is {schema!r}, not {obj.schema_id!r}"]


def target_differences(found: dict[str, Any], obj: ingest.IngestObject, dataset_id: str) -> list[str]:
    problems = []
    if (found.get("params") or {}).get("dataSetId") != dataset_id:
        problems.append(f"writes to dataset {(found.get('params') or {}).get('dataSetId')!r}, not {dataset_id!r}")
    schema = ((found.get("data") or {}).get("schema") or {}).get("id")
    if schema != obj.schema_id:
        problems.append(f"has schema {schema!r}, not {obj.schema_id!r}")
    if not ingest.is_enabled(found):
        problems.append(f"is {found.get('state')!r}")
    return problems


class FlowRunsOperator(_IngestOperator):
    """Triggers a run of each one-time flow (``mode='trigger'``) or waits for the scheduled ones, deferring
    while any run is in progress; then reports records read, ingested and failed per run and fails with
    Adobe's error details when the latest run of a flow failed.

    :param chain_task_id: the task whose ``ChainResult`` names the flows
    :param output_dir: the run folder (``runs.json`` is written there)
    :param mode: ``wait`` or ``trigger``; empty = the config's ``runs.mode``
    :param aep_conn_id: the Airflow connection to AEP
    :param config_path: the ingest config file (default ``include/ingest_config.yaml``)
    :param deferrable: wait in the triggerer (True) or poll in the worker
    :return: ``RunsReport.to_xcom()``
    """

    template_fields: Sequence[str] = ("output_dir", "mode", "config_path")

    def __init__(
        self,
        *,
        output_dir: str,
        chain_task_id: str = "ensure_dataflows",
        mode: str | None = None,
        deferrable: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.output_dir = output_dir
        self.chain_task_id = chain_task_id
        self.mode = mode
        self.deferrable = deferrable

    def _flow_ids(self, context) -> list[str]:
        return ingest.ChainResult.from_xcom(context["ti"].xcom_pull(task_ids=self.chain_task_id)).flow_ids

    def execute(self, context) -> dict[str, Any]:
        flow_ids = self._flow_ids(context)
        mode = rendered_optional(self.mode) or self.config.run_mode
        if mode not in ingest.RUN_MODES:
            raise ConfigurationError(f"mode must be one of {', '.join(ingest.RUN_MODES)}, not {mode!r}")
        if mode == "trigger":
            for flow_id in flow_ids:
                run = self.client.create_run(flow_id, int(time.time() * 1000))
                self.log.info("Started run %s of flow %s", run["id"], flow_id)
        not_before = {
            flow_id: float(self.client.get_flow(flow_id).get("scheduleParams", {}).get("startTime") or 0)
            for flow_id in flow_ids
        }
        timeout = timedelta(seconds=self.config.run_timeout_seconds)
        poll = self.config.run_poll_seconds
        if waiting_for(self.client, flow_ids, not_before):
            if self.deferrable:
                self.defer(
                    trigger=FlowRunsTrigger(flow_ids, not_before, self.aep_conn_id, poll),
                    method_name="execute_complete",
                    timeout=timeout,
                )
            deadline = time.monotonic() + timeout.total_seconds()
            while pending := waiting_for(self.client, flow_ids, not_before):
                if time.monotonic() >= deadline:
                    raise TransientError(f"AEP flow(s) {', '.join(pending)} still running after {timeout}")
                self.log.info("AEP flow(s) %s still running; next check in %.1f s", ", ".join(pending), poll)
                time.sleep(poll)
        return self._report(context, flow_ids)

    def execute_complete(self, context, event: dict[str, Any]) -> dict[str, Any]:
        """``dag.test()`` drops defer kwargs: the flows come from the chain task's XCom again."""
        if event.get("status") == "error":
            raise TransientError(f"waiting for the AEP flow runs failed: {event.get('message')}")
        return self._report(context, self._flow_ids(context))

    def _report(self, context, flow_ids: list[str]) -> dict[str, Any]:
        runs: list[ingest.RunSummary] = []
        for flow_id in flow_ids:
            found = ingest.latest_first(self.client.list_runs(flow_id))[: self.config.report_last_runs]
            runs += [ingest.summarise_run(run) for run in found]
        for run in runs:
            self.log.info("%s", run.describe())
        path = storage.as_path(self.output_dir) / "runs.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        report = ingest.RunsReport(runs, str(path))
        storage.write_json(report.to_xcom(), path)
        totals = report.totals()
        self.log.info(
            "%d run(s) of %d flow(s): read %d, ingested %d, failed %d record(s)",
            totals["runs"],
            len(flow_ids),
            totals["records_read"],
            totals["records_ingested"],
            totals["records_failed"],
        )
        failures = report.failures()
        if failures:
            raise ingest.FlowRunFailed("AEP flow run(s) failed: " + " | ".join(run.describe() for run in failures))
        return report.to_xcom()
