"""Contract tests: every request the AEP client makes, and every answer the AEP sandbox gives, validated
against Adobe's published OpenAPI files (vendored in include/openapi/aep/, Apache 2.0) with openapi-core.

Calls are recorded at the transport edge (``HTTPAdapter.send``), so the client and the sandbox run unchanged.
IMS (``/ims/token/v3``) is not part of these specs and is not validated here: its form is checked by the
sandbox's own tests against Adobe's authentication guide.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest
from requests.adapters import HTTPAdapter
from sandbox import connections, credentials, seed
from sandbox_process import ROOT, start_sandbox

from audience_sync.clients.aep import HUBSPOT_CONNECTION_SPEC_ID, AepClient
from audience_sync.hooks.aep import AepHook
from audience_sync.hooks.base import ApiError

SPECS = ROOT / "include" / "openapi" / "aep"
# base path → the spec describing it (each spec's server is https://platform.adobe.io/<base path>)
BASES = {
    "/data/foundation/flowservice": "flow-service.yaml",
    "/data/core/ups": "segmentation.yaml",
    "/data/foundation/export": "data-access.yaml",
}
GATEWAY = "https://platform.adobe.io"


@dataclass
class Call:
    request: requests.PreparedRequest
    status: int
    content_type: str
    headers: dict
    body: bytes | None  # None: streamed (a file's bytes), not kept


@dataclass
class OpenAPIResponse:
    """openapi-core's response protocol."""

    data: bytes
    status_code: int
    content_type: str
    headers: dict


@pytest.fixture(scope="module")
def specs():
    """Each spec with its server pinned to the production gateway: Flow Service and Segmentation give a
    scheme-relative ``//{environment}.adobe.io/...`` that openapi-core cannot match a request against."""
    loaded = {}
    for base, name in BASES.items():
        document = _string_keys(yaml.safe_load((SPECS / name).read_text()))
        document["servers"] = [{"url": f"{GATEWAY}{base}"}]
        if name == "segmentation.yaml":
            # AudiencesList.children is a oneOf of PlatformGeneratedAudience and ExternallyGeneratedAudience, two
            # schemas without required fields or additionalProperties: every audience matches both, so no
            # answer can satisfy oneOf. Validated as anyOf: each audience must still fit one of them.
            children = document["components"]["schemas"]["AudiencesList"]["properties"]["children"]["items"]
            children["anyOf"] = children.pop("oneOf")
        loaded[base] = OpenAPI.from_dict(document)
    return loaded


@pytest.fixture
def recorded(monkeypatch):
    calls: list[Call] = []
    send = HTTPAdapter.send

    def recording_send(self, request, **kwargs):
        response = send(self, request, **kwargs)
        stream = kwargs.get("stream", False)
        calls.append(
            Call(request, response.status_code, response.headers.get("content-type", ""), dict(response.headers),
                 None if stream else response.content)
        )
        return response

    monkeypatch.setattr(HTTPAdapter, "send", recording_send)
    return calls


@pytest.fixture
def aep(tmp_path, monkeypatch):
    """Audiences in two namespaces, each batch's files behind a Data Access directory."""
    server = start_sandbox("aep", tmp_path, "--part-rows", "200", "--job-seconds", "0.2", "--file-dirs", "1")
    result = seed.seed_population(server.db, profiles=500, audiences=3, seed=4, dirty_rate=0.01,
                                  audience_namespaces=["AEPSegments", "AAM"])
    monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", connections.aep_connection(server.url))
    yield server, result
    server.stop()


