"""Experience Platform API calls the project makes: Flow Service connections, audiences, export jobs and
Data Access downloads. Paths are relative to the connection's Platform base URL."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from audience_sync import storage
from audience_sync.config import check_input_size
from audience_sync.errors import ConfigurationError, InputError, TransientError
from audience_sync.constants import AUDIENCE_STATUSES
from audience_sync.hooks.aep import AepHook
from audience_sync.hooks.base import ApiError
from audience_sync.mapping import AUDIENCE_NAMESPACE
from audience_sync.source_files import PART_NAME

log = logging.getLogger(__name__)

# experienceleague.adobe.com: Flow Service API (sources tutorials), Segmentation Service API
# ("Audiences endpoint", "Segment export jobs endpoint") and Data Access API ("Data Access API guide").
FLOW = "data/foundation/flowservice"
UPS = "data/core/ups"
DATA_ACCESS = "data/foundation/export"

HUBSPOT_CONNECTION_SPEC_ID = "cc6a4487-9e91-433e-a3a3-9cf6626c1806"  # seeds 000-003
DEFAULT_EXPORT_FIELDS = (
    "_id,identityMap,personalEmail.address,person.name.firstName,person.name.lastName,"
    "workAddress.street1,workAddress.city,workAddress.country,segmentMembership"
)
CHUNK_SIZE = 1 << 20
# Platform-built audiences say ``namespace: AEPSegments`` and are exported under ``ups`` (AUDIENCE_NAMESPACE).
PLATFORM_AUDIENCE_NAMESPACES = frozenset({"aepsegments", AUDIENCE_NAMESPACE})
MAX_DIRECTORY_DEPTH = 8  # Data Access directories nest; a deeper chain is an answer we do not understand


class UnknownAudienceError(ConfigurationError):
    """An audience named in a task exists neither as an id nor as a name."""


class DownloadSizeMismatch(TransientError, IOError):
    """A downloaded part's size differs from the length Data Access reported."""


def audience_namespace(audience: dict[str, Any]) -> str:
    """The segmentMembership namespace an audience is exported under (Segmentation "Audiences endpoint":
    ``namespace``): ``ups`` for Platform-built audiences (``AEPSegments``, or none given), otherwise the
    audience's own namespace (e.g. ``AAM`` for Audience Manager, custom uploads' namespace)."""
    namespace = str(audience.get("namespace") or "").strip()
    if not namespace or namespace.lower() in PLATFORM_AUDIENCE_NAMESPACES:
        return AUDIENCE_NAMESPACE
    return namespace


def check_export_count(job: dict[str, Any], rows_read: int) -> None:
    """Fail before any write when the rows read differ from the job's ``metrics.totalExportedProfileCounter``
    (Segmentation "Export jobs endpoint" example); a job without the counter is not checked."""
    counter = (job.get("metrics") or {}).get("totalExportedProfileCounter")
    if counter is None:
        return
    try:
        expected = int(counter)
    except (TypeError, ValueError):
        raise InputError(
            f"AEP export job {job.get('id')}: metrics.totalExportedProfileCounter {counter!r} is not a number"
        ) from None
    if expected != rows_read:
        raise InputError(
            f"AEP export job {job.get('id')} reports {expected} exported profiles but {rows_read} rows were read "
            "from its files; nothing was written"
        )


def first_item(body: dict[str, Any] | None) -> dict[str, Any]:
    """Flow Service wraps single resources in ``{"items": [...]}``; other APIs answer the object itself."""
    body = body or {}
    items = body.get("items")
    return items[0] if isinstance(items, list) and items else body


