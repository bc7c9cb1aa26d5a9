"""The AEP sandbox's HubSpot → AEP dataflow routes: explore, source and target connections, Catalog datasets,
Data Prep mapping sets, flow specs, flows and runs with metrics. ``register(app)`` adds them to the AEP
sandbox (``sandbox.aep.AepApp``), on its gateway checks, state file and reset.

Public docs behind each rule:
  [SPEC]     Adobe's OpenAPI files, vendored in include/openapi/aep/ (flow-service, catalog, data-prep)
  [EXPLORE]  "Explore a marketing automation system using the Flow Service API"
             https://experienceleague.adobe.com/en/docs/experience-platform/sources/api-tutorials/explore/marketing-automation
  [COLLECT]  "Create a dataflow for marketing automation sources using the Flow Service API"
             https://experienceleague.adobe.com/en/docs/experience-platform/sources/api-tutorials/collect/marketing-automation
  [MONITOR]  "Monitor dataflows using the Flow Service API"
             https://experienceleague.adobe.com/en/docs/experience-platform/dataflows/api/monitor
  [CATALOG]  "Create a dataset using APIs" / Catalog API reference
  [DATAPREP] "Mapping sets endpoint" (Data Prep API guide)

Run-time settings (``POST /_sandbox/faults {"extra": {...}}``; the whole ``extra`` object is replaced):
  ``flow_run_seconds`` (1.0): how long a run stays inProgress; ``fail_runs`` (0): the next N runs end failed;
  ``explore_wrapped`` (false): explore ROOT answers ``{"items": [...]}`` instead of the documented bare array;
  ``preview_as_lists`` (false): preview rows come as arrays in column order instead of objects;
  ``flow_spec_transformations_as_list`` (false): a flow spec's transformationSpecs as the docs' array.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from sandbox.aep import FLOW, _int_arg, _now_ms, _property_filter, aep_error, flow_error
from sandbox.aep_store import HUBSPOT_CONNECTION_SPEC_ID
from sandbox.common import Request, Response, new_id

CATALOG = "/data/foundation/catalog"
CONVERSION = "/data/foundation/conversion"
DATA_LAKE_CONNECTION_SPEC_ID = "c604ff05-7f1a-43c0-8e18-33bf874cb11c"  # [COLLECT] target connection
CRM_FLOW_SPEC_ID = "14518937-270c-4525-bdec-c2ba7cce3860"  # [COLLECT] flowSpecs?property=name==CRMToAEP
FREQUENCY_SECONDS = {"minute": 60, "hour": 3600, "day": 86400, "week": 604800}
SCHEMA_ID = re.compile(r"^https://ns\.adobe\.com/[^/]+/schemas/[^/]+$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS source_connections (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE, body TEXT);
CREATE TABLE IF NOT EXISTS target_connections (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE, body TEXT);
CREATE TABLE IF NOT EXISTS mapping_sets (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE, body TEXT);
CREATE TABLE IF NOT EXISTS flows (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE, body TEXT);
CREATE TABLE IF NOT EXISTS flow_runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE, flow_id TEXT, slot INTEGER, started REAL, fail INTEGER
);
"""
TABLES = ("source_connections", "target_connections", "mapping_sets", "flows", "flow_runs")

# Synthetic HubSpot tables, with column names in the explore tutorial's style ("Properties_Firstname_Value",
# "Added_At") [EXPLORE]. Rows are generated; the emails are fake but personal-data shaped on purpose.
HUBSPOT_TABLES: dict[str, list[tuple[str, str]]] = {
    "Contacts": [
        ("Id", "string"),
        ("Properties_Email_Value", "string"),
        ("Properties_Firstname_Value", "string"),
        ("Properties_Lastname_Value", "string"),
        ("Properties_City_Value", "string"),
        ("Properties_Country_Value", "string"),
        ("Added_At", "string"),
        ("Updated_At", "string"),
    ],
    "Companies": [
        ("Id", "string"),
        ("Properties_Name_Value", "string"),
        ("Properties_Domain_Value", "string"),
        ("Properties_Numberofemployees_Value", "integer"),
        ("Added_At", "string"),
        ("Updated_At", "string"),
    ],
    "Deals": [
        ("Id", "string"),
        ("Properties_Dealname_Value", "string"),
        ("Properties_Amount_Value", "number"),
        ("Properties_Dealstage_Value", "string"),
        ("Updated_At", "string"),
    ],
}
TABLE_ROWS = {"Contacts": 120, "Companies": 40, "Deals": 60}
FAILED_ROWS = {"Contacts": 2, "Companies": 0, "Deals": 1}  # rows a run rejects (a bad email, a bad amount)
XDM_TYPES = {"string": {"type": "string"}, "integer": {"type": "integer"}, "number": {"type": "number"}}

