"""HubSpot → AEP ingest: the settings, the request bodies and the summaries of the ``hubspot_to_aep_ingest``
DAG, with no Airflow and no network (unit-testable on their own).

Sources of every body (see also ../shared/reference/aep.md, "HubSpot → AEP dataflow"):
  [EXPLORE] "Explore a marketing automation system using the Flow Service API"
  [COLLECT] "Create a dataflow for marketing automation sources using the Flow Service API" (the HubSpot
            source tutorial's next step: source connection, target dataset and connection, mapping, flow)
  [MONITOR] "Monitor dataflows using the Flow Service API" (``/runs?property=flowId==...`` and run metrics)
  [SPEC]    Adobe's OpenAPI files (flow-service.yaml, catalog.yaml, data-prep.yaml), vendored for the contract tests
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from audience_sync.config import PROJECT_ROOT, project_path, read_yaml_file, refuse_unknown
from audience_sync.errors import ConfigurationError, PermanentError

DEFAULT_INGEST_CONFIG = PROJECT_ROOT / "include" / "ingest_config.yaml"

HUBSPOT_CONNECTION_SPEC_ID = "cc6a4487-9e91-433e-a3a3-9cf6626c1806"  # seeds 000-003
# [COLLECT]: the data lake's fixed target connection spec, and the flow spec "CRMToAEP" that table-based
# marketing automation and CRM sources (HubSpot among them) use.
DATA_LAKE_CONNECTION_SPEC_ID = "c604ff05-7f1a-43c0-8e18-33bf874cb11c"
CRM_FLOW_SPEC_ID = "14518937-270c-4525-bdec-c2ba7cce3860"
CRM_FLOW_SPEC_NAME = "CRMToAEP"
# [COLLECT]: the schema reference's content types of the dataset and of the target connection.
DATASET_SCHEMA_CONTENT_TYPE = "application/vnd.adobe.xed-full-notext+json; version=1"
TARGET_SCHEMA_VERSION = "application/vnd.adobe.xed-full+json;version=1.0"
MAPPING_SCHEMA_CONTENT_TYPE = "application/vnd.adobe.xed-full+json;version=1"
FREQUENCIES = ("once", "minute", "hour", "day", "week")  # [SPEC] createFlow: scheduleParams.frequency
RUN_MODES = ("wait", "trigger")
# [MONITOR]: metrics.statusSummary.status. Adobe's pages show success, failed, inProgress and partialSuccess;
# the other active spellings are accepted because nothing documents the full list.
ACTIVE_RUN_STATUSES = frozenset({"inprogress", "in_progress", "pending", "queued", "scheduled", "started", "running"})
FAILED_RUN_STATUSES = frozenset({"failed", "failure", "error", "cancelled", "canceled"})
SUCCEEDED_RUN_STATUSES = frozenset({"success", "succeeded", "partialsuccess", "completed"})
RESOURCE_ID = re.compile(r"@/dataSets/(?P<id>[^/\s\"]+)")


class FlowRunFailed(PermanentError):
    """The latest run of a dataflow failed; the message carries Adobe's error codes and messages."""


# --- settings -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IngestObject:
    """One HubSpot table brought into one AEP dataset by one dataflow."""

    path: str  # the explore path, e.g. Hubspot.Contacts [EXPLORE]
    schema_id: str  # the XDM schema's $id the dataset and the mapping target
    dataset_id: str | None  # an existing dataset; None = find or create one named dataset_name
    dataset_name: str
    delta_column: str  # [COLLECT] Copy transformation: the column that tells changed rows apart
    delta_date_format: str = "YYYY-MM-DD"
    delta_timezone: str = "UTC"

    @property
    def label(self) -> str:
        return self.path.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class IngestConfig:
    objects: tuple[IngestObject, ...]
    mappings: dict[str, tuple[tuple[str, str], ...]]  # object path → ((source column, XDM path), ...)
    name_prefix: str = "HubSpot to AEP (Airflow)"
    schedule: str | None = None
    preview_rows: int = 10
    frequency: str = "hour"
    interval: int = 1
    start_time: int | None = None  # epoch seconds; None = when the flow is created
    backfill: bool = True
    run_mode: str = "wait"
    run_timeout_seconds: int = 3600
    run_poll_seconds: float = 30.0
    report_last_runs: int = 10

    def resource_name(self, kind: str, obj: IngestObject) -> str:
        """Names make find-before-create exact: one resource per prefix, kind and HubSpot table."""
        return f"{self.name_prefix}: {obj.label} {kind}"

    def mapping_name(self, obj: IngestObject) -> str:
        """The mapping's content is in the name: a changed mapping file is a new mapping set, never a silent edit."""
        digest = hashlib.sha256(json.dumps(self.mappings[obj.path]).encode()).hexdigest()[:12]
        return f"{self.resource_name('mapping', obj)} {digest}"


