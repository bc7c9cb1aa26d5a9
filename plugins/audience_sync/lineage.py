"""OpenLineage datasets of the sync's tasks, built from their typed results (no Airflow, no I/O).

Each operator's ``get_openlineage_facets_on_complete`` is one call here; :meth:`Lineage.operator_lineage`
imports the OpenLineage provider only then, so the project runs without it. Names follow the OpenLineage
naming spec (namespace = the data source, name = the dataset within it):

- AEP: namespace ``aep://<IMS org id, percent-encoded>``, names ``<sandbox>/audiences/<audience id>`` and
  ``<sandbox>/datasets/<dataset id>`` (ids are unique within a sandbox, and a sandbox within an org);
- HubSpot: namespace ``hubspot://<API host>``, names ``contacts`` and ``contacts/properties``;
- files: a local path is namespace ``file`` and its absolute path; object storage
  (``s3://conn_id@bucket/key``) is namespace ``s3://bucket`` and the key, without Airflow's connection id.

Only ids, paths, property names and counts go in: never an email, a credential or a record's value.
A task that failed has no result (``None``): it reports no dataset rather than a guess.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from audience_sync.contracts import (
    CommitResult,
    ExportResult,
    MapResult,
    PlanResult,
    SnapshotCandidate,
    UpsertSummary,
)

HUBSPOT_DEFAULT_HOST = "api.hubapi.com"


@dataclass(frozen=True)
class DatasetRef:
    """One dataset: where it is, and what the task knows of it (rows, files, field names)."""

    namespace: str
    name: str
    rows: int | None = None
    files: int | None = None
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class Lineage:
    """What a task read and wrote."""

    inputs: tuple[DatasetRef, ...] = ()
    outputs: tuple[DatasetRef, ...] = ()

    def operator_lineage(self) -> Any:
        """The provider's ``OperatorLineage``, or None when the OpenLineage provider is not installed."""
        try:
            from airflow.providers.openlineage.extractors import OperatorLineage
            from openlineage.client.event_v2 import InputDataset, OutputDataset
            from openlineage.client.facet_v2 import (
                input_statistics_input_dataset,
                output_statistics_output_dataset,
                schema_dataset,
            )
        except ImportError:
            return None

        def dataset(ref: DatasetRef, cls: type, side: str, statistics: type) -> Any:
            """An Input/OutputDataset: field names as a schema facet, rows and files as its statistics facet."""
            facets = {}
            if ref.fields:
                fields = [schema_dataset.SchemaDatasetFacetFields(name=name) for name in ref.fields]
                facets["schema"] = schema_dataset.SchemaDatasetFacet(fields=fields)
            counted = ref.rows is not None or ref.files is not None
            side_facets = {f"{side}Statistics": statistics(rowCount=ref.rows, fileCount=ref.files)} if counted else {}
            return cls(ref.namespace, ref.name, facets=facets, **{f"{side}Facets": side_facets})

        inputs = [
            dataset(ref, InputDataset, "input", input_statistics_input_dataset.InputStatisticsInputDatasetFacet)
            for ref in self.inputs
        ]
        outputs = [
            dataset(ref, OutputDataset, "output", output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet)
            for ref in self.outputs
        ]
        return OperatorLineage(inputs=inputs, outputs=outputs)


# --- naming ---------------------------------------------------------------------------------------
def file_dataset(path: str, rows: int | None = None, files: int | None = None) -> DatasetRef:
    """A file or folder: a plain path or ``file://`` URL → ``file``; ``scheme://[conn_id@]bucket/key`` →
    ``scheme://bucket`` and ``key``."""
    text = str(path)
    if "://" not in text:
        return DatasetRef("file", posixpath.normpath(posixpath.abspath(text)), rows, files)
    parts = urlsplit(text)
    if parts.scheme in ("file", "local"):
        return DatasetRef("file", posixpath.normpath(unquote(parts.netloc + parts.path) or "/"), rows, files)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    key = posixpath.normpath(unquote(parts.path).lstrip("/")) if parts.path.strip("/") else ""
    return DatasetRef(f"{parts.scheme}://{host}", key, rows, files)


def _folder(path: str) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[0]


def aep_namespace(org_id: str) -> str:
    """``aep://<org id>``, its ``@`` (``…@AdobeOrg``) percent-encoded: unencoded it would read as user info."""
    return f"aep://{quote(org_id, safe='')}"


def aep_audience(org_id: str, sandbox: str, audience_id: str) -> DatasetRef:
    return DatasetRef(aep_namespace(org_id), f"{sandbox}/audiences/{audience_id}")


def aep_dataset(org_id: str, sandbox: str, dataset_id: str, rows: int | None = None) -> DatasetRef:
    return DatasetRef(aep_namespace(org_id), f"{sandbox}/datasets/{dataset_id}", rows)


def hubspot_namespace(host: str | None, port: int | None = None) -> str:
    """``hubspot://<host[:port]>`` of the Airflow connection's host (a URL or a bare host; default HubSpot's)."""
    text = (host or HUBSPOT_DEFAULT_HOST).strip()
    parts = urlsplit(text if "://" in text else f"https://{text}")
    netloc = parts.hostname or HUBSPOT_DEFAULT_HOST
    port = parts.port or port
    return f"hubspot://{netloc}:{port}" if port else f"hubspot://{netloc}"