CRM_FLOW_SPEC = {
    "id": CRM_FLOW_SPEC_ID,
    "name": "CRMToAEP",
    "providerId": "0ed90a81-07f4-4586-8190-b40eccef1c5a",
    "version": "1.0",
    "sourceConnectionSpecIds": [HUBSPOT_CONNECTION_SPEC_ID],
    "targetConnectionSpecIds": [DATA_LAKE_CONNECTION_SPEC_ID],
    # flow-service.yaml types transformationSpecs as one object (its mappingId/mappingVersion spec); Adobe's
    # "Update flow specifications" page shows an array of them. The spec's form is the default; the setting
    # ``flow_spec_transformations_as_list`` serves the page's array (with the Copy spec) [SPEC].
    "transformationSpecs": {
        "name": "Mapping",
        "spec": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"mappingId": {"type": "string"}, "mappingVersion": {"type": "string"}},
            "required": ["mappingId"],
        },
    },
    "scheduleSpec": {
        "name": "PeriodicSchedule",
        "type": "Periodic",
        "spec": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "startTime": {"type": "integer"},
                "frequency": {"type": "string", "enum": ["once", "minute", "hour", "day", "week"]},
                "interval": {"type": "integer"},
                "backfill": {"type": "boolean", "default": True},
            },
            "required": ["startTime", "frequency"],
        },
    },
}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def synthetic_rows(table: str, count: int) -> list[dict[str, Any]]:
    """Deterministic rows of a synthetic HubSpot table."""
    rows = []
    for n in range(count):
        stamp = f"2026-11-{1 + n % 28:02d}T10:00:00Z"
        values = {
            "Id": f"{table[:2].upper()}{1000 + n}",
            "Added_At": stamp,
            "Updated_At": stamp,
            "Properties_Email_Value": f"person{n}@example.com",
            "Properties_Firstname_Value": f"First{n}",
            "Properties_Lastname_Value": f"Last{n}",
            "Properties_City_Value": ("Berlin", "Lyon", "Austin")[n % 3],
            "Properties_Country_Value": ("DE", "FR", "US")[n % 3],
            "Properties_Name_Value": f"Company {n}",
            "Properties_Domain_Value": f"company{n}.example",
            "Properties_Numberofemployees_Value": 10 + n,
            "Properties_Dealname_Value": f"Deal {n}",
            "Properties_Amount_Value": 1000.0 + n,
            "Properties_Dealstage_Value": ("appointmentscheduled", "closedwon")[n % 2],
        }
        rows.append({name: values[name] for name, _ in HUBSPOT_TABLES[table]})
    return rows


def continuation_page(request: Request, items: list[dict[str, Any]], path: str) -> Response:
    """Flow Service lists: ``property`` filters, ``limit`` and ``continuationToken`` paging with ``_links.next``
    [SPEC listFlows, listFlowRuns]; base connections too (``AepApp.list_connections``)."""
    accept = _property_filter(request.query.get("property", []))
    limit = _int_arg(request, "limit", 20, 1, 100)
    token = request.arg("continuationToken")
    try:
        start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
    except ValueError:
        raise flow_error(400, "FLOW-1007-400", "Bad Request", "invalid continuationToken") from None
    matched = [i for i in items if accept(i)]
    result: dict[str, Any] = {"items": matched[start : start + limit]}
    if request.arg("count") == "true":
        result["count"] = len(matched)
    if start + limit < len(matched):
        next_token = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
        query = [f"limit={limit}", f"continuationToken={next_token}"]
        query += [f"property={quote(p, safe='=!~.')}" for p in request.query.get("property", [])]
        result["_links"] = {"next": {"href": f"{path}?{'&'.join(query)}"}}
    return Response(200, result)