_OBJECT_KEYS = {
    "path",
    "schema_id",
    "dataset_id",
    "dataset_name",
    "delta_column",
    "delta_date_format",
    "delta_timezone",
}
_TOP_KEYS = {"objects", "mapping_file", "name_prefix", "schedule", "preview_rows", "flow", "runs"}


def load_mappings(path: str | os.PathLike) -> dict[str, tuple[tuple[str, str], ...]]:
    """``include/mappings/hubspot_to_xdm.yaml``: ``{version: 1, objects: {<path>: [{source, destination}]}}``."""
    path = project_path(path)
    raw = read_yaml_file(path, "ingest mapping file")
    if not isinstance(raw, dict) or raw.get("version") != 1 or not isinstance(raw.get("objects"), dict):
        raise ConfigurationError(f"{path}: expected a mapping with 'version: 1' and an 'objects' mapping")
    mappings: dict[str, tuple[tuple[str, str], ...]] = {}
    for object_path, rows in raw["objects"].items():
        if not isinstance(rows, list) or not rows:
            raise ConfigurationError(
                f"{path}: objects.{object_path} must be a non-empty list of {{source, destination}}"
            )
        pairs, targets = [], set()
        for number, row in enumerate(rows):
            where = f"{path}: objects.{object_path}[{number}]"
            if not isinstance(row, dict) or set(row) != {"source", "destination"}:
                raise ConfigurationError(f"{where} must have exactly the keys source and destination")
            source, destination = row["source"], row["destination"]
            if not all(isinstance(v, str) and v.strip() for v in (source, destination)):
                raise ConfigurationError(f"{where}: source and destination must be non-empty strings")
            if destination in targets:
                raise ConfigurationError(f"{where}: XDM field {destination!r} is mapped twice")
            targets.add(destination)
            pairs.append((source, destination))
        mappings[object_path] = tuple(pairs)
    return mappings


