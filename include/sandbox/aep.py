"""Local stand-in for Adobe Experience Platform: IMS tokens, the API gateway, Flow Service connections,
Segmentation audiences and export jobs, and Data Access downloads of the exported Parquet parts.

    python -m sandbox.aep --host 127.0.0.1 --port 8082 --db PATH [--data-dir DIR] [--token-ttl 86399]
        [--job-seconds 1.0] [--part-rows 250000] [--fail-exports N] [--error-rate R] [--drop-rate R]
        [--latency-ms MS] [--force-429 N] [--file-dirs DEPTH] [--profile-counter exact|absent|off-by-one]

Answer variants the docs leave open: ``--file-dirs N`` serves each batch's files behind N nested Data Access
directories [DATA: "the file pointed to by the ID is an individual file or a directory"];
``--profile-counter`` makes ``metrics.totalExportedProfileCounter`` exact, absent (the spec's
ExportJobResponse does not list it) or wrong by one (an export that lost a row). The exported profile shape
(email namespace ``Email``/``email``, with or without ``_id``, audiences in several namespaces) is chosen
at seed time: see ``sandbox.seed``.
    python -m sandbox.aep reset --db PATH [--population]

While serving, POST /_sandbox/reset does the same; the body ``{"population": true}`` stands for ``--population``.

Audiences and the profile store are read from the db / data dir at request time, so ``sandbox.seed`` may
run while the server is up. Public docs behind each rule are cited beside it:
  [START]  "Getting started with Experience Platform APIs"
           https://experienceleague.adobe.com/en/docs/experience-platform/landing/platform-apis/api-guide
  [AUTH]   "Authenticate and access Experience Platform APIs"
           https://experienceleague.adobe.com/en/docs/experience-platform/landing/platform-apis/api-authentication
  [HUBSPOT] "Create a HubSpot base connection using the Flow Service API" (seeds 000-003)
           https://experienceleague.adobe.com/en/docs/experience-platform/sources/api-tutorials/create/marketing-automation/hubspot
  [FLOW]   Flow Service API reference https://developer.adobe.com/experience-platform-apis/references/flow-service/
  [FILTER] "Filtering Flow Service entities" https://experienceleague.adobe.com/en/docs/experience-platform/sources/flow-service/filters
  [AUD]    Segmentation "Audiences endpoint" https://experienceleague.adobe.com/en/docs/experience-platform/segmentation/api/audiences
  [EXPORT] Segmentation "Export jobs endpoint" https://experienceleague.adobe.com/en/docs/experience-platform/segmentation/api/export-jobs
  [DATA]   "Data Access API guide" https://experienceleague.adobe.com/en/docs/experience-platform/data-access/api
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from sandbox import credentials
from sandbox.aep_store import (
    HUBSPOT_CONNECTION_SPEC_ID,
    MEMBERSHIP_STATUSES,
    build_export_table,
    default_data_dir,
    export_shape,
    membership_namespace,
    load_population,
    open_state,
    write_parts,
)
from sandbox.common import (
    Faults,
    FileBody,
    HttpError,
    Request,
    Response,
    Router,
    SandboxServer,
    add_fault_arguments,
    faults_from_args,
    new_id,
    serve,
)

FLOW = "/data/foundation/flowservice"
UPS = "/data/core/ups"
EXPORT = "/data/foundation/export"
SECRET_PARAMS = ("clientSecret", "accessToken", "refreshToken")
MASK = "********"

# [HUBSPOT] the HubSpot source's connection spec and its "Basic Authentication" auth spec.
HUBSPOT_SPEC = {
    "id": HUBSPOT_CONNECTION_SPEC_ID,
    "name": "hubspot",
    "providerId": "0ed90a81-07f4-4586-8190-b40eccef1c5a",
    "version": "1.0",
    "attributes": {"category": "Marketing Automation", "isSource": True, "isPreview": False},
    "authSpec": [
        {
            "name": "Basic Authentication",
            "type": "Basic Authentication",
            "spec": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "description": "OAuth credentials of the HubSpot app",
                "properties": {
                    "clientId": {"type": "string", "description": "Client id of the HubSpot app."},
                    "clientSecret": {"type": "string", "format": "password", "description": "Client secret."},
                    "accessToken": {"type": "string", "format": "password", "description": "OAuth access token."},
                    "refreshToken": {"type": "string", "format": "password", "description": "OAuth refresh token."},
                },
                "required": ["clientId", "clientSecret", "accessToken", "refreshToken"],
            },
        }
    ],
    # flow-service.yaml SourceSpecDTO: attributes.uiAttributes.category is a string such as marketingAutomation
    "sourceSpec": {"attributes": {"uiAttributes": {"isSource": True, "category": "marketingAutomation"}}},
}
CONNECTION_SPECS = {HUBSPOT_SPEC["id"]: HUBSPOT_SPEC}


@dataclass
class Config:
    data_dir: Path
    token_ttl: float
    job_seconds: float
    part_rows: int
    file_dirs: int = 0
    profile_counter: str = "exact"


def aep_error(status: int, code: str, title: str, detail: str, **extra: Any) -> HttpError:
    """Platform error body {type, title, status, detail} [START: "API error" bodies / troubleshooting guide]."""
    body = {"type": f"https://ns.adobe.com/aep/errors/{code}", "title": title, "status": status, "detail": detail}
    body.update(extra)
    return HttpError(Response(status, body))


def flow_error(status: int, code: str, title: str, detail: str) -> HttpError:
    """Flow Service errors also carry the message under report [FLOW]."""
    return aep_error(status, code, title, detail, report={"detailed-message": detail})


def gateway_error(status: int, code: str, message: str) -> HttpError:
    """Adobe I/O gateway rejections use {error_code, message} rather than the Platform body [AUTH]."""
    return HttpError(Response(status, {"error_code": code, "message": message}))


def _rate_limited(request: Request) -> Response:
    """The gateway's throttling answer, for the ``force_429`` fault (Platform routes only, not IMS) [START]."""
    return Response(429, {"error_code": "429050", "message": "Too many requests"}, headers={"Retry-After": "1"})