class FlowRoutes:
    def __init__(self, app) -> None:
        self.app = app
        self.state = app.state
        self._lock = threading.Lock()
        with self.state as conn:
            for statement in filter(str.strip, SCHEMA.split(";")):
                conn.execute(statement)

    # --- plumbing ---------------------------------------------------------------------------------
    def routes(self) -> None:
        add, platform = self.app.router.add, self.app._platform
        add("GET", f"{FLOW}/connections/(?P<id>[^/]+)/explore", platform(self.explore))
        add("GET", f"{FLOW}/flowSpecs", platform(self.list_flow_specs))
        add("GET", f"{FLOW}/flowSpecs/(?P<id>[^/]+)", platform(self.get_flow_spec))
        for kind, create in (
            ("sourceConnections", self.create_source),
            ("targetConnections", self.create_target),
            ("flows", self.create_flow),
        ):
            table = {"sourceConnections": "source_connections", "targetConnections": "target_connections"}.get(
                kind, kind
            )
            add("POST", f"{FLOW}/{kind}", platform(create))
            add("GET", f"{FLOW}/{kind}", platform(self._lister(table, kind)))
            add("GET", f"{FLOW}/{kind}/(?P<id>[^/]+)", platform(self._getter(table, kind)))
        add("POST", f"{FLOW}/runs", platform(self.create_run))
        add("GET", f"{FLOW}/runs", platform(self.list_runs))
        add("GET", f"{FLOW}/runs/(?P<id>[^/]+)", platform(self.get_run))
        add("POST", f"{CATALOG}/dataSets", platform(self.create_dataset))
        add("GET", f"{CATALOG}/dataSets", platform(self.list_datasets))
        add("GET", f"{CATALOG}/dataSets/(?P<id>[^/]+)", platform(self.get_dataset))
        add("POST", f"{CONVERSION}/mappingSets", platform(self.create_mapping_set))
        add("GET", f"{CONVERSION}/mappingSets", platform(self.list_mapping_sets))
        add("GET", f"{CONVERSION}/mappingSets/(?P<id>[^/]+)", platform(self.get_mapping_set))

    def reset(self) -> None:
        with self.state as conn:
            for table in TABLES:
                conn.execute(f"DELETE FROM {table}")
            conn.execute('DELETE FROM datasets WHERE body LIKE \'%"createdBy": "sandbox-flows"%\'')

    def setting(self, name: str, default: Any) -> Any:
        return (self.app.faults.extra or {}).get(name, default)

    def _take_failure(self) -> bool:
        """Use up one of the ``fail_runs`` countdown."""
        with self._lock:
            left = int(self.setting("fail_runs", 0))
            if left > 0:
                self.app.faults.extra = {**self.app.faults.extra, "fail_runs": left - 1}
                return True
            return False

    def _body(self, request: Request, error=flow_error) -> dict[str, Any]:
        body = self.app._json_body(request, error)
        if not isinstance(body, dict):
            raise error(400, "BODY-0002-400", "Bad Request", "The request body must be a JSON object.")
        return body

    def _stored(self, table: str, resource_id: str) -> dict[str, Any] | None:
        rows = self.state.query(f"SELECT body FROM {table} WHERE id = ?", (resource_id,))
        return json.loads(rows[0]["body"]) if rows else None

    def _all(self, table: str) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.state.query(f"SELECT body FROM {table} ORDER BY seq")]

    def _insert(self, table: str, body: dict[str, Any]) -> None:
        with self.state as conn:
            conn.execute(f"INSERT INTO {table} (id, body) VALUES (?, ?)", (body["id"], json.dumps(body)))

    def _audit(self, request: Request, name: str) -> dict[str, Any]:
        """The audit fields every Flow Service resource carries [SPEC list responses]."""
        now, version = _now_ms(), new_id()
        client = request.headers["x-api-key"]
        return {
            "id": new_id(),
            "createdAt": now,
            "updatedAt": now,
            "createdBy": f"{client}@AdobeID",
            "updatedBy": f"{client}@AdobeID",
            "createdClient": client,
            "updatedClient": client,
            "sandboxName": request.headers["x-sandbox-name"],
            "imsOrgId": request.headers["x-gw-ims-org-id"],
            "name": name,
            "state": "enabled",
            "version": version,
            "etag": f'"{version}"',
        }

    def _lister(self, table: str, kind: str):
        return lambda request: continuation_page(request, self._all(table), f"{FLOW}/{kind}")

    def _getter(self, table: str, kind: str):
        def get(request: Request) -> Response:
            found = self._stored(table, request.params["id"])
            if found is None:
                raise flow_error(404, "FLOW-1001-404", "Not Found", f"{kind} {request.params['id']} was not found")
            return Response(200, {"items": [found]})

        return get

    def _base_connection(self, connection_id: str) -> dict[str, Any]:
        rows = self.state.query("SELECT body FROM connections WHERE id = ?", (connection_id,))
        if not rows:
            raise flow_error(404, "FLOW-1001-404", "Not Found", f"connection {connection_id} was not found")
        return json.loads(rows[0]["body"])

    def _store_connection(self, table: str, request: Request, body: dict, name: str, **fields: Any) -> Response:
        """A validated source or target connection as the list and get answers show it → 201 ``{id, etag}``."""
        spec = body["connectionSpec"]
        stored = {
            **self._audit(request, name),
            "description": body.get("description", ""),
            **fields,
            "data": body["data"],
            "params": body["params"],
            "connectionSpec": {"id": spec["id"], "version": spec.get("version", "1.0")},
        }
        self._insert(table, stored)
        return Response(201, {"id": stored["id"], "etag": stored["etag"]})

    # --- explore [EXPLORE] [SPEC getByConnectionId] --------------------------------------------------
    def explore(self, request: Request) -> Response:
        connection = self._base_connection(request.params["id"])
        if connection["connectionSpec"]["id"] != HUBSPOT_CONNECTION_SPEC_ID:
            raise flow_error(400, "FLOW-1010-400", "Bad Request", "this sandbox explores HubSpot connections only")
        kind = (request.arg("objectType") or "root").lower()  # the spec spells ROOT, the tutorials root
        if kind == "root":
            tables = [
                {"type": "table", "name": name, "path": f"Hubspot.{name}", "canPreview": True, "canFetchSchema": True}
                for name in HUBSPOT_TABLES
            ]
            return Response(200, {"items": tables} if self.setting("explore_wrapped", False) else tables)
        if kind != "table":
            raise flow_error(
                400, "FLOW-1011-400", "Bad Request", f"objectType {request.arg('objectType')!r} is not supported"
            )
        path = request.arg("object") or ""
        name = path.split(".", 1)[1] if path.startswith("Hubspot.") else None
        if name not in HUBSPOT_TABLES:
            raise flow_error(404, "FLOW-1012-404", "Not Found", f"object {path!r} was not found in this connection")
        columns = [{"name": c, "type": t, "xdm": XDM_TYPES[t]} for c, t in HUBSPOT_TABLES[name]]
        body: dict[str, Any] = {"format": "flat", "schema": {"columns": columns}}
        if (request.arg("preview") or "").lower() == "true":
            rows = synthetic_rows(name, 8)
            if self.setting("preview_as_lists", False):
                rows = [[row[c] for c, _ in HUBSPOT_TABLES[name]] for row in rows]
            body["data"] = rows
        return Response(200, body)

    # --- specs ----------------------------------------------------------------------------------------
    def _flow_spec(self) -> dict[str, Any]:
        if not self.setting("flow_spec_transformations_as_list", False):
            return CRM_FLOW_SPEC
        copy = {
            "name": "Copy",
            "spec": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "properties": {"deltaColumn": {"type": "object"}},
                "required": ["deltaColumn"],
            },
        }
        return {**CRM_FLOW_SPEC, "transformationSpecs": [copy, CRM_FLOW_SPEC["transformationSpecs"]]}

    def list_flow_specs(self, request: Request) -> Response:
        accept = _property_filter(request.query.get("property", []))
        return Response(200, {"items": [s for s in (self._flow_spec(),) if accept(s)]})

    def get_flow_spec(self, request: Request) -> Response:
        if request.params["id"] != CRM_FLOW_SPEC_ID:
            raise flow_error(404, "FLOW-1002-404", "Not Found", f"flow spec {request.params['id']} was not found")
        return Response(200, {"items": [self._flow_spec()]})

    # --- source connections [COLLECT] [SPEC createSourceConnection: name, data, connectionSpec required] -
    def create_source(self, request: Request) -> Response:
        body = self._body(request)
        problems = [f"{key} is required" for key in ("name", "data", "connectionSpec") if not body.get(key)]
        base = None
        if not body.get("baseConnectionId"):
            problems.append("baseConnectionId is required for a HubSpot source connection")
        else:
            base = self._base_connection(body["baseConnectionId"])
        spec = body.get("connectionSpec") or {}
        if base is not None and spec.get("id") != base["connectionSpec"]["id"]:
            problems.append("connectionSpec.id must be the base connection's spec")
        if (body.get("data") or {}).get("format") != "tabular":
            problems.append("data.format must be 'tabular' for table-based sources")
        path = (body.get("params") or {}).get("path") or ""
        if not path.startswith("Hubspot.") or path.split(".", 1)[1] not in HUBSPOT_TABLES:
            problems.append(f"params.path {path!r} is not a table of this connection")
        if problems:
            raise flow_error(400, "FLOW-1005-400", "Bad Request", "; ".join(problems))
        return self._store_connection(
            "source_connections", request, body, body["name"], baseConnectionId=body["baseConnectionId"]
        )

    # --- Catalog datasets [CATALOG] [SPEC catalog.yaml /dataSets] ------------------------------------
    def _datasets(self) -> list[dict[str, Any]]:
        return [{**json.loads(r["body"]), "id": r["id"]} for r in self.state.query("SELECT id, body FROM datasets")]

    @staticmethod
    def _dataset_view(dataset: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in dataset.items() if k != "id"}

    def create_dataset(self, request: Request) -> Response:
        body = self._body(request, aep_error)
        problems = []
        if not isinstance(body.get("name"), str) or not body["name"].strip():
            problems.append("name is required")
        schema_id = (body.get("schemaRef") or {}).get("id") if isinstance(body.get("schemaRef"), dict) else None
        if not schema_id or not SCHEMA_ID.match(schema_id):
            problems.append("schemaRef.id must be an XDM schema $id (https://ns.adobe.com/<tenant>/schemas/<id>)")
        if problems:
            raise aep_error(400, "CAT-1400-400", "Bad Request", "; ".join(problems))
        dataset_id = new_id().replace("-", "")[:24]
        now = _now_ms()
        stored = {
            "name": body["name"],
            "schemaRef": body["schemaRef"],
            "imsOrg": request.headers["x-gw-ims-org-id"],
            "created": now,
            "updated": now,
            "createdClient": request.headers["x-api-key"],
            "createdUser": "sandbox-flows",
            "createdBy": "sandbox-flows",
            "version": "1.0.0",
            "tags": body.get("tags") or {},
        }
        with self.state as conn:
            conn.execute("INSERT INTO datasets (id, body) VALUES (?, ?)", (dataset_id, json.dumps(stored)))
        return Response(201, [f"@/dataSets/{dataset_id}"], headers={"Location": f"{CATALOG}/dataSets/{dataset_id}"})

    def list_datasets(self, request: Request) -> Response:
        """``{<id>: dataset}``, filtered by ``name``, paged by ``start``/``limit`` [SPEC]."""
        start = _int_arg(request, "start", 0, 0, 10**9)
        limit = _int_arg(request, "limit", 50, 1, 100)
        name = request.arg("name")
        found = [d for d in self._datasets() if name is None or d.get("name") == name]
        return Response(200, {d["id"]: self._dataset_view(d) for d in found[start : start + limit]})

    def get_dataset(self, request: Request) -> Response:
        found = next((d for d in self._datasets() if d["id"] == request.params["id"]), None)
        if found is None:
            raise aep_error(404, "CAT-1404-404", "Not Found", f"dataset {request.params['id']} was not found")
        return Response(200, {found["id"]: self._dataset_view(found)})

    # --- target connections [COLLECT] [SPEC createTargetConnection: connectionSpec, data required] ---
    def create_target(self, request: Request) -> Response:
        body = self._body(request)
        problems = [f"{key} is required" for key in ("data", "connectionSpec") if not body.get(key)]
        spec = body.get("connectionSpec") or {}
        if spec.get("id") != DATA_LAKE_CONNECTION_SPEC_ID:
            problems.append(f"connectionSpec.id must be the data lake's {DATA_LAKE_CONNECTION_SPEC_ID}")
        dataset_id = (body.get("params") or {}).get("dataSetId")
        dataset = next((d for d in self._datasets() if d["id"] == dataset_id), None)
        schema_id = ((body.get("data") or {}).get("schema") or {}).get("id")
        if dataset is None:
            problems.append(f"params.dataSetId {dataset_id!r} is not a known dataset")
        elif (dataset.get("schemaRef") or {}).get("id") != schema_id:
            problems.append("data.schema.id must be the dataset's schema")
        if problems:
            raise flow_error(400, "FLOW-1005-400", "Bad Request", "; ".join(problems))
        return self._store_connection("target_connections", request, body, body.get("name") or "Target connection")

    # --- Data Prep mapping sets [DATAPREP] [SPEC data-prep.yaml MappingSet] ---------------------------
    def create_mapping_set(self, request: Request) -> Response:
        """The API reference's form (``outputSchema.schemaRef``, ``mappings[{source, destination}]``) and the
        source tutorial's (``xdmSchema``, ``mappings[{sourceAttribute, destinationXdmPath}]``) are both taken."""
        body = self._body(request, aep_error)
        schema_id = ((body.get("outputSchema") or {}).get("schemaRef") or {}).get("id") or body.get("xdmSchema")
        problems = [] if schema_id else ["outputSchema.schemaRef.id (or xdmSchema) is required"]
        mappings, destinations = [], set()
        for number, row in enumerate(body.get("mappings") or []):
            source = row.get("source") or row.get("sourceAttribute") if isinstance(row, dict) else None
            destination = row.get("destination") or row.get("destinationXdmPath") if isinstance(row, dict) else None
            if not source or not destination:
                problems.append(f"mappings[{number}] needs a source and a destination")
                continue
            if row.get("sourceType", "ATTRIBUTE") not in ("ATTRIBUTE", "EXPRESSION", "STATIC"):
                problems.append(f"mappings[{number}].sourceType must be ATTRIBUTE, EXPRESSION or STATIC")
            if destination in destinations:
                problems.append(f"mappings[{number}]: destination {destination!r} is mapped twice")
            destinations.add(destination)
            mappings.append(
                {
                    "id": new_id().replace("-", ""),
                    "sourceType": row.get("sourceType", "ATTRIBUTE"),
                    "source": source,
                    "destination": destination,
                    "name": row.get("name") or destination,
                }
            )
        if not mappings and not problems:
            problems.append("mappings must hold at least one mapping")
        if problems:
            raise aep_error(400, "MAP-1400-400", "Bad Request", "; ".join(problems))
        now = _iso(_now_ms())
        client = request.headers["x-api-key"]
        stored = {
            "id": new_id().replace("-", ""),
            "version": 0,
            "name": body.get("name") or "",
            "createdDate": now,
            "modifiedDate": now,
            "createdBy": client,
            "modifiedBy": client,
            "outputSchema": {
                "schemaRef": {"id": schema_id, "contentType": "application/vnd.adobe.xed-full+json;version=1"}
            },
            "mappings": mappings,
        }
        self._insert("mapping_sets", stored)
        return Response(
            200, {k: stored[k] for k in ("id", "version", "createdDate", "modifiedDate", "createdBy", "modifiedBy")}
        )

    def list_mapping_sets(self, request: Request) -> Response:
        """``{data, _page: {count, limit}, _links}``, filtered by ``name``, paged by ``start``/``limit`` [SPEC]."""
        start = _int_arg(request, "start", 0, 0, 10**9)
        limit = _int_arg(request, "limit", 10, 1, 100)
        name = request.arg("name")
        found = [m for m in self._all("mapping_sets") if name is None or m.get("name") == name]
        page = found[start : start + limit]
        result: dict[str, Any] = {"data": page, "_page": {"count": len(page), "limit": limit}, "_links": {}}
        if start + limit < len(found):
            query = f"start={start + limit}&limit={limit}" + (f"&name={name}" if name else "")
            result["_links"]["next"] = {"href": f"{CONVERSION}/mappingSets?{query}"}
        return Response(200, result)

    def get_mapping_set(self, request: Request) -> Response:
        found = self._stored("mapping_sets", request.params["id"])
        if found is None:
            raise aep_error(404, "MAP-1404-404", "Not Found", f"mapping set {request.params['id']} was not found")
        return Response(200, found)

    # --- flows [COLLECT] [SPEC createFlow] -------------------------------------------------------------
    def _schedule(self, params: Any) -> tuple[dict[str, Any], list[str]]:
        """startTime epoch seconds; frequency once|minute|hour|day|week; interval a non-zero integer, ≥ 15 per
        minute, not needed for once. The spec types interval as a string, the tutorial sends a number: both."""
        if not isinstance(params, dict):
            return {}, ["scheduleParams is required"]
        problems = []
        frequency = params.get("frequency")
        if frequency not in ("once", *FREQUENCY_SECONDS):
            problems.append("scheduleParams.frequency must be once, minute, hour, day or week")
        if not isinstance(params.get("startTime"), int):
            problems.append("scheduleParams.startTime must be an integer (epoch seconds)")
        interval = params.get("interval")
        try:
            interval = int(interval) if interval is not None and not isinstance(interval, bool) else None
        except ValueError:
            interval = -1
        if frequency in FREQUENCY_SECONDS and (interval is None or interval < 1):
            problems.append("scheduleParams.interval must be a non-zero integer")
        if frequency == "minute" and interval is not None and 0 < interval < 15:
            problems.append("scheduleParams.interval must be at least 15 when frequency is minute")
        schedule = {
            "startTime": params.get("startTime"),
            "frequency": frequency,
            "backfill": bool(params.get("backfill", True)),
        }
        if interval is not None and frequency != "once":
            schedule["interval"] = str(interval)
        return schedule, problems

    def create_flow(self, request: Request) -> Response:
        body = self._body(request)
        problems = [] if isinstance(body.get("name"), str) and body["name"].strip() else ["name is required"]
        if (body.get("flowSpec") or {}).get("id") != CRM_FLOW_SPEC_ID:
            problems.append(f"flowSpec.id must be {CRM_FLOW_SPEC_ID} (CRMToAEP) for HubSpot sources")
        sources, targets = body.get("sourceConnectionIds") or [], body.get("targetConnectionIds") or []
        if len(sources) != 1 or self._stored("source_connections", sources[0]) is None:
            problems.append("sourceConnectionIds must name one existing source connection")
        if len(targets) != 1 or self._stored("target_connections", targets[0]) is None:
            problems.append("targetConnectionIds must name one existing target connection")
        transformations = {
            t.get("name"): t.get("params") or {} for t in body.get("transformations") or [] if isinstance(t, dict)
        }
        if not ((transformations.get("Copy") or {}).get("deltaColumn") or {}).get("name"):
            problems.append("CRM sources need a Copy transformation with params.deltaColumn.name")
        mapping_id = (transformations.get("Mapping") or {}).get("mappingId")
        if not mapping_id or self._stored("mapping_sets", mapping_id) is None:
            problems.append(f"the Mapping transformation's mappingId {mapping_id!r} is not a known mapping set")
        schedule, schedule_problems = self._schedule(body.get("scheduleParams"))
        problems += schedule_problems
        if problems:
            raise flow_error(400, "FLOW-1005-400", "Bad Request", "; ".join(problems))
        source = self._stored("source_connections", sources[0])
        target = self._stored("target_connections", targets[0])
        base = self._base_connection(source["baseConnectionId"])
        stored = {
            **self._audit(request, body["name"]),
            "description": body.get("description", ""),
            "flowSpec": {"id": CRM_FLOW_SPEC_ID, "version": "1.0"},
            "sourceConnectionIds": sources,
            "targetConnectionIds": targets,
            "transformations": body["transformations"],
            "scheduleParams": schedule,
            "inheritedAttributes": {
                "sourceConnections": [
                    {
                        "id": source["id"],
                        "connectionSpec": source["connectionSpec"],
                        "baseConnection": {"id": base["id"], "connectionSpec": base["connectionSpec"]},
                    }
                ],
                "targetConnections": [{"id": target["id"], "connectionSpec": target["connectionSpec"]}],
            },
        }
        stored["runs"] = f"/runs?property=flowId=={stored['id']}"
        self._insert("flows", stored)
        return Response(
            201, {"id": stored["id"], "etag": stored["etag"]}, headers={"Location": f"{FLOW}/flows/{stored['id']}"}
        )

    # --- runs [MONITOR] [SPEC listFlowRuns, createFlowRun] ---------------------------------------------
    def _schedule_runs(self) -> None:
        """A scheduled flow gets a run at startTime and every interval after it (the last 10 slots at most);
        a one-time flow gets one at startTime. Runs appear when listed, like export jobs progress when read."""
        now = time.time()
        for flow in self._all("flows"):
            schedule = flow["scheduleParams"]
            start = schedule["startTime"]
            if start > now:
                continue
            step = FREQUENCY_SECONDS.get(schedule["frequency"])
            last = int((now - start) // (step * int(schedule.get("interval", 1)))) if step else 0
            known = {r["slot"] for r in self.state.query("SELECT slot FROM flow_runs WHERE flow_id = ?", (flow["id"],))}
            for slot in range(max(0, last - 9), last + 1):
                if slot not in known:  # the newest slot starts now: it is seen in progress first
                    self._new_run(
                        flow["id"], slot, now if slot == last else start + slot * step * int(schedule["interval"])
                    )

    def _new_run(self, flow_id: str, slot: int, started: float) -> str:
        run_id = new_id()
        with self.state as conn:
            conn.execute(
                "INSERT INTO flow_runs (id, flow_id, slot, started, fail) VALUES (?, ?, ?, ?, ?)",
                (run_id, flow_id, slot, started, 1 if self._take_failure() else 0),
            )
        return run_id

    def _run_view(self, row, flows: dict[str, dict[str, Any]]) -> dict[str, Any]:
        flow = flows[row["flow_id"]]
        table = flow["inheritedAttributes"]["sourceConnections"][0]["id"]
        path = self._stored("source_connections", table)["params"]["path"].split(".", 1)[1]
        started_ms = int(row["started"] * 1000)
        done = time.time() - row["started"] >= float(self.setting("flow_run_seconds", 1.0))
        metrics: dict[str, Any] = {"durationSummary": {"startedAtUTC": started_ms}}
        activity_status: dict[str, Any]
        if not done:
            metrics["statusSummary"] = {"status": "inProgress"}
            activity_status = {"status": "inProgress"}
        elif row["fail"]:
            errors = [
                {
                    "code": "CONNECTOR-1001-500",
                    "message": "Copy activity failed: the source answered 401 Unauthorized for the table "
                    f"{path} (the HubSpot OAuth token was revoked).",
                }
            ]
            metrics["durationSummary"]["completedAtUTC"] = started_ms + 1000
            metrics["recordSummary"] = {"inputRecordCount": 0, "outputRecordCount": 0, "failedRecordCount": 0}
            metrics["statusSummary"] = {"status": "failed", "errors": errors}
            activity_status = {"status": "failed", "errors": errors}
        else:
            total, failed = TABLE_ROWS[path], FAILED_ROWS[path]
            metrics["durationSummary"]["completedAtUTC"] = started_ms + 1000
            metrics["recordSummary"] = {
                "inputRecordCount": total,
                "createdRecordCount": total - failed,
                "outputRecordCount": total - failed,
                "failedRecordCount": failed,
            }
            metrics["sizeSummary"] = {"inputBytes": total * 200, "outputBytes": (total - failed) * 180}
            metrics["statusSummary"] = {"status": "success"}
            activity_status = {"status": "success"}
        return {
            "id": row["id"],
            "createdAt": started_ms,
            "updatedAt": started_ms,
            "flowId": row["flow_id"],
            "flowSpec": flow["flowSpec"],
            "etag": f'"{row["id"]}"',
            "imsOrgId": flow["imsOrgId"],
            "sandboxName": flow["sandboxName"],
            "metrics": metrics,
            "activities": [
                {
                    "id": "copyActivity",
                    "name": "Copy",
                    "durationSummary": metrics["durationSummary"],
                    "statusSummary": activity_status,
                }
            ],
        }

    def _runs(self) -> list[dict[str, Any]]:
        self._schedule_runs()
        flows = {f["id"]: f for f in self._all("flows")}
        rows = self.state.query("SELECT * FROM flow_runs ORDER BY seq")
        return [self._run_view(row, flows) for row in rows if row["flow_id"] in flows]

    def list_runs(self, request: Request) -> Response:
        return continuation_page(request, self._runs(), f"{FLOW}/runs")

    def get_run(self, request: Request) -> Response:
        found = next((r for r in self._runs() if r["id"] == request.params["id"]), None)
        if found is None:
            raise flow_error(404, "FLOW-1001-404", "Not Found", f"run {request.params['id']} was not found")
        return Response(200, {"items": [found]})

    def create_run(self, request: Request) -> Response:
        """On-demand runs exist for flows scheduled for one-time ingestion only [SPEC createFlowRun]."""
        body = self._body(request)
        flow = self._stored("flows", body.get("flowId") or "")
        if flow is None:
            raise flow_error(400, "FLOW-1005-400", "Bad Request", f"flowId {body.get('flowId')!r} is not a known flow")
        if flow["scheduleParams"]["frequency"] != "once":
            raise flow_error(
                400,
                "FLOW-1013-400",
                "Bad Request",
                "a run can be created only for a flow scheduled for one-time ingestion",
            )
        slot = 1 + max(
            (r["slot"] for r in self.state.query("SELECT slot FROM flow_runs WHERE flow_id = ?", (flow["id"],))),
            default=0,
        )
        run_id = self._new_run(flow["id"], slot, time.time())
        return Response(201, {"id": run_id, "etag": f'"{run_id}"'})


def register(app) -> None:
    """Add the dataflow routes to an ``AepApp`` and chain their state into its reset."""
    routes = FlowRoutes(app)
    routes.routes()
    original_reset = app.reset

    def reset(*, population: bool = False) -> None:
        original_reset(population=population)
        routes.reset()

    app.reset = reset
