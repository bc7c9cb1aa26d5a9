"""Experience Platform API calls the project makes: Flow Service connections, audiences, export jobs and
Data Access downloads. Paths are relative to the connection's Platform base URL."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from audience_sync import storage
from audience_sync.constants import AUDIENCE_STATUSES
from audience_sync.hooks.aep import AepHook
from audience_sync.hooks.base import ApiError

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


class UnknownAudienceError(ValueError):
    """An audience named in a task exists neither as an id nor as a name."""


class DownloadSizeMismatch(IOError):
    """A downloaded part's size differs from the length Data Access reported."""


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
        """Ids or names → ``[{id, name}]`` in the order given; an unknown one fails naming the available ones."""
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
                resolved.append({"id": match["id"], "name": match.get("name") or match["id"]})
        if unknown:
            names = ", ".join(sorted(repr(a.get("name")) for a in audiences)) or "none"
            raise UnknownAudienceError(
                f"unknown audience(s) {', '.join(map(repr, unknown))}; available audiences: {names}"
            )
        return resolved

    # --- export jobs ------------------------------------------------------------------------------
    @staticmethod
    def export_job_body(
        audience_ids: list[str], dataset_id: str, merge_policy_id: str, fields: str = DEFAULT_EXPORT_FIELDS
    ) -> dict[str, Any]:
        """Statuses set explicitly: the documented defaults disagree (Segmentation "Segment export jobs
        endpoint"). ``segmentPerBatch: false`` puts every audience in one batch."""
        return {
            "fields": fields,
            "mergePolicy": {"id": merge_policy_id},
            "filter": {
                "segments": [
                    {"segmentId": audience_id, "segmentNs": "ups", "status": list(AUDIENCE_STATUSES)}
                    for audience_id in audience_ids
                ]
            },
            "destination": {"datasetId": dataset_id, "segmentPerBatch": False},
            "schema": {"name": "_xdm.context.profile"},
        }

    def create_export_job(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.hook.request_json("POST", f"{UPS}/export/jobs", json=body)

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

    def list_file_parts(self, file_id: str) -> list[dict[str, Any]]:
        """``GET /files/{id}`` → parts ``{name, length}`` (length comes as a string in Adobe's examples)."""
        parts = self.hook.paginate(f"{DATA_ACCESS}/files/{file_id}", ("data",), {"start": 0, "limit": 100})
        return [{"name": p["name"], "length": int(p["length"])} for p in parts if "name" in p]

    def download_part(self, file_id: str, name: str, destination, expected_length: int | None = None) -> int:
        """Stream ``GET /files/{id}?path=<name>`` ("Data Access API guide": the file's bytes) to a local or
        object-storage path chunk by chunk, under a temporary name renamed only once its size matches the
        reported length. A broken transfer leaves nothing behind: the task's retry downloads again."""
        destination = storage.as_path(destination)
        tmp = destination.parent / f".{destination.name}.tmp"
        response = self.hook.request("GET", f"{DATA_ACCESS}/files/{file_id}", params={"path": name}, stream=True)
        written = 0
        try:
            with tmp.open("wb") as handle:
                for chunk in response.iter_content(CHUNK_SIZE):
                    handle.write(chunk)
                    written += len(chunk)
            if expected_length is not None and written != expected_length:
                raise DownloadSizeMismatch(
                    f"AEP file {file_id} part {name!r}: wrote {written} bytes, Data Access reported {expected_length}"
                )
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            response.close()
        tmp.rename(destination)
        return written


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


__all__ = ["AepClient", "ApiError", "UnknownAudienceError", "DownloadSizeMismatch", "parquet_footer"]