def load_ingest_config(path: str | os.PathLike | None = None) -> IngestConfig:
    """``include/ingest_config.yaml`` (or ``AUDIENCE_SYNC_INGEST_CONFIG``); every problem names the setting."""
    path = project_path(path or os.environ.get("AUDIENCE_SYNC_INGEST_CONFIG") or DEFAULT_INGEST_CONFIG)
    raw = read_yaml_file(path, "ingest configuration")
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{path}: expected a mapping of settings")
    refuse_unknown(raw, _TOP_KEYS, str(path))
    flow, runs = raw.get("flow") or {}, raw.get("runs") or {}
    refuse_unknown(flow, {"frequency", "interval", "start_time", "backfill"}, f"{path}: flow")
    refuse_unknown(runs, {"mode", "timeout_seconds", "poll_seconds", "report_last"}, f"{path}: runs")
    objects = []
    for number, item in enumerate(raw.get("objects") or []):
        where = f"{path}: objects[{number}]"
        if not isinstance(item, dict):
            raise ConfigurationError(f"{where} must be a mapping")
        refuse_unknown(item, _OBJECT_KEYS, where)
        for key in ("path", "schema_id", "delta_column"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise ConfigurationError(f"{where}: {key} is required")
        objects.append(
            IngestObject(
                path=item["path"],
                schema_id=item["schema_id"],
                dataset_id=item.get("dataset_id") or None,
                dataset_name=item.get("dataset_name") or f"HubSpot {item['path'].rsplit('.', 1)[-1]}",
                delta_column=item["delta_column"],
                delta_date_format=item.get("delta_date_format") or "YYYY-MM-DD",
                delta_timezone=item.get("delta_timezone") or "UTC",
            )
        )
    if not objects:
        raise ConfigurationError(f"{path}: objects must list at least one HubSpot table (e.g. path: Hubspot.Contacts)")
    paths = [o.path for o in objects]
    if len(set(paths)) != len(paths):
        raise ConfigurationError(f"{path}: a HubSpot table is listed twice in objects")
    mappings = load_mappings(raw.get("mapping_file") or "include/mappings/hubspot_to_xdm.yaml")
    missing = [p for p in paths if p not in mappings]
    if missing:
        raise ConfigurationError(f"{path}: the mapping file has no rows for {', '.join(missing)}")
    config = IngestConfig(
        objects=tuple(objects),
        mappings={p: mappings[p] for p in paths},
        name_prefix=raw.get("name_prefix") or IngestConfig.name_prefix,
        schedule=raw.get("schedule"),
        preview_rows=int(raw.get("preview_rows", 10)),
        frequency=str(flow.get("frequency", "hour")),
        interval=int(flow.get("interval", 1)),
        start_time=int(flow["start_time"]) if flow.get("start_time") is not None else None,
        backfill=bool(flow.get("backfill", True)),
        run_mode=str(runs.get("mode", "wait")),
        run_timeout_seconds=int(runs.get("timeout_seconds", 3600)),
        run_poll_seconds=float(runs.get("poll_seconds", 30)),
        report_last_runs=int(runs.get("report_last", 10)),
    )
    check_schedule(config.frequency, config.interval)
    if config.run_mode not in RUN_MODES:
        raise ConfigurationError(f"{path}: runs.mode must be one of {', '.join(RUN_MODES)}, not {config.run_mode!r}")
    if config.run_mode == "trigger" and config.frequency != "once":
        raise ConfigurationError(
            f"{path}: runs.mode 'trigger' needs flow.frequency 'once': Flow Service creates on-demand runs only "
            "for flows scheduled for one-time ingestion (POST /runs)"
        )
    return config


def check_schedule(frequency: str, interval: int) -> None:
    """[SPEC] createFlow: frequency once|minute|hour|day|week; interval a non-zero integer, ≥ 15 per minute."""
    if frequency not in FREQUENCIES:
        raise ConfigurationError(f"flow.frequency must be one of {', '.join(FREQUENCIES)}, not {frequency!r}")
    if frequency != "once" and interval < 1:
        raise ConfigurationError("flow.interval must be a positive integer")
    if frequency == "minute" and interval < 15:
        raise ConfigurationError("flow.interval must be at least 15 when flow.frequency is 'minute'")


# --- request bodies ------------------------------------------------------------------------------------
def source_connection_body(name: str, base_connection_id: str, obj: IngestObject) -> dict[str, Any]:
    """[COLLECT] ``POST /sourceConnections``: table-based sources use ``data.format: tabular``."""
    return {
        "name": name,
        "baseConnectionId": base_connection_id,
        "description": "HubSpot table ingested by the Airflow hubspot_to_aep_ingest DAG",
        "data": {"format": "tabular"},
        "params": {"path": obj.path},
        "connectionSpec": {"id": HUBSPOT_CONNECTION_SPEC_ID, "version": "1.0"},
    }


def dataset_body(obj: IngestObject) -> dict[str, Any]:
    """[COLLECT] Catalog ``POST /dataSets?requestDataSource=true``: a dataset on the XDM schema."""
    return {"name": obj.dataset_name, "schemaRef": {"id": obj.schema_id, "contentType": DATASET_SCHEMA_CONTENT_TYPE}}


def dataset_id_from_created(answer: Any) -> str:
    """Catalog answers a create with ``["@/dataSets/<id>"]`` [SPEC catalog.yaml 201]."""
    values = answer if isinstance(answer, list) else [answer]
    for value in values:
        found = RESOURCE_ID.search(str(value))
        if found:
            return found["id"]
    raise PermanentError(f"Catalog's answer to the dataset creation names no dataset: {str(answer)[:200]}")


def target_connection_body(name: str, obj: IngestObject, dataset_id: str) -> dict[str, Any]:
    """[COLLECT] ``POST /targetConnections``: the data lake spec, the schema and the dataset."""
    return {
        "name": name,
        "description": "Data lake target of the Airflow hubspot_to_aep_ingest DAG",
        "data": {"format": "parquet_xdm", "schema": {"id": obj.schema_id, "version": TARGET_SCHEMA_VERSION}},
        "params": {"dataSetId": dataset_id},
        "connectionSpec": {"id": DATA_LAKE_CONNECTION_SPEC_ID, "version": "1.0"},
    }


def mapping_set_body(name: str, obj: IngestObject, pairs: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """Data Prep ``POST /mappingSets`` in the form of its API reference [SPEC data-prep.yaml MappingSet]:
    ``outputSchema.schemaRef`` and ``mappings[{sourceType, source, destination}]``."""
    return {
        "name": name,
        "version": 0,
        "outputSchema": {"schemaRef": {"id": obj.schema_id, "contentType": MAPPING_SCHEMA_CONTENT_TYPE}},
        "mappings": [
            {"sourceType": "ATTRIBUTE", "source": source, "destination": destination, "name": destination}
            for source, destination in pairs
        ],
    }


def mapping_pairs(mapping_set: dict[str, Any]) -> set[tuple[str, str]]:
    """(source, destination) of a mapping set as Data Prep returns it; the tutorial's older field names
    (``sourceAttribute``, ``destinationXdmPath``) are read too."""
    pairs = set()
    for row in mapping_set.get("mappings") or []:
        source = row.get("source") or row.get("sourceAttribute")
        destination = row.get("destination") or row.get("destinationXdmPath")
        pairs.add((source, destination))
    return pairs


def schedule_params(config: IngestConfig, now: float) -> dict[str, Any]:
    """[SPEC] createFlow ``scheduleParams``: startTime in epoch seconds; the spec types interval as a string
    (the tutorial shows a number; the sandbox takes both)."""
    params: dict[str, Any] = {
        "startTime": int(config.start_time if config.start_time is not None else now),
        "frequency": config.frequency,
        "backfill": config.backfill,
    }
    if config.frequency != "once":
        params["interval"] = str(config.interval)
    return params


def flow_body(
    name: str,
    obj: IngestObject,
    source_id: str,
    target_id: str,
    mapping_id: str,
    mapping_version: int | str,
    schedule: dict[str, Any],
) -> dict[str, Any]:
    """[COLLECT] ``POST /flows``: CRM sources take a Copy transformation with ``deltaColumn`` and a Mapping one."""
    return {
        "name": name,
        "description": f"HubSpot {obj.path} into AEP, managed by the Airflow hubspot_to_aep_ingest DAG",
        "flowSpec": {"id": CRM_FLOW_SPEC_ID, "version": "1.0"},
        "sourceConnectionIds": [source_id],
        "targetConnectionIds": [target_id],
        "transformations": [
            {
                "name": "Copy",
                "params": {
                    "deltaColumn": {
                        "name": obj.delta_column,
                        "dateFormat": obj.delta_date_format,
                        "timezone": obj.delta_timezone,
                    }
                },
            },
            {"name": "Mapping", "params": {"mappingId": mapping_id, "mappingVersion": str(mapping_version)}},
        ],
        "scheduleParams": schedule,
    }


# --- verification of what was found -------------------------------------------------------------------
def is_enabled(resource: dict[str, Any]) -> bool:
    """Flow Service resources carry ``state`` (enabled, disabled, draft); absent means enabled."""
    return str(resource.get("state") or "enabled").lower() == "enabled"


def flow_differences(flow: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """What an existing flow of the wanted name does differently: a reason to stop, never to create a twin."""
    problems = []
    if (flow.get("flowSpec") or {}).get("id") != wanted["flowSpec"]["id"]:
        problems.append(f"flow spec {(flow.get('flowSpec') or {}).get('id')!r} instead of {wanted['flowSpec']['id']!r}")
    for key in ("sourceConnectionIds", "targetConnectionIds"):
        if sorted(flow.get(key) or []) != sorted(wanted[key]):
            problems.append(f"{key} {flow.get(key)} instead of {wanted[key]}")
    found = {t.get("name"): t.get("params") or {} for t in flow.get("transformations") or []}
    mapping = found.get("Mapping") or {}
    wanted_mapping = wanted["transformations"][1]["params"]
    if mapping.get("mappingId") != wanted_mapping["mappingId"]:
        problems.append(f"mapping set {mapping.get('mappingId')!r} instead of {wanted_mapping['mappingId']!r}")
    if not is_enabled(flow):
        problems.append(f"state {flow.get('state')!r}")
    return problems


# --- explore ------------------------------------------------------------------------------------------
def explore_tables(root: Any) -> list[dict[str, Any]]:
    """[EXPLORE] ``objectType=root`` answers a JSON array of ``{type, name, path, canPreview, canFetchSchema}``;
    an ``{"items": [...]}`` wrapper is accepted too (nothing documents that it never comes)."""
    items = root.get("items") if isinstance(root, dict) else root
    if not isinstance(items, list):
        raise PermanentError(f"Flow Service explore answered no list of objects: {str(root)[:200]}")
    return [i for i in items if isinstance(i, dict) and str(i.get("type", "table")).lower() == "table"]


def table_columns(table: dict[str, Any]) -> list[dict[str, str]]:
    """[EXPLORE] ``schema.columns[{name, type, xdm: {type}}]`` → ``[{name, type}]``."""
    columns = ((table.get("schema") or {}).get("columns")) or []
    return [
        {"name": str(c.get("name")), "type": str(c.get("type") or (c.get("xdm") or {}).get("type") or "")}
        for c in columns
    ]


def preview_rows(table: dict[str, Any]) -> list[dict[str, Any]]:
    """The preview's rows: ``data`` as a list of objects (the explore tutorial), or of lists in column order."""
    rows = table.get("data") or []
    names = [c["name"] for c in table_columns(table)]
    return [row if isinstance(row, dict) else dict(zip(names, row)) for row in rows]


@dataclass(frozen=True)
class TablePreview:
    path: str
    columns: list[dict[str, str]]
    rows: int
    preview_file: str | None

    def log_line(self) -> str:
        """Counts and column names/types only: preview values are personal data and never logged."""
        described = ", ".join(f"{c['name']} ({c['type']})" for c in self.columns)
        return f"{self.path}: {len(self.columns)} column(s), {self.rows} preview row(s): {described}"


@dataclass(frozen=True)
class ExploreResult:
    base_connection_id: str
    objects: list[str]  # every table path the connection offers
    tables: list[TablePreview]

    def columns(self, path: str) -> set[str] | None:
        return next(({c["name"] for c in t.columns} for t in self.tables if t.path == path), None)

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_xcom(cls, value: dict[str, Any]) -> ExploreResult:
        return cls(value["base_connection_id"], list(value["objects"]), [TablePreview(**t) for t in value["tables"]])


def unmapped_columns(pairs: tuple[tuple[str, str], ...], columns: set[str]) -> list[str]:
    return [source for source, _ in pairs if source not in columns]


# --- what the ensure step found or made ----------------------------------------------------------------
@dataclass(frozen=True)
class Ensured:
    kind: str  # source connection, dataset, target connection, mapping set, dataflow
    object_path: str
    id: str
    created: bool
    name: str = ""


@dataclass(frozen=True)
class ChainResult:
    items: list[Ensured] = field(default_factory=list)

    def ids(self, kind: str) -> dict[str, str]:
        return {i.object_path: i.id for i in self.items if i.kind == kind}

    @property
    def flow_ids(self) -> list[str]:
        return list(self.ids("dataflow").values())

    @property
    def created(self) -> list[Ensured]:
        return [i for i in self.items if i.created]

    def to_xcom(self) -> dict[str, Any]:
        return {"items": [asdict(i) for i in self.items], "created": len(self.created)}

    @classmethod
    def from_xcom(cls, value: dict[str, Any]) -> ChainResult:
        return cls([Ensured(**i) for i in value["items"]])


# --- runs ---------------------------------------------------------------------------------------------
def run_status(run: dict[str, Any]) -> str:
    """[MONITOR] ``metrics.statusSummary.status``; a run without one is still starting."""
    return str(((run.get("metrics") or {}).get("statusSummary") or {}).get("status") or run.get("status") or "")


def is_active(run: dict[str, Any]) -> bool:
    return run_status(run).lower() in ACTIVE_RUN_STATUSES or not run_status(run)


def run_errors(run: dict[str, Any]) -> list[dict[str, str]]:
    """Adobe's error details of a run: ``metrics.statusSummary.errors`` and each activity's
    ``statusSummary.errors`` [MONITOR] (``activites``, the spec's spelling, is read too)."""
    found = []
    summaries = [((run.get("metrics") or {}).get("statusSummary") or {})]
    for activity in run.get("activities") or run.get("activites") or []:
        summaries.append((activity or {}).get("statusSummary") or {})
    for summary in summaries:
        for error in summary.get("errors") or []:
            entry = {
                "code": str(error.get("code", "?")),
                "message": str(error.get("message") or error.get("msg") or ""),
            }
            if entry not in found:
                found.append(entry)
    return found


@dataclass(frozen=True)
class RunSummary:
    flow_id: str
    run_id: str
    status: str
    started_at: int | None  # epoch ms
    completed_at: int | None
    records_read: int
    records_ingested: int
    records_failed: int
    errors: list[dict[str, str]]

    @property
    def failed(self) -> bool:
        return self.status.lower() in FAILED_RUN_STATUSES

    def describe(self) -> str:
        text = (
            f"flow {self.flow_id} run {self.run_id}: {self.status}, read {self.records_read}, "
            f"ingested {self.records_ingested}, failed {self.records_failed}"
        )
        if self.errors:
            text += "; errors: " + "; ".join(f"{e['code']}: {e['message']}" for e in self.errors)
        return text


def summarise_run(run: dict[str, Any]) -> RunSummary:
    """[MONITOR] ``metrics.recordSummary``: inputRecordCount (read), outputRecordCount (ingested),
    failedRecordCount (failed); ``durationSummary`` start and end in epoch ms."""
    metrics = run.get("metrics") or {}
    records = metrics.get("recordSummary") or {}
    duration = metrics.get("durationSummary") or {}
    return RunSummary(
        flow_id=str(run.get("flowId") or ""),
        run_id=str(run.get("id") or ""),
        status=run_status(run) or "unknown",
        started_at=duration.get("startedAtUTC"),
        completed_at=duration.get("completedAtUTC"),
        records_read=int(records.get("inputRecordCount") or 0),
        records_ingested=int(records.get("outputRecordCount") or 0),
        records_failed=int(records.get("failedRecordCount") or 0),
        errors=run_errors(run),
    )


def check_run_status(run: dict[str, Any]) -> None:
    """A status outside the known sets ends the wait with a clear error instead of waiting for the timeout."""
    status = run_status(run).lower()
    if status and status not in ACTIVE_RUN_STATUSES | FAILED_RUN_STATUSES | SUCCEEDED_RUN_STATUSES:
        raise PermanentError(f"flow run {run.get('id')} has an unknown status {run_status(run)!r}")


def latest_first(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def started(run: dict[str, Any]) -> int:
        duration = (run.get("metrics") or {}).get("durationSummary") or {}
        return int(duration.get("startedAtUTC") or run.get("createdAt") or 0)

    return sorted(runs, key=started, reverse=True)


@dataclass(frozen=True)
class RunsReport:
    runs: list[RunSummary]
    report_file: str | None = None

    def failures(self) -> list[RunSummary]:
        """The latest run of each flow, when it failed: an old failure already reported does not fail every
        later DAG run."""
        latest: dict[str, RunSummary] = {}
        for run in self.runs:  # latest first
            latest.setdefault(run.flow_id, run)
        return [run for run in latest.values() if run.failed]

    def totals(self) -> dict[str, int]:
        return {
            "runs": len(self.runs),
            "records_read": sum(r.records_read for r in self.runs),
            "records_ingested": sum(r.records_ingested for r in self.runs),
            "records_failed": sum(r.records_failed for r in self.runs),
        }

    def to_xcom(self) -> dict[str, Any]:
        return {"runs": [asdict(r) for r in self.runs], "report_file": self.report_file, "totals": self.totals()}

    @classmethod
    def from_xcom(cls, value: dict[str, Any]) -> RunsReport:
        return cls([RunSummary(**r) for r in value["runs"]], value.get("report_file"))