def _string_keys(node):
    """YAML reads unquoted status codes (``200:``) as numbers; OpenAPI keys are strings."""
    if isinstance(node, dict):
        return {str(key): _string_keys(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_string_keys(value) for value in node]
    return node


def spec_for(specs, call: Call):
    path = urlsplit(call.request.url).path
    return next((spec for base, spec in specs.items() if path.startswith(base + "/")), None)


def as_gateway(call: Call) -> RequestsOpenAPIRequest:
    """The recorded request as sent to Adobe's gateway (the specs' server), path and query unchanged."""
    parts = urlsplit(call.request.url)
    path = parts.path
    if call.request.method in ("DELETE", "PATCH") and "/flowservice/connections/" in path:
        path += "/"  # the spec files these under /connections/{BASE_CONNECTION_ID}/; Adobe's tutorials omit the slash
    request = call.request.copy()
    request.url = f"{GATEWAY}{path}" + (f"?{parts.query}" if parts.query else "")
    return RequestsOpenAPIRequest(request)


def validate(specs, calls: list[Call]) -> tuple[list[str], Counter]:
    """Problems found (one line each), and the operations seen per spec."""
    problems, seen = [], Counter()
    for call in calls:
        spec = spec_for(specs, call)
        where = f"{call.request.method} {urlsplit(call.request.url).path} → {call.status}"
        if spec is None:
            assert "/ims/token/v3" in call.request.url, f"call outside the vendored specs: {where}"
            continue
        request = as_gateway(call)
        seen[where.split(" → ")[0]] += 1
        try:
            spec.validate_request(request)
        except Exception as error:  # noqa: BLE001 - every kind of violation is reported, not only the first
            problems.append(f"request {where}: {_describe(error)}")
        body = call.body
        if body is None:  # streamed file bytes: the status and media type are what the spec can say
            body, content_type = b"{}", "application/json"
            assert call.content_type == "application/octet-stream", where
        else:
            content_type = call.content_type
        try:
            spec.validate_response(request, OpenAPIResponse(body, call.status, content_type, call.headers))
        except Exception as error:  # noqa: BLE001
            if not _spec_is_silent(error, call):
                problems.append(f"response {where}: {_describe(error)}")
    return problems, seen


def _spec_is_silent(error: Exception, call: Call) -> bool:
    """Where the specs say nothing, the answer is checked against the documented error shapes instead:
    an undeclared error status (e.g. Flow Service lists no 404), or a declared one with ``content: {}``,
    must carry the Platform error body {type, title, status, detail} ("Experience Platform API
    troubleshooting guide") or the gateway's {error_code, message}; a 204 declared ``content: {}`` has none;
    a 206 (declared with headers only) must say its Content-Range."""
    kinds = {type(e).__name__ for e in _chain(error)}
    if call.status == 204 and call.body == b"" and "MissingData" in kinds:
        return True
    if call.status == 206 and "MediaTypeNotFound" in kinds:  # data-access.yaml: 206 headers, content {}
        return bool(re.fullmatch(r"bytes \d+-\d+/\d+", call.headers.get("Content-Range", "")))
    if call.status >= 400 and kinds & {"ResponseNotFound", "MediaTypeNotFound"}:
        body = json.loads(call.body or b"{}")
        platform = {"type", "title", "status", "detail"} <= set(body) and body["status"] == call.status
        return platform or {"error_code", "message"} <= set(body)
    return False


def _chain(error: BaseException):
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


def _describe(error: Exception) -> str:
    causes = [str(error)]
    while error.__cause__ is not None:
        error = error.__cause__
        causes.append(str(error)[:400])
    for extra in getattr(error, "schema_errors", None) or []:
        causes.append(f"{list(extra.path)}: {extra.message}"[:300])
    return " / ".join(causes)


def wait_for(client: AepClient, job_id) -> dict:
    deadline = time.monotonic() + 30
    while (job := client.get_export_job(job_id))["status"] in ("NEW", "PROCESSING"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return job


def test_every_client_call_and_sandbox_answer_follows_adobes_specs(aep, recorded, specs, tmp_path):
    server, seeded = aep
    client = AepClient(AepHook())
    # Flow Service: the connection spec, connections (filtered list, create, read, delete)
    assert client.get_connection_spec(HUBSPOT_CONNECTION_SPEC_ID)["id"] == HUBSPOT_CONNECTION_SPEC_ID
    payload = {
        "name": "contract test",
        "description": "",
        "auth": {"specName": "Basic Authentication",
                 "params": {"clientId": "c", "clientSecret": "s", "accessToken": "a", "refreshToken": "r"}},
        "connectionSpec": {"id": HUBSPOT_CONNECTION_SPEC_ID, "version": "1.0"},
    }
    created = client.create_connection(payload)
    assert client.list_connections(f"connectionSpec.id=={HUBSPOT_CONNECTION_SPEC_ID}")[0]["id"] == created["id"]
    assert client.get_connection(created["id"])["name"] == "contract test"
    # Segmentation: audiences (list, one), an export job in two namespaces, its status until it ends
    resolved = client.resolve_audiences([a["name"] for a in seeded.audiences])
    assert client.get_audience(resolved[1]["id"])["namespace"] == "AAM"
    body = AepClient.export_job_body(resolved, credentials.AEP_DATASET_ID, credentials.AEP_MERGE_POLICY_ID)
    job = wait_for(client, client.create_export_job(body)["id"])
    assert job["status"] == "SUCCEEDED"
    # Data Access: the batch's files, a directory, the parts, the bytes
    parts = list(client.iter_export_parts(job["destination"]["batchId"]))
    assert len(parts) > 1
    for number, (file_id, name, length) in enumerate(parts):
        assert client.download_part(file_id, name, tmp_path / f"part-{number}.parquet", length) == length
    client.delete_connection(created["id"])
    # answers the client does not ask for in a run but the sandbox serves: errors, the job list
    with pytest.raises(ApiError):
        client.get_export_job(999_999)
    with pytest.raises(ApiError):
        client.get_connection("no-such-connection")
    client.hook.request_json("GET", "data/core/ups/export/jobs", params={"limit": 2})

    problems, seen = validate(specs, recorded)
    assert not problems, "\n".join(problems)
    assert seen["GET /data/foundation/export/files/" + parts[0][0]] >= 2  # its listing and its bytes
    assert any(key.endswith("-dir1") for key in seen)  # the directory listing was validated too
    operations = {key.split(" ", 1)[0] + " " + _template(key.split(" ", 1)[1]) for key in seen}
    assert operations >= {
        "GET /data/foundation/flowservice/connectionSpecs/{id}",
        "GET /data/foundation/flowservice/connections",
        "POST /data/foundation/flowservice/connections",
        "GET /data/foundation/flowservice/connections/{id}",
        "DELETE /data/foundation/flowservice/connections/{id}",
        "GET /data/core/ups/audiences",
        "GET /data/core/ups/audiences/{id}",
        "POST /data/core/ups/export/jobs",
        "GET /data/core/ups/export/jobs",
        "GET /data/core/ups/export/jobs/{id}",
        "GET /data/foundation/export/batches/{id}/files",
        "GET /data/foundation/export/files/{id}",
    }


def test_the_sandbox_answers_the_client_does_not_ask_for_follow_the_specs(aep, recorded, specs):
    """Paging, the connection spec list, a ranged download and a refused export job. (PATCH /connections is
    left out: the client never patches, and the spec's PatchInstruction, one object with upper-case ``op``
    and an object ``value``, disagrees with the JSON Patch arrays of Adobe's tutorials.)"""
    server, seeded = aep
    client = AepClient(AepHook())
    session, base = client.hook.get_conn(), client.hook.base_url
    assert len(client.list_audiences(page_size=2)) == 3  # two pages, followed by _links.next
    assert session.get(f"{base}/data/foundation/flowservice/connectionSpecs").ok
    with pytest.raises(ApiError) as refused:
        client.create_export_job({"destination": {"datasetId": "nope"}, "schema": {"name": "_xdm.context.profile"}})
    assert refused.value.status == 400
    body = AepClient.export_job_body([seeded.audiences[0]["id"]], credentials.AEP_DATASET_ID,
                                     credentials.AEP_MERGE_POLICY_ID)
    job = wait_for(client, client.create_export_job(body)["id"])
    file_id, name, _ = next(client.iter_export_parts(job["destination"]["batchId"]))
    ranged = session.get(f"{base}/data/foundation/export/files/{file_id}", params={"path": name},
                         headers={"Range": "bytes=0-99"})
    assert ranged.status_code == 206 and len(ranged.content) == 100

    problems, seen = validate(specs, recorded)
    assert not problems, "\n".join(problems)
    assert any(key.endswith("/connectionSpecs") for key in seen) and len(recorded) > 8


def _template(path: str) -> str:
    """The recorded path with ids replaced, to name the operation."""
    parts = path.split("/")
    names = {"connectionSpecs", "connections", "audiences", "jobs", "batches", "files"}
    return "/".join("{id}" if i and parts[i - 1] in names and part not in names else part
                    for i, part in enumerate(parts))


def test_a_request_breaking_the_spec_is_caught(specs):
    """The validator is not vacuous: a request without the gateway headers and an answer of the wrong shape
    are reported."""
    bare = requests.Request("GET", "http://127.0.0.1:1/data/core/ups/audiences").prepare()
    call = Call(bare, 200, "application/json", {}, b'{"children": "not a list"}')
    problems, _ = validate(specs, [call])
    assert any(p.startswith("request GET") and "Authorization" in p for p in problems), problems
    assert any(p.startswith("response GET") for p in problems), problems


def test_the_vendored_specs_keep_their_licence_and_origin():
    readme = (SPECS / "README.md").read_text()
    assert "Apache License" in (SPECS / "LICENSE").read_text() and "Version 2.0" in (SPECS / "LICENSE").read_text()
    assert "AdobeDocs/experience-platform-apis" in readme
    assert all((SPECS / name).exists() and name in readme for name in BASES.values())
    assert Path(SPECS / "LICENSE").stat().st_size > 10_000