def _request_id() -> dict[str, str]:
    return {"x-request-id": new_id()}


def _fault_response(status: int) -> Response:
    titles = {
        404: "Not Found",
        405: "Method Not Allowed",
        400: "Bad Request",
        500: "Internal Server Error",
        502: "Bad Gateway",
        503: "Service Unavailable",
    }
    return Response(
        status,
        {
            "type": f"https://ns.adobe.com/aep/errors/SANDBOX-{status}",
            "title": titles.get(status, "Error"),
            "status": status,
            "detail": "The sandbox answered with an injected or routing error.",
        },
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


def _fingerprint(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def _lookup(item: dict, dotted: str) -> Any:
    value: Any = item
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


_PROPERTY = re.compile(r"^(?P<field>[A-Za-z0-9_.]+)(?P<op>==|!=|~)(?P<value>.*)$")


def _property_filter(expressions: list[str]) -> Callable[[dict], bool]:
    """``property=`` filters of Flow Service lists: ``field==v``, ``field!=v``, ``field~substring`` [FILTER]."""
    tests = []
    for expression in expressions:
        found = _PROPERTY.match(expression)
        if not found:
            raise flow_error(400, "FLOW-1006-400", "Bad Request", f"invalid property filter {expression!r}")
        field, op, value = found["field"], found["op"], found["value"]
        tests.append((field, op, value))

    def accept(item: dict) -> bool:
        for field, op, value in tests:
            actual = _lookup(item, field)
            text = "" if actual is None else str(actual)
            if op == "==" and text != value or op == "!=" and text == value or op == "~" and value not in text:
                return False
        return True

    return accept


def _int_arg(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.arg(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise aep_error(400, "QUERY-0001-400", "Bad Request", f"query parameter {name} must be an integer") from None
    if not low <= value <= high:
        raise aep_error(400, "QUERY-0002-400", "Bad Request", f"query parameter {name} must be in [{low}, {high}]")
    return value


def _job_id(request: Request) -> int:
    try:
        return int(request.params["id"])
    except ValueError:
        raise aep_error(404, "UPS-1405-404", "Not Found", f"export job {request.params['id']} was not found") from None


class AepApp:
    def __init__(self, db: str, config: Config, faults: Faults) -> None:
        self.state = open_state(db)
        self.config = config
        self.faults = faults
        self.router = Router()
        self.forced_job_status: dict[int, str] = {}  # POST /_sandbox/export-job-status
        self._routes()

    # --- plumbing -------------------------------------------------------------------------------------
    def _routes(self) -> None:
        add, platform = self.router.add, self._platform
        add("POST", "/ims/token/v3", self.ims_token, limited=False)
        add("GET", f"{FLOW}/connectionSpecs", platform(self.list_connection_specs))
        add("GET", f"{FLOW}/connectionSpecs/(?P<id>[^/]+)", platform(self.get_connection_spec))
        add("POST", f"{FLOW}/connections", platform(self.create_connection))
        add("GET", f"{FLOW}/connections", platform(self.list_connections))
        add("GET", f"{FLOW}/connections/(?P<id>[^/]+)", platform(self.get_connection))
        add("PATCH", f"{FLOW}/connections/(?P<id>[^/]+)", platform(self.patch_connection))
        add("DELETE", f"{FLOW}/connections/(?P<id>[^/]+)", platform(self.delete_connection))
        add("GET", f"{UPS}/audiences", platform(self.list_audiences))
        add("GET", f"{UPS}/audiences/(?P<id>[^/]+)", platform(self.get_audience))
        add("POST", f"{UPS}/export/jobs", platform(self.create_export_job))
        add("GET", f"{UPS}/export/jobs", platform(self.list_export_jobs))
        add("GET", f"{UPS}/export/jobs/(?P<id>[^/]+)", platform(self.get_export_job))
        add("DELETE", f"{UPS}/export/jobs/(?P<id>[^/]+)", platform(self.cancel_export_job))
        add("GET", f"{EXPORT}/batches/(?P<id>[^/]+)/files", platform(self.list_batch_files))
        add("GET", f"{EXPORT}/files/(?P<id>[^/]+)", platform(self.get_file))
        from sandbox import aep_flows  # HubSpot → AEP dataflows: explore, connections, datasets, mappings, flows, runs

        aep_flows.register(self)

    def _platform(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def wrapped(request: Request) -> Response:
            self._check_gateway(request)
            return handler(request)

        return wrapped

    def _check_gateway(self, request: Request) -> None:
        """Headers every Platform call needs [START] [AUTH], checked in the gateway's order."""
        api_key = request.headers.get("x-api-key")
        if not api_key:
            raise gateway_error(403, "403000", "Api Key is required")
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        rows = self.state.query("SELECT client_id, expires_at FROM tokens WHERE token = ?", (token,)) if token else []
        if not rows or rows[0]["expires_at"] <= time.time():
            raise gateway_error(401, "401013", "Oauth token is not valid")
        if api_key != rows[0]["client_id"]:
            raise gateway_error(403, "403003", "Api Key is invalid")
        org = request.headers.get("x-gw-ims-org-id")
        if not org:
            raise aep_error(400, "GATEWAY-0001-400", "Missing organization", "The x-gw-ims-org-id header is required.")
        if org != credentials.AEP_ORG_ID:
            raise aep_error(403, "GATEWAY-0002-403", "Forbidden", "The client has no access to this organization.")
        sandbox = request.headers.get("x-sandbox-name")
        if not sandbox:
            raise aep_error(400, "SANDBOX-0001-400", "Missing sandbox", "The x-sandbox-name header is required.")
        if sandbox != credentials.AEP_SANDBOX_NAME:
            raise aep_error(
                403, "SANDBOX-0002-403", "Forbidden", f"Sandbox {sandbox!r} does not exist or is not accessible."
            )
        if request.body and request.method in ("POST", "PUT", "PATCH"):
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            allowed = ("application/json", "application/json-patch+json")
            if content_type not in allowed:
                raise aep_error(
                    415,
                    "GATEWAY-0003-415",
                    "Unsupported Media Type",
                    "Requests with a body need Content-Type: application/json.",
                )

    def _json_body(self, request: Request, error: Callable[..., HttpError]) -> Any:
        try:
            body = request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise error(400, "BODY-0001-400", "Bad Request", "The request body is not valid JSON.") from None
        return body

    def reset(self, *, population: bool = False) -> None:
        """Forget connections, jobs and exported batches (and with ``population`` the seeded catalog too)."""
        with self.state as conn:
            for table in ("connections", "jobs", "batches", "files"):
                conn.execute(f"DELETE FROM {table}")
            if population:
                for table in ("audiences", "datasets", "merge_policies", "population"):
                    conn.execute(f"DELETE FROM {table}")
        shutil.rmtree(self.config.data_dir / "batches", ignore_errors=True)
        self.forced_job_status.clear()
        if population:
            for name in ("profiles.parquet", "memberships.parquet"):
                (self.config.data_dir / name).unlink(missing_ok=True)

    # --- IMS ------------------------------------------------------------------------------------------
    def ims_token(self, request: Request) -> Response:
        """OAuth server-to-server: form-encoded client_credentials → {access_token, token_type, expires_in} [AUTH]."""
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        form.update({k: v[0] for k, v in request.query.items() if k not in form})

        def ims_error(status: int, error: str, description: str) -> Response:
            return Response(status, {"error": error, "error_description": description})

        if form.get("grant_type") != "client_credentials":
            return ims_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
        if form.get("client_id") != credentials.AEP_CLIENT_ID:
            return ims_error(400, "invalid_client", "invalid client_id parameter")
        if form.get("client_secret") != credentials.AEP_CLIENT_SECRET:
            return ims_error(401, "invalid_client", "invalid client_secret parameter")
        if not form.get("scope"):
            return ims_error(400, "invalid_scope", "scope is required")
        ttl = self.faults.token_ttl_seconds if self.faults.token_ttl_seconds is not None else self.config.token_ttl
        token = "eyJ" + secrets.token_urlsafe(48)
        with self.state as conn:
            conn.execute("DELETE FROM tokens WHERE expires_at < ?", (time.time() - 3600,))
            conn.execute(
                "INSERT INTO tokens (token, client_id, expires_at) VALUES (?, ?, ?)",
                (token, credentials.AEP_CLIENT_ID, time.time() + float(ttl)),
            )
        return Response(200, {"access_token": token, "token_type": "bearer", "expires_in": math.ceil(float(ttl))})

    # --- Flow Service ---------------------------------------------------------------------------------
    def list_connection_specs(self, request: Request) -> Response:
        accept = _property_filter(request.query.get("property", []))
        return Response(200, {"items": [s for s in CONNECTION_SPECS.values() if accept(s)]})

    def get_connection_spec(self, request: Request) -> Response:
        spec = CONNECTION_SPECS.get(request.params["id"])
        if spec is None:
            raise flow_error(404, "FLOW-1002-404", "Not Found", f"connection spec {request.params['id']} was not found")
        return Response(200, {"items": [spec]})

    def _validate_connection(self, body: Any) -> list[str]:
        """What is wrong with a POST /connections body for the HubSpot source [HUBSPOT]."""
        if not isinstance(body, dict):
            return ["body must be a JSON object"]
        problems = []
        if not isinstance(body.get("name"), str) or not body["name"].strip():
            problems.append("name is required")
        spec = body.get("connectionSpec")
        spec_id = spec.get("id") if isinstance(spec, dict) else None
        if spec_id not in CONNECTION_SPECS:
            problems.append(f"connectionSpec.id {spec_id!r} is not a known connection spec")
        elif spec.get("version") != CONNECTION_SPECS[spec_id]["version"]:
            problems.append(f"connectionSpec.version must be {CONNECTION_SPECS[spec_id]['version']!r}")
        auth = body.get("auth")
        if not isinstance(auth, dict):
            return [*problems, "auth is required"]
        if auth.get("specName") != "Basic Authentication":
            problems.append("auth.specName must be 'Basic Authentication'")
        params = auth.get("params")
        if not isinstance(params, dict):
            return [*problems, "auth.params is required"]
        required = HUBSPOT_SPEC["authSpec"][0]["spec"]["required"]
        for name in required:
            value = params.get(name)
            if not isinstance(value, str) or not value.strip():
                problems.append(f"auth.params.{name} is required and must be a non-empty string")
        problems += [
            f"auth.params.{name} is not a parameter of this auth spec" for name in params if name not in required
        ]
        return problems

    def _connection_view(self, stored: dict) -> dict:
        view = json.loads(json.dumps(stored))
        for name in SECRET_PARAMS:
            if name in view["auth"]["params"]:
                view["auth"]["params"][name] = MASK
        return view

    def _stored_connection(self, connection_id: str) -> dict:
        rows = self.state.query("SELECT body FROM connections WHERE id = ?", (connection_id,))
        if not rows:
            raise flow_error(404, "FLOW-1001-404", "Not Found", f"connection {connection_id} was not found")
        return json.loads(rows[0]["body"])

    def create_connection(self, request: Request) -> Response:
        body = self._json_body(request, flow_error)
        problems = self._validate_connection(body)
        if problems:
            raise flow_error(400, "FLOW-1005-400", "Bad Request", "; ".join(problems))
        now = _now_ms()
        connection_id, version = new_id(), new_id()
        params = dict(body["auth"]["params"])
        for name in SECRET_PARAMS:
            params[name] = _fingerprint(params[name])  # secrets are kept only as fingerprints
        stored = {
            "id": connection_id,
            "createdAt": now,
            "updatedAt": now,
            "createdBy": f"{request.headers['x-api-key']}@AdobeID",
            "updatedBy": f"{request.headers['x-api-key']}@AdobeID",
            "createdClient": request.headers["x-api-key"],
            "updatedClient": request.headers["x-api-key"],
            "sandboxName": request.headers["x-sandbox-name"],
            "imsOrgId": request.headers["x-gw-ims-org-id"],
            "name": body["name"],
            "description": body.get("description", ""),
            "connectionSpec": {"id": body["connectionSpec"]["id"], "version": body["connectionSpec"]["version"]},
            "state": "enabled",
            "auth": {"specName": body["auth"]["specName"], "params": params},
            "version": version,
            "etag": f'"{version}"',
        }
        with self.state as conn:
            conn.execute("INSERT INTO connections (id, body) VALUES (?, ?)", (connection_id, json.dumps(stored)))
        return Response(201, {"id": connection_id, "etag": stored["etag"]})

    def list_connections(self, request: Request) -> Response:
        """property= filters, limit and continuationToken paging with _links.next [FILTER] [FLOW]."""
        from sandbox.aep_flows import continuation_page  # imports this module: load it once both exist

        rows = self.state.query("SELECT body FROM connections ORDER BY seq")
        views = [self._connection_view(json.loads(r["body"])) for r in rows]
        return continuation_page(request, views, f"{FLOW}/connections")

    def get_connection(self, request: Request) -> Response:
        return Response(200, {"items": [self._connection_view(self._stored_connection(request.params["id"]))]})

    def patch_connection(self, request: Request) -> Response:
        """JSON Patch of name, description or auth params, guarded by If-Match: etag [FLOW]."""
        stored = self._stored_connection(request.params["id"])
        if_match = request.headers.get("if-match")
        if not if_match:
            raise flow_error(
                428, "FLOW-1008-428", "Precondition Required", "PATCH needs an If-Match header with the etag"
            )
        if if_match != stored["etag"]:
            raise flow_error(412, "FLOW-1009-412", "Precondition Failed", "If-Match does not match the current etag")
        operations = self._json_body(request, flow_error)
        allowed = re.compile(r"^/(name|description|auth/params/(clientId|clientSecret|accessToken|refreshToken))$")
        if not isinstance(operations, list) or not operations:
            raise flow_error(400, "FLOW-1005-400", "Bad Request", "body must be a non-empty JSON Patch array")
        for op in operations:
            path = op.get("path", "") if isinstance(op, dict) else ""
            value = op.get("value") if isinstance(op, dict) else None
            if op.get("op") not in ("replace", "add") or not allowed.match(path):
                raise flow_error(400, "FLOW-1005-400", "Bad Request", f"unsupported patch operation on {path!r}")
            if not isinstance(value, str) or (path != "/description" and not value.strip()):
                raise flow_error(400, "FLOW-1005-400", "Bad Request", f"{path} needs a non-empty string value")
            parts = path.strip("/").split("/")
            name = parts[-1]
            target = stored["auth"]["params"] if len(parts) == 3 else stored
            target[name] = _fingerprint(value) if name in SECRET_PARAMS else value
        stored["version"] = new_id()
        stored["etag"] = f'"{stored["version"]}"'
        stored["updatedAt"] = _now_ms()
        with self.state as conn:
            conn.execute("UPDATE connections SET body = ? WHERE id = ?", (json.dumps(stored), stored["id"]))
        return Response(200, {"id": stored["id"], "etag": stored["etag"]})

    def delete_connection(self, request: Request) -> Response:
        self._stored_connection(request.params["id"])
        with self.state as conn:
            conn.execute("DELETE FROM connections WHERE id = ?", (request.params["id"],))
        return Response(204)

    # --- Segmentation: audiences ----------------------------------------------------------------------
    def list_audiences(self, request: Request) -> Response:
        """start/limit paging with _page {totalCount, pageSize, next} and _links.next [AUD]."""
        start = _int_arg(request, "start", 0, 0, 10**9)
        limit = _int_arg(request, "limit", 20, 1, 100)
        total = self.state.query("SELECT COUNT(*) AS n FROM audiences")[0]["n"]
        rows = self.state.query("SELECT body FROM audiences ORDER BY seq LIMIT ? OFFSET ?", (limit, start))
        page: dict[str, Any] = {"totalCount": total, "pageSize": len(rows)}
        result: dict[str, Any] = {"children": [json.loads(r["body"]) for r in rows], "_page": page, "_links": {}}
        if start + limit < total:
            page["next"] = start + limit  # segmentation.yaml AudiencesList: _page.next is an integer
            result["_links"]["next"] = {"href": f"{UPS}/audiences?start={start + limit}&limit={limit}"}
        return Response(200, result)

    def get_audience(self, request: Request) -> Response:
        rows = self.state.query("SELECT body FROM audiences WHERE id = ?", (request.params["id"],))
        if not rows:
            raise aep_error(404, "UPS-1404-404", "Not Found", f"audience {request.params['id']} was not found")
        return Response(200, json.loads(rows[0]["body"]))

    # --- Segmentation: export jobs --------------------------------------------------------------------
    def _validate_export(self, body: Any) -> tuple[list[str], str, list[str], list[str]]:
        """Problems, dataset id, audience ids and statuses of a POST /export/jobs body [EXPORT]."""
        if not isinstance(body, dict):
            return ["body must be a JSON object"], "", [], []
        problems = []
        destination = body.get("destination") if isinstance(body.get("destination"), dict) else {}
        dataset_id = destination.get("datasetId") or destination.get("dataSetId")  # both spellings occur
        if not dataset_id:
            problems.append("destination.datasetId is required")
        elif not self.state.query("SELECT 1 FROM datasets WHERE id = ?", (dataset_id,)):
            problems.append(f"destination.datasetId {dataset_id!r} is not a known dataset")
        merge_policy = body.get("mergePolicy")
        if merge_policy is not None:
            policy_id = merge_policy.get("id") if isinstance(merge_policy, dict) else None
            if not policy_id or not self.state.query("SELECT 1 FROM merge_policies WHERE id = ?", (policy_id,)):
                problems.append(f"mergePolicy.id {policy_id!r} is not a known merge policy")
        schema = body.get("schema")
        if schema is not None and (not isinstance(schema, dict) or schema.get("name") != "_xdm.context.profile"):
            problems.append("schema.name must be '_xdm.context.profile'")
        segments = (body.get("filter") or {}).get("segments") if isinstance(body.get("filter"), dict) else None
        audience_ids: list[str] = []
        statuses: set[str] = set()
        if not isinstance(segments, list) or not segments:
            problems.append("filter.segments must be a non-empty list")
            segments = []
        rows = self.state.query("SELECT id, body FROM audiences")
        known = {r["id"]: membership_namespace(json.loads(r["body"])) for r in rows}
        for i, segment in enumerate(segments):
            if not isinstance(segment, dict):
                problems.append(f"filter.segments[{i}] must be an object")
                continue
            segment_id = segment.get("segmentId")
            if segment_id not in known:
                problems.append(f"filter.segments[{i}].segmentId {segment_id!r} is not a known audience")
            else:
                audience_ids.append(segment_id)
            namespace = known.get(segment_id, "ups")  # [EXPORT] segmentNs "By default, the value is 'ups'"
            if str(segment.get("segmentNs", "ups")).lower() != namespace.lower():
                problems.append(f"filter.segments[{i}].segmentNs must be {namespace!r}, the audience's namespace")
            wanted = segment.get("status", ["realized", "existing"])
            if not isinstance(wanted, list) or not wanted or not set(wanted) <= set(MEMBERSHIP_STATUSES):
                problems.append(
                    f"filter.segments[{i}].status must be a non-empty subset of {list(MEMBERSHIP_STATUSES)}"
                )
            else:
                statuses.update(wanted)
        return problems, dataset_id or "", audience_ids, sorted(statuses)

    def create_export_job(self, request: Request) -> Response:
        body = self._json_body(request, aep_error)
        problems, dataset_id, audience_ids, statuses = self._validate_export(body)
        if problems:
            raise aep_error(400, "UPS-1422-400", "Bad Request", "; ".join(problems))
        fail = self.faults.take("fail_exports")
        now = _now_ms()
        job = {
            "jobType": "BATCH",
            "destination": {
                "datasetId": dataset_id,
                "segmentPerBatch": bool(body["destination"].get("segmentPerBatch", False)),
            },
            "fields": body.get("fields", ""),
            "schema": {"name": "_xdm.context.profile"},
            "imsOrgId": request.headers["x-gw-ims-org-id"],
            "sandbox": {"sandboxName": request.headers["x-sandbox-name"], "type": "production", "default": True},
            "mergePolicy": {
                "id": (body.get("mergePolicy") or {}).get("id", credentials.AEP_MERGE_POLICY_ID),
                "version": 1,
            },
            "filter": body["filter"],
            "requestId": request.headers.get("x-request-id") or new_id(),
            "creationTime": now,
        }
        with self.state as conn:
            cursor = conn.execute(
                "INSERT INTO jobs (body, created_at, outcome) VALUES (?, ?, ?)",
                (json.dumps(job), time.time(), "FAIL_PENDING" if fail else None),
            )
            job_id = cursor.lastrowid
        if not fail:
            threading.Thread(
                target=self._run_export, args=(job_id, dataset_id, audience_ids, statuses), daemon=True
            ).start()
        return Response(200, self._job_view(job_id))

    def _run_export(self, job_id: int, dataset_id: str, audience_ids: list[str], statuses: list[str]) -> None:
        """Build the export, write its parts and register them as one batch; runs beside the request threads."""
        batch_id = secrets.token_hex(16)
        try:
            profiles, memberships = load_population(self.config.data_dir)
            table = build_export_table(profiles, memberships, audience_ids, statuses, export_shape(self.state.path))
            folder = self.config.data_dir / "batches" / batch_id
            paths = write_parts(table, folder, self.config.part_rows)
            files = []
            for seq, path in enumerate(paths):
                rows = min(self.config.part_rows, table.num_rows - seq * self.config.part_rows)
                files.append((secrets.token_hex(16), batch_id, seq, path.name, str(path), path.stat().st_size, rows))
            with self.state as conn:
                conn.execute(
                    "INSERT INTO batches (id, job_id, dataset_id, created_at) VALUES (?, ?, ?, ?)",
                    (batch_id, job_id, dataset_id, time.time()),
                )
                conn.executemany("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?)", files)
                conn.execute(  # a job cancelled meanwhile stays CANCELLED
                    "UPDATE jobs SET outcome = 'SUCCEEDED', finished_at = ?, batch_id = ?, profiles = ? "
                    "WHERE id = ? AND outcome IS NULL",
                    (time.time(), batch_id, table.num_rows, job_id),
                )
        except Exception as error:  # noqa: BLE001 - the job, not the server, fails: errors[] reports it
            with self.state as conn:
                conn.execute(
                    "UPDATE jobs SET outcome = 'FAILED', finished_at = ?, error = ? WHERE id = ? AND outcome IS NULL",
                    (time.time(), f"{type(error).__name__}: {error}", job_id),
                )

    def _job_view(self, job_id: int) -> dict:
        """As GET /export/jobs/{id} shows it: NEW → PROCESSING → SUCCEEDED | FAILED over --job-seconds [EXPORT]."""
        rows = self.state.query("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise aep_error(404, "UPS-1405-404", "Not Found", f"export job {job_id} was not found")
        row = rows[0]
        job = {"id": row["id"], **json.loads(row["body"])}
        elapsed = time.time() - row["created_at"]
        outcome = row["outcome"]
        done = outcome is not None  # FAIL_PENDING (injected), SUCCEEDED or FAILED
        if row["id"] in self.forced_job_status:
            status = self.forced_job_status[row["id"]]
        elif outcome == "CANCELLED":
            status = "CANCELLED"
        elif elapsed < self.config.job_seconds / 3:
            status = "NEW"
        elif elapsed < self.config.job_seconds or not done:
            status = "PROCESSING"
        else:
            status = "FAILED" if outcome in ("FAILED", "FAIL_PENDING") else "SUCCEEDED"
        job["status"] = status
        job["updateTime"] = _now_ms()
        start_ms = int(row["created_at"] * 1000)
        if status == "SUCCEEDED":
            end_ms = int(max(row["finished_at"], row["created_at"] + self.config.job_seconds) * 1000)
            job["destination"]["batchId"] = row["batch_id"]
            timing = {"startTimeInMs": start_ms, "endTimeInMs": end_ms, "totalTimeInMs": end_ms - start_ms}
            job["metrics"] = {"totalTime": timing, "profileExportTime": dict(timing)}
            if self.config.profile_counter != "absent":  # [EXPORT] example response; not in the spec's schema
                miscount = 1 if self.config.profile_counter == "off-by-one" else 0
                job["metrics"]["totalExportedProfileCounter"] = row["profiles"] + miscount
        elif status == "FAILED":
            message = row["error"] or "Profile export failed (injected by the sandbox's fail_exports fault)."
            job["errors"] = [{"code": "0100-000", "msg": message}]
            job["metrics"] = {"totalExportedProfileCounter": 0}
        job["_links"] = {"self": {"href": f"{UPS}/export/jobs/{row['id']}"}}
        return job

    def get_export_job(self, request: Request) -> Response:
        return Response(200, self._job_view(_job_id(request)))

    def cancel_export_job(self, request: Request) -> Response:
        """``DELETE /export/jobs/{id}`` (Segmentation API spec, segmentation.yaml ``cancelExportJob``: "Cancel
        or delete an export job" → 200 ``CancelExportJobResponse`` {status: boolean, message}; 404 unknown
        job). A running job ends CANCELLED (the status the spec's job schema lists); a finished one stays."""
        view = self._job_view(_job_id(request))  # 404 for an unknown job
        if view["status"] in ("NEW", "PROCESSING"):
            with self.state as conn:
                conn.execute(
                    "UPDATE jobs SET outcome = 'CANCELLED', finished_at = ? WHERE id = ? AND outcome IS NULL",
                    (time.time(), view["id"]),
                )
        return Response(200, {"status": True, "message": "Export job has been marked for cancelling"})

    def force_job_status(self, request: Request) -> Response:
        """Admin: ``POST /_sandbox/export-job-status`` ``{"id": <job>, "status": "<any text, even blank>"}``
        makes GET report that status from now on (the client must cope with statuses the docs do not list)."""
        body = request.json() if request.body else {}
        job_id = int(body["id"])
        self._job_view(job_id)  # 404 for an unknown job
        self.forced_job_status[job_id] = str(body.get("status", ""))
        return Response(200, {"id": job_id, "status": self.forced_job_status[job_id]})

    def list_export_jobs(self, request: Request) -> Response:
        """Newest first; ``limit``, ``offset`` and ``status`` filters [EXPORT]."""
        limit = _int_arg(request, "limit", 20, 1, 100)
        offset = _int_arg(request, "offset", 0, 0, 10**9)
        wanted = request.arg("status")
        ids = [r["id"] for r in self.state.query("SELECT id FROM jobs ORDER BY id DESC")]
        jobs = [job for job in map(self._job_view, ids) if wanted is None or job["status"] == wanted]
        page = jobs[offset : offset + limit]
        result: dict[str, Any] = {
            "records": page,
            # segmentation.yaml GetExportJobsResponse: page.pageOffset is a string (e.g. "1540974701302_96")
            "page": {"sortField": "createdTime", "sort": "desc", "pageOffset": str(offset), "pageSize": len(page)},
        }
        if offset + limit < len(jobs):
            result["link"] = {"next": f"{UPS}/export/jobs?limit={limit}&offset={offset + limit}"}
        return Response(200, result)

    # --- Data Access ----------------------------------------------------------------------------------
    def list_batch_files(self, request: Request) -> Response:
        """GET /batches/{batchId}/files → {data: [{dataSetFileId, _links.self.href}], _page} [DATA]."""
        batch_id = request.params["id"]
        if not self.state.query("SELECT 1 FROM batches WHERE id = ?", (batch_id,)):
            raise aep_error(404, "DAS-1404-404", "Not Found", f"batch {batch_id} was not found")
        start = _int_arg(request, "start", 0, 0, 10**9)
        limit = _int_arg(request, "limit", 100, 1, 1000)
        if self.config.file_dirs:
            ids, total = [_directory_id(batch_id, 1)][start : start + limit], 1
        else:
            total = self.state.query("SELECT COUNT(*) AS n FROM files WHERE batch_id = ?", (batch_id,))[0]["n"]
            rows = self.state.query(
                "SELECT id FROM files WHERE batch_id = ? ORDER BY seq LIMIT ? OFFSET ?", (batch_id, limit, start)
            )
            ids = [r["id"] for r in rows]
        data = [self._file_entry(request, file_id) for file_id in ids]
        result: dict[str, Any] = {"data": data, "_page": {"limit": limit, "count": len(data), "totalCount": total}}
        if start + limit < total:
            next_page = f"{EXPORT}/batches/{batch_id}/files?start={start + limit}&limit={limit}"
            result["_links"] = {"next": {"href": f"{self._base(request)}{next_page}"}}
        return Response(200, result)

    def _file_entry(self, request: Request, file_id: str) -> dict:
        """A ``dataSetFileId`` entry, in batch listings and directory listings alike [DATA]."""
        created = str(_now_ms())
        return {
            "dataSetFileId": file_id,
            "dataSetViewId": credentials.AEP_DATASET_ID,
            "version": "1.0.0",
            "created": created,
            "updated": created,
            "isValid": True,
            "_links": {"self": {"href": f"{self._base(request)}{EXPORT}/files/{file_id}"}},
        }

    def _directory(self, request: Request, batch_id: str, level: int) -> Response:
        """Level ``level`` of the ``--file-dirs`` chain: the next directory, or at the bottom the batch's files,
        each as a ``dataSetFileId`` entry ("Directory response") [DATA]."""
        known = self.state.query("SELECT 1 FROM batches WHERE id = ?", (batch_id,))
        if not known or not 1 <= level <= self.config.file_dirs:
            raise aep_error(404, "DAS-1405-404", "Not Found", f"file {_directory_id(batch_id, level)} was not found")
        if level < self.config.file_dirs:
            ids = [_directory_id(batch_id, level + 1)]
        else:
            rows = self.state.query("SELECT id FROM files WHERE batch_id = ? ORDER BY seq", (batch_id,))
            ids = [r["id"] for r in rows]
        data = [self._file_entry(request, file_id) for file_id in ids]
        return Response(200, {"data": data, "_page": {"limit": 100, "count": len(data)}})

    @staticmethod
    def _base(request: Request) -> str:
        return f"http://{request.headers.get('host', 'localhost')}"

    def get_file(self, request: Request) -> Response:
        """Without ``path``: the file's parts {data: [{name, length, _links}]}; with it: the bytes, streamed [DATA]."""
        directory = DIRECTORY_ID.fullmatch(request.params["id"])
        if directory and request.arg("path") is None:
            return self._directory(request, directory["batch"], int(directory["level"]))
        rows = self.state.query("SELECT * FROM files WHERE id = ?", (request.params["id"],))
        if not rows:
            raise aep_error(404, "DAS-1405-404", "Not Found", f"file {request.params['id']} was not found")
        row = rows[0]
        name = request.arg("path")
        if name is None:
            href = f"{self._base(request)}{EXPORT}/files/{row['id']}?path={quote(row['name'])}"
            return Response(
                200,
                {
                    "data": [{"name": row["name"], "length": str(row["length"]), "_links": {"self": {"href": href}}}],
                    "_page": {"limit": 100, "count": 1},
                },
            )
        if name != row["name"] or not os.path.exists(row["path"]):
            raise aep_error(404, "DAS-1406-404", "Not Found", f"file {row['id']} has no part named {name!r}")
        size = row["length"]
        offset, length, status, headers = 0, size, 200, {"Accept-Ranges": "bytes"}
        found = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("range", "").strip())
        if found:  # partial downloads [DATA: "Retrieve the contents of a file" / Range header]
            offset = int(found[1])
            end = min(int(found[2]) if found[2] else size - 1, size - 1)
            if offset >= size or end < offset:
                raise aep_error(416, "DAS-1416-416", "Range Not Satisfiable", f"file length is {size}")
            length, status = end - offset + 1, 206
            headers["Content-Range"] = f"bytes {offset}-{end}/{size}"
        return Response(
            status,
            FileBody(Path(row["path"]), offset, length),
            headers=headers,
            content_type="application/octet-stream",
        )


DIRECTORY_ID = re.compile(r"(?P<batch>[0-9a-f]{32})-dir(?P<level>\d+)")


def _directory_id(batch_id: str, level: int) -> str:
    return f"{batch_id}-dir{level}"


def build_server(host: str, port: int, db: str, config: Config, faults: Faults) -> SandboxServer:
    app = AepApp(db, config, faults)
    server = SandboxServer(
        (host, port),
        app.router,
        faults,
        _fault_response,
        app.reset,
        "aep",
        rate_limited=_rate_limited,
        response_headers=_request_id,
    )
    server.admin.add("POST", "/_sandbox/export-job-status", app.force_job_status)
    return server


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "reset":
        parser = argparse.ArgumentParser(prog="python -m sandbox.aep reset")
        parser.add_argument("--db", required=True)
        parser.add_argument("--data-dir")
        parser.add_argument("--population", action="store_true", help="also forget audiences and profiles")
        args = parser.parse_args(argv[1:])
        data_dir = Path(args.data_dir) if args.data_dir else default_data_dir(args.db)
        AepApp(args.db, Config(data_dir, 0, 0, 1), Faults()).reset(population=args.population)
        print(json.dumps({"reset": True, "population": args.population}))
        return 0
    parser = argparse.ArgumentParser(prog="python -m sandbox.aep")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--db", required=True)
    parser.add_argument("--data-dir")
    parser.add_argument("--token-ttl", type=float, default=86399)
    parser.add_argument("--job-seconds", type=float, default=1.0)
    parser.add_argument("--part-rows", type=int, default=250_000)
    parser.add_argument("--fail-exports", type=int, default=0)
    parser.add_argument("--file-dirs", type=int, default=0, help="nest each batch's files N directories deep")
    parser.add_argument("--profile-counter", choices=["exact", "absent", "off-by-one"], default="exact")
    add_fault_arguments(parser)
    args = parser.parse_args(argv)
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir(args.db)
    data_dir.mkdir(parents=True, exist_ok=True)
    faults = faults_from_args(args, fail_exports=args.fail_exports)
    config = Config(data_dir, args.token_ttl, args.job_seconds, args.part_rows, args.file_dirs, args.profile_counter)
    serve(build_server(args.host, args.port, args.db, config, faults))
    return 0


if __name__ == "__main__":
    sys.exit(main())