# --- per task -------------------------------------------------------------------------------------
def export_lineage(
    export: Mapping[str, Any] | ExportResult | None,
    settings: Any,
    output_dir: str,
    dataset_id: str | None = None,
    source_files: str | None = None,
) -> Lineage:
    """``export_audiences``: the audiences and the export dataset read in AEP (or the ``source_files``
    converted instead of a job), the export folder written. ``settings``: the AEP hook's (``org_id``,
    ``sandbox_name``, ``export_dataset_id``), of which only those names are read."""
    if export is None:
        return Lineage()
    result = ExportResult.from_xcom(export)
    org, sandbox = settings.org_id, settings.sandbox_name
    inputs = [aep_audience(org, sandbox, a.id) for a in result.audiences]
    if source_files:
        inputs.append(file_dataset(source_files))
    elif dataset_id or settings.export_dataset_id:
        inputs.append(aep_dataset(org, sandbox, dataset_id or settings.export_dataset_id, result.rows))
    output = file_dataset(str(output_dir), rows=result.rows, files=len(result.paths))
    return Lineage(tuple(inputs), (output,))


def _export_folder(export: ExportResult) -> list[DatasetRef]:
    return [file_dataset(_folder(export.paths[0]), export.rows, len(export.paths))] if export.paths else []


def map_lineage(
    export: Mapping[str, Any] | ExportResult, mapped: Mapping[str, Any] | MapResult | None
) -> Lineage:
    """``map_contacts``: the export folder read; the mapped contacts' folder and the rejects file written."""
    if mapped is None:
        return Lineage()
    export, mapped = ExportResult.from_xcom(export), MapResult.from_xcom(mapped)
    outputs = []
    if mapped.mapped_paths:
        outputs.append(
            file_dataset(
                _folder(mapped.mapped_paths[0]),
                rows=mapped.counts.get("valid"),
                files=len(mapped.mapped_paths),
            )
        )
    outputs.append(file_dataset(mapped.rejects_path, rows=mapped.counts.get("rejected"), files=1))
    return Lineage(tuple(_export_folder(export)), tuple(outputs))


def plan_lineage(mapped: Mapping[str, Any] | MapResult, plan: Mapping[str, Any] | PlanResult | None) -> Lineage:
    """``plan_sync``: the mapped contacts, the map rejects (held back) and the last snapshot read; each
    send chunk (one upsert task's input) and the next snapshot written."""
    if plan is None:
        return Lineage()
    mapped, plan = MapResult.from_xcom(mapped), PlanResult.from_xcom(plan)
    inputs = [file_dataset(_folder(mapped.mapped_paths[0]))] if mapped.mapped_paths else []
    inputs.append(file_dataset(mapped.rejects_path))
    if plan.previous_snapshot_path:
        inputs.append(file_dataset(plan.previous_snapshot_path))
    outputs = [file_dataset(path) for path in plan.send_paths]
    outputs.append(file_dataset(plan.next_snapshot_path))
    return Lineage(tuple(inputs), tuple(outputs))


def properties_lineage(
    hubspot: str, audience_properties: Mapping[str, str] | None, target_properties: Iterable[str]
) -> Lineage:
    """``ensure_audience_properties``: HubSpot's contact properties written, as field names: the audience
    properties (its result, audience id → property) and the mapping's targets it checked."""
    if audience_properties is None:
        return Lineage()
    fields = tuple(sorted({*audience_properties.values(), *target_properties}))
    return Lineage((), (DatasetRef(hubspot, "contacts/properties", fields=fields),))


def upsert_lineage(input_path: str, summary: Mapping[str, Any] | UpsertSummary | None, hubspot: str) -> Lineage:
    """``upsert_contacts``: the send chunk read; HubSpot's contacts (created + updated) and the chunk's
    rejects file written."""
    if summary is None:
        return Lineage()
    summary = UpsertSummary.from_xcom(summary)
    return Lineage(
        (file_dataset(input_path, rows=summary.records, files=1),),
        (
            DatasetRef(hubspot, "contacts", rows=summary.created + summary.updated),
            file_dataset(summary.rejects_path, rows=summary.rejected, files=1),
        ),
    )


def candidate_lineage(
    plan: Mapping[str, Any] | PlanResult,
    upserts: Iterable[UpsertSummary],
    candidate: Mapping[str, Any] | SnapshotCandidate | None,
) -> Lineage:
    """``build_snapshot_candidate``: the planned next snapshot, the last snapshot and every chunk's upsert
    rejects and gone contacts read; the candidate and ``expected_counts.json`` written."""
    if candidate is None:
        return Lineage()
    plan, candidate = PlanResult.from_xcom(plan), SnapshotCandidate.from_xcom(candidate)
    read = [plan.next_snapshot_path, plan.previous_snapshot_path]
    for summary in upserts:
        read += [summary.rejects_path, summary.gone_path]
    written = (candidate.snapshot_candidate_path, candidate.expected_counts_path)
    return Lineage(tuple(file_dataset(p) for p in read if p), tuple(file_dataset(p) for p in written))


def commit_lineage(
    candidate: Mapping[str, Any] | SnapshotCandidate, committed: Mapping[str, Any] | CommitResult | None
) -> Lineage:
    """``commit_snapshot``: the candidate read, the snapshot (what the next run's plan reads) written."""
    if committed is None:
        return Lineage()
    return Lineage(
        (file_dataset(SnapshotCandidate.from_xcom(candidate).snapshot_candidate_path),),
        (file_dataset(CommitResult.from_xcom(committed).snapshot_path),),
    )