class AepClient:
    def __init__(self, hook: AepHook) -> None:
        self.hook = hook

    # --- Flow Service -----------------------------------------------------------------------------
    def get_connection_spec(self, spec_id: str) -> dict[str, Any]:
        return first_item(self.hook.request_json("GET", f"{FLOW}/connectionSpecs/{spec_id}"))

    def list_connections(self, property_filter: str | None = None) -> list[dict[str, Any]]:
        """``property=`` filters server side, e.g. ``connectionSpec.id==<id>`` (Flow Service API reference)."""
        params = {"property": property_filter} if property_filter else {}
        return list(self.hook.paginate(f"{FLOW}/connections", ("items",), params))

    def get_connection(self, connection_id: str) -> dict[str, Any]:
        return first_item(self.hook.request_json("GET", f"{FLOW}/connections/{connection_id}"))

    def create_connection(self, payload: dict[str, Any]) -> dict[str, Any]:
        """→ ``{"id", "etag"}`` (seeds 000-003). The payload holds secrets: never log it."""
        return self.hook.request_json("POST", f"{FLOW}/connections", json=payload)

    def delete_connection(self, connection_id: str) -> None:
        self.hook.request("DELETE", f"{FLOW}/connections/{connection_id}")

    # --- audiences --------------------------------------------------------------------------------
    def list_audiences(self, page_size: int = 100) -> list[dict[str, Any]]:
        params = {"start": 0, "limit": page_size}
        return list(self.hook.paginate(f"{UPS}/audiences", ("children", "audiences", "items"), params))

    def get_audience(self, audience_id: str) -> dict[str, Any]:
        return self.hook.request_json("GET", f"{UPS}/audiences/{audience_id}")

    def resolve_audiences(self, ids_or_names: Iterable[str]) -> list[dict[str, str]]:
        """Ids or names → ``[{id, name, namespace}]`` in the order given (``namespace``: see
        ``audience_namespace``); an unknown one fails naming the available ones."""
        wanted = [ids_or_names] if isinstance(ids_or_names, str) else list(ids_or_names)
        if not wanted:
            raise UnknownAudienceError("no audience given: name at least one audience id or name")
        audiences = self.list_audiences()
        by_id = {a["id"]: a for a in audiences}
        by_name: dict[str, list[dict]] = {}
        for audience in audiences:
            by_name.setdefault(audience.get("name"), []).append(audience)
        resolved, unknown = [], []
        for key in wanted:
            if key in by_id:
                match = by_id[key]
            elif len(by_name.get(key, [])) == 1:
                match = by_name[key][0]
            elif key in by_name:
                ids = ", ".join(a["id"] for a in by_name[key])
                raise UnknownAudienceError(f"audience name {key!r} is ambiguous ({ids}); use the id")
            else:
                unknown.append(key)
                continue
            if all(r["id"] != match["id"] for r in resolved):
                resolved.append(
                    {
                        "id": match["id"],
                        "name": match.get("name") or match["id"],
                        "namespace": audience_namespace(match),
                    }
                )
        if unknown:
            names = ", ".join(sorted(repr(a.get("name")) for a in audiences)) or "none"
            raise UnknownAudienceError(
                f"unknown audience(s) {', '.join(map(repr, unknown))}; available audiences: {names}"
            )
        return resolved

    # --- export jobs ------------------------------------------------------------------------------
    @staticmethod
    def export_job_body(
        audiences: list[dict[str, str] | str],
        dataset_id: str,
        merge_policy_id: str,
        fields: str = DEFAULT_EXPORT_FIELDS,
    ) -> dict[str, Any]:
        """``audiences`` as ``resolve_audiences`` returns them, each sent with its own ``segmentNs`` (a bare
        id means a Platform-built audience, ``ups``).
        Statuses set explicitly: the documented defaults disagree (Segmentation "Segment export jobs
        endpoint"). ``segmentPerBatch: false`` puts every audience in one batch."""
        return {
            "fields": fields,
            "mergePolicy": {"id": merge_policy_id},
            "filter": {
                "segments": [
                    {"segmentId": a["id"], "segmentNs": a.get("namespace") or AUDIENCE_NAMESPACE,
                     "status": list(AUDIENCE_STATUSES)}
                    for a in ({"id": x} if isinstance(x, str) else x for x in audiences)
                ]
            },
            "destination": {"datasetId": dataset_id, "segmentPerBatch": False},
            "schema": {"name": "_xdm.context.profile"},
        }

    def create_export_job(self, body: dict[str, Any]) -> dict[str, Any]:
        """Resent after a 5xx or a dropped connection: at worst AEP runs a second export job whose
        result nobody reads, which costs time but never writes a wrong contact."""
        return self.hook.request_json("POST", f"{UPS}/export/jobs", json=body, resend_safe=True)

    def get_export_job(self, job_id: str | int) -> dict[str, Any]:
        return self.hook.request_json("GET", f"{UPS}/export/jobs/{job_id}")

    def cancel_export_job(self, job_id: str | int) -> dict[str, Any]:
        """``DELETE /export/jobs/{id}`` (segmentation.yaml, ``cancelExportJob``: "Cancel or delete an export
        job") → ``{status: bool, message}``."""
        return self.hook.request_json("DELETE", f"{UPS}/export/jobs/{job_id}") or {}

    # --- Data Access ------------------------------------------------------------------------------
    def list_batch_files(self, batch_id: str) -> list[str]:
        """``GET /batches/{id}/files`` → the batch's ``dataSetFileId`` values."""
        files = self.hook.paginate(f"{DATA_ACCESS}/batches/{batch_id}/files", ("data",), {"start": 0, "limit": 100})
        return [f["dataSetFileId"] for f in files]

    def iter_export_parts(self, batch_id: str, max_depth: int = MAX_DIRECTORY_DEPTH) -> Iterator[tuple[str, str, int]]:
        """Every downloadable part of a batch as ``(file_id, name, length)``, in listing order.

        ``GET /files/{id}`` ("Data Access API guide", access and download files) lists either the file's
        parts ``{name, length}`` (length as a string in Adobe's examples) or, when the id points to a
        directory, further ``{dataSetFileId}`` entries, which are followed up to ``max_depth`` levels."""
        for file_id in self.list_batch_files(batch_id):
            yield from self._file_parts(file_id, (file_id,), max_depth)

    def _file_parts(self, file_id: str, path: tuple[str, ...], max_depth: int) -> Iterator[tuple[str, str, int]]:
        entries = self.hook.paginate(f"{DATA_ACCESS}/files/{file_id}", ("data",), {"start": 0, "limit": 100})
        for entry in entries:
            if entry.get("name") is not None:
                try:
                    length = int(entry["length"])
                except (KeyError, TypeError, ValueError):
                    raise InputError(
                        f"AEP file {file_id} part {entry['name']!r}: length {entry.get('length')!r} is not a number"
                    ) from None
                yield file_id, str(entry["name"]), length
            elif entry.get("dataSetFileId"):
                child = str(entry["dataSetFileId"])
                if child in path:
                    raise InputError(f"AEP file directory {' > '.join(path)} contains itself ({child})")
                if len(path) >= max_depth:
                    raise InputError(f"AEP file directory {' > '.join(path)} nests deeper than {max_depth} levels")
                yield from self._file_parts(child, (*path, child), max_depth)
            else:
                raise InputError(
                    f"AEP file {file_id}: an entry has neither a name nor a dataSetFileId: {sorted(entry)}"
                )

    def download_part(self, file_id: str, name: str, destination, expected_length: int | None = None) -> int:
        """Stream ``GET /files/{id}?path=<name>`` ("Data Access API guide": the file's bytes) to a local or
        object-storage path chunk by chunk, under a temporary name renamed only once its size matches the
        reported length. A broken transfer leaves nothing behind: the task's retry downloads again."""
        response = self.hook.request("GET", f"{DATA_ACCESS}/files/{file_id}", params={"path": name}, stream=True)
        written = 0
        with contextlib.closing(response), storage.atomic_path(storage.as_path(destination)) as tmp:
            with tmp.open("wb") as handle:
                for chunk in response.iter_content(CHUNK_SIZE):
                    handle.write(chunk)
                    written += len(chunk)
            if expected_length is not None and written != expected_length:
                raise DownloadSizeMismatch(
                    f"AEP file {file_id} part {name!r}: wrote {written} bytes, Data Access reported {expected_length}"
                )
        return written

    def download_export(
        self, job: dict[str, Any], folder, max_part_bytes: int, part_name: str = PART_NAME
    ) -> ExportDownload:
        """Every Parquet part of a SUCCEEDED job's batch into ``folder`` (directories followed), rows counted
        from the footers and checked against the job's profile counter before anything downstream runs
        (no part at all against a non-zero counter fails too). A part whose reported length exceeds
        ``max_part_bytes`` (setting ``max_input_bytes``) fails before it is downloaded; ``download_part``
        holds the bytes written to that length. A part that is not Parquet is logged and left out; the
        count check then fails the run if it held rows."""
        batch_id = (job.get("destination") or {}).get("batchId")
        if not batch_id:
            raise InputError(f"AEP export job {job.get('id')} has no destination.batchId to download")
        folder = storage.as_path(folder)
        download = ExportDownload()
        for file_id, name, length in self.iter_export_parts(batch_id):
            if not name.lower().endswith(".parquet"):
                log.warning("AEP file %s: skipped part %r, not a Parquet file", file_id, name)
                continue
            check_input_size(f"AEP file {file_id} part {name!r}", length, max_part_bytes)
            path = folder / part_name.format(len(download.paths))
            download.bytes += self.download_part(file_id, name, path, length)
            download.rows += parquet_footer(path)[1]
            download.paths.append(str(path))
        check_export_count(job, download.rows)
        return download


@dataclass
class ExportDownload:
    paths: list[str] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0


def parquet_footer(path) -> tuple[pa.Schema, int]:
    """Schema and row count from the Parquet footer, without reading the data."""
    path = storage.as_path(path)
    local = storage.local_or_none(path)
    if local:
        footer = pq.ParquetFile(local)
        return footer.schema_arrow, footer.metadata.num_rows
    with path.open("rb") as handle:
        footer = pq.ParquetFile(handle)
        return footer.schema_arrow, footer.metadata.num_rows


__all__ = [
    "AepClient",
    "ApiError",
    "UnknownAudienceError",
    "DownloadSizeMismatch",
    "ExportDownload",
    "audience_namespace",
    "check_export_count",
    "parquet_footer",
]
