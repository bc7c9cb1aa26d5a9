"""The AEP sandbox over loopback HTTP: IMS, gateway checks, Flow Service, audiences, export jobs, Data Access."""

from __future__ import annotations

import io
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import requests
from sandbox import credentials
from sandbox.aep_store import EXPORT_SCHEMA, HUBSPOT_CONNECTION_SPEC_ID, load_population
from sandbox.seed import seed_population
from sandbox_process import ROOT, start_sandbox

FLOW = "/data/foundation/flowservice"
UPS = "/data/core/ups"
EXPORT = "/data/foundation/export"
PROFILES = 3000
PART_ROWS = 400


def get_token(url: str, **overrides) -> requests.Response:
    form = {
        "grant_type": "client_credentials",
        "client_id": credentials.AEP_CLIENT_ID,
        "client_secret": credentials.AEP_CLIENT_SECRET,
        "scope": "openid,AdobeID,read_organizations,additional_info.projectedProductContext,session",
        **overrides,
    }
    return requests.post(f"{url}/ims/token/v3", data=form, timeout=10)


class Platform:
    """Calls with the four gateway headers; ``headers`` overrides (``None`` drops a header)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.token = get_token(url).json()["access_token"]

    def headers(self, **overrides) -> dict:
        headers = {
            "Authorization": f"Bearer {self.token}",
            "x-api-key": credentials.AEP_CLIENT_ID,
            "x-gw-ims-org-id": credentials.AEP_ORG_ID,
            "x-sandbox-name": credentials.AEP_SANDBOX_NAME,
        }
        headers.update(overrides)
        return {k: v for k, v in headers.items() if v is not None}

    def call(self, method: str, path: str, headers: dict | None = None, **kwargs) -> requests.Response:
        url = path if path.startswith("http") else f"{self.url}{path}"
        return requests.request(method, url, headers=self.headers(**(headers or {})), timeout=30, **kwargs)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """One server for the module, seeded before it starts; tests reset what they change."""
    workdir = tmp_path_factory.mktemp("aep")
    result = seed_population(workdir / "aep.sqlite3", None, PROFILES, 3, seed=7, dirty_rate=0.01)
    server = start_sandbox("aep", workdir, "--part-rows", str(PART_ROWS), "--job-seconds", "0.6")
    yield server, result
    server.stop()


@pytest.fixture
def server(seeded):
    sandbox, _ = seeded
    sandbox.reset()
    sandbox.set_faults(fail_exports=0, force_429=0, token_ttl_seconds=None, error_rate=0.0)
    return sandbox


@pytest.fixture
def platform(server):
    return Platform(server.url)


@pytest.fixture
def audiences(seeded):
    return seeded[1].audiences


def assert_aep_error(response: requests.Response, status: int, *words: str) -> dict:
    """Platform error body {type, title, status, detail} with a request id header."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status and body["type"].startswith("https://ns.adobe.com/aep/errors/") and body["title"]
    for word in words:
        assert word in body["detail"], body
    assert response.headers["x-request-id"]
    return body


# --- IMS ------------------------------------------------------------------------------------------------


def test_ims_issues_bearer_token_with_configured_lifetime(server):
    response = get_token(server.url)
    body = response.json()
    assert response.status_code == 200
    assert body["token_type"] == "bearer" and body["access_token"] and body["expires_in"] == 86399


def test_ims_token_expires_after_ttl(server):
    server.set_faults(token_ttl_seconds=1)
    platform = Platform(server.url)
    assert platform.call("GET", f"{UPS}/audiences").status_code == 200
    time.sleep(1.2)
    expired = platform.call("GET", f"{UPS}/audiences")
    assert expired.status_code == 401
    assert expired.json() == {"error_code": "401013", "message": "Oauth token is not valid"}


@pytest.mark.parametrize(
    ("overrides", "status", "error"),
    [
        ({"client_id": "someone-else"}, 400, "invalid_client"),
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"scope": ""}, 400, "invalid_scope"),
    ],
)
def test_ims_rejects_bad_client_credentials(server, overrides, status, error):
    response = get_token(server.url, **overrides)
    assert response.status_code == status
    body = response.json()
    assert body["error"] == error and body["error_description"]
    assert credentials.AEP_CLIENT_SECRET not in response.text


# --- gateway --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status", "body"),
    [
        ({"x-api-key": None}, 403, {"error_code": "403000", "message": "Api Key is required"}),
        ({"Authorization": None}, 401, {"error_code": "401013", "message": "Oauth token is not valid"}),
        ({"Authorization": "Bearer not-a-token"}, 401, {"error_code": "401013", "message": "Oauth token is not valid"}),
        ({"x-api-key": "another-client"}, 403, {"error_code": "403003", "message": "Api Key is invalid"}),
    ],
)
def test_gateway_refuses_bad_credentials_with_gateway_body(platform, headers, status, body):
    response = platform.call("GET", f"{UPS}/audiences", headers=headers)
    assert response.status_code == status
    assert response.json() == body
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("headers", "status", "word"),
    [
        ({"x-gw-ims-org-id": None}, 400, "x-gw-ims-org-id"),
        ({"x-gw-ims-org-id": "OTHER@AdobeOrg"}, 403, "organization"),
        ({"x-sandbox-name": None}, 400, "x-sandbox-name"),
        ({"x-sandbox-name": "dev-2"}, 403, "dev-2"),
    ],
)
def test_gateway_refuses_missing_org_or_sandbox(platform, headers, status, word):
    assert_aep_error(platform.call("GET", f"{FLOW}/connections", headers=headers), status, word)


def test_body_without_json_content_type_is_415(platform):
    response = platform.call(
        "POST", f"{FLOW}/connections", headers={"Content-Type": "text/plain"}, data=b'{"name": "x"}'
    )
    assert_aep_error(response, 415, "Content-Type")


def test_forced_429_then_recovers(server, platform):
    server.set_faults(force_429=1)
    limited = platform.call("GET", f"{UPS}/audiences")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert platform.call("GET", f"{UPS}/audiences").status_code == 200


# --- Flow Service ---------------------------------------------------------------------------------------


def connection_body(name: str = "HubSpot connection", **params) -> dict:
    return {
        "name": name,
        "description": "sandbox test",
        "auth": {
            "specName": "Basic Authentication",
            "params": {
                "clientId": "hub-client",
                "clientSecret": "hub-secret-value",
                "accessToken": "hub-access-value",
                "refreshToken": "hub-refresh-value",
                **params,
            },
        },
        "connectionSpec": {"id": HUBSPOT_CONNECTION_SPEC_ID, "version": "1.0"},
    }


def _without(body: dict, *path: str) -> dict:
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {**connection_body(), "connectionSpec": {"id": "00000000-0000-0000-0000-000000000000", "version": "1.0"}},
            "connectionSpec.id",
        ),
        (
            {**connection_body(), "connectionSpec": {"id": HUBSPOT_CONNECTION_SPEC_ID, "version": "2.0"}},
            "connectionSpec.version",
        ),
        (
            {**connection_body(), "auth": {**connection_body()["auth"], "specName": "OAuth 2 Refresh Code"}},
            "auth.specName",
        ),
        (_without(connection_body(), "auth", "params", "refreshToken"), "auth.params.refreshToken"),
        (_without(connection_body(), "auth", "params", "clientId"), "auth.params.clientId"),
        (connection_body(clientSecret=""), "auth.params.clientSecret"),
        (connection_body(accessToken=42), "auth.params.accessToken"),
        (connection_body(portalId="1"), "auth.params.portalId"),
        (connection_body(name=" "), "name"),
    ],
)
def test_create_connection_validates_hubspot_spec(platform, body, field):
    response = platform.call("POST", f"{FLOW}/connections", json=body)
    error = assert_aep_error(response, 400, field)
    assert field in error["report"]["detailed-message"]
    assert "hub-secret-value" not in response.text


def test_create_get_masks_secrets_and_delete(server, platform):
    created = platform.call("POST", f"{FLOW}/connections", json=connection_body())
    assert created.status_code == 201
    connection_id, etag = created.json()["id"], created.json()["etag"]
    assert etag.startswith('"') and etag.endswith('"')

    item = platform.call("GET", f"{FLOW}/connections/{connection_id}").json()["items"][0]
    assert item["id"] == connection_id and item["state"] == "enabled" and item["etag"] == etag
    assert item["connectionSpec"] == {"id": HUBSPOT_CONNECTION_SPEC_ID, "version": "1.0"}
    assert item["auth"]["specName"] == "Basic Authentication"
    assert item["auth"]["params"]["clientId"] == "hub-client"
    for secret in ("clientSecret", "accessToken", "refreshToken"):
        assert item["auth"]["params"][secret] == "********"
    assert item["createdAt"] <= item["updatedAt"]
    stored = b"".join(p.read_bytes() for p in server.db.parent.glob(server.db.name + "*"))
    assert b"hub-secret-value" not in stored and b"hub-refresh-value" not in stored  # kept as fingerprints only

    assert platform.call("DELETE", f"{FLOW}/connections/{connection_id}").status_code == 204
    assert_aep_error(platform.call("GET", f"{FLOW}/connections/{connection_id}"), 404, connection_id)
    assert_aep_error(platform.call("DELETE", f"{FLOW}/connections/{connection_id}"), 404, connection_id)


def test_list_connections_filters_and_pages(platform):
    for name in ("alpha", "beta", "gamma", "alpha"):
        assert platform.call("POST", f"{FLOW}/connections", json=connection_body(name)).status_code == 201
    by_name = platform.call("GET", f"{FLOW}/connections", params={"property": "name==alpha"}).json()
    assert [i["name"] for i in by_name["items"]] == ["alpha", "alpha"]
    both = platform.call(
        "GET",
        f"{FLOW}/connections",
        params={"property": ["name~a", f"connectionSpec.id=={HUBSPOT_CONNECTION_SPEC_ID}"]},
    ).json()
    assert sorted(i["name"] for i in both["items"]) == ["alpha", "alpha", "beta", "gamma"]
    assert platform.call("GET", f"{FLOW}/connections", params={"property": "connectionSpec.id==nope"}).json() == {
        "items": []
    }

    names, path, pages = [], f"{FLOW}/connections?limit=3", 0
    while path:
        body = platform.call("GET", path).json()
        names += [i["name"] for i in body["items"]]
        path = body.get("_links", {}).get("next", {}).get("href")
        pages += 1
    assert names == ["alpha", "beta", "gamma", "alpha"] and pages == 2
    assert_aep_error(platform.call("GET", f"{FLOW}/connections", params={"property": "name"}), 400, "property")


def test_patch_connection_needs_current_etag(platform):
    created = platform.call("POST", f"{FLOW}/connections", json=connection_body()).json()
    path = f"{FLOW}/connections/{created['id']}"
    patch = [{"op": "replace", "path": "/auth/params/accessToken", "value": "new-access"}]
    assert_aep_error(platform.call("PATCH", path, json=patch), 428, "If-Match")
    assert_aep_error(platform.call("PATCH", path, json=patch, headers={"If-Match": '"stale"'}), 412, "etag")
    updated = platform.call("PATCH", path, json=patch, headers={"If-Match": created["etag"]})
    assert updated.status_code == 200 and updated.json()["etag"] != created["etag"]
    assert platform.call("GET", path).json()["items"][0]["etag"] == updated.json()["etag"]


def test_connection_spec_lookup(platform):
    spec = platform.call("GET", f"{FLOW}/connectionSpecs/{HUBSPOT_CONNECTION_SPEC_ID}").json()["items"][0]
    assert spec["name"] == "hubspot" and spec["version"] == "1.0"
    assert spec["authSpec"][0]["name"] == "Basic Authentication"
    assert set(spec["authSpec"][0]["spec"]["required"]) == {"clientId", "clientSecret", "accessToken", "refreshToken"}
    listed = platform.call("GET", f"{FLOW}/connectionSpecs", params={"property": "name==hubspot"}).json()["items"]
    assert [s["id"] for s in listed] == [HUBSPOT_CONNECTION_SPEC_ID]
    assert_aep_error(platform.call("GET", f"{FLOW}/connectionSpecs/unknown-spec"), 404, "unknown-spec")


# --- audiences ------------------------------------------------------------------------------------------


def test_audiences_are_paged(platform, audiences):
    first = platform.call("GET", f"{UPS}/audiences", params={"limit": 2}).json()
    assert first["_page"] == {"totalCount": 3, "pageSize": 2, "next": 2}  # an integer in segmentation.yaml
    second = platform.call("GET", first["_links"]["next"]["href"]).json()
    assert "next" not in second["_page"] and "next" not in second["_links"]
    listed = first["children"] + second["children"]
    assert [a["id"] for a in listed] == [a["id"] for a in audiences]
    assert [a["name"] for a in listed] == ["Gold Members", "Newsletter Subscribers", "Churn Risk"]
    one = platform.call("GET", f"{UPS}/audiences/{audiences[1]['id']}").json()
    assert one["name"] == "Newsletter Subscribers" and one["lifecycleState"] == "published" and one["description"]
    assert_aep_error(platform.call("GET", f"{UPS}/audiences/nope"), 404, "nope")


# --- export jobs ----------------------------------------------------------------------------------------


def export_body(audience_ids: list[str], statuses=("realized", "existing", "exited"), dataset_key="datasetId") -> dict:
    return {
        "fields": "identityMap,personalEmail,person.name,workAddress,segmentMembership",
        "mergePolicy": {"id": credentials.AEP_MERGE_POLICY_ID, "version": 1},
        "filter": {"segments": [{"segmentId": a, "segmentNs": "ups", "status": list(statuses)} for a in audience_ids]},
        "destination": {dataset_key: credentials.AEP_DATASET_ID, "segmentPerBatch": False},
        "schema": {"name": "_xdm.context.profile"},
    }


def wait_for_job(platform: Platform, job_id: int, timeout: float = 30) -> tuple[dict, list[str]]:
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = platform.call("GET", f"{UPS}/export/jobs/{job_id}").json()
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        if job["status"] in ("SUCCEEDED", "FAILED"):
            return job, seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {seen}")


@pytest.mark.parametrize(
    ("mutate", "word"),
    [
        (lambda b: b["destination"].update(datasetId="unknown-dataset"), "datasetId"),
        (lambda b: b["filter"]["segments"][0].update(segmentId="no-such-audience"), "no-such-audience"),
        (lambda b: b["filter"]["segments"][0].update(status=["realized", "gone"]), "status"),
        (lambda b: b["filter"].update(segments=[]), "filter.segments"),
        (lambda b: b.update(mergePolicy={"id": "other-policy"}), "mergePolicy.id"),
    ],
)
def test_export_job_request_is_validated(platform, audiences, mutate, word):
    body = export_body([audiences[0]["id"]])
    mutate(body)
    assert_aep_error(platform.call("POST", f"{UPS}/export/jobs", json=body), 400, word)


def expected_members(data_dir, audience_ids: list[str], statuses: list[str]) -> set[str]:
    profiles, memberships = load_population(data_dir)
    keep = pc.and_(
        pc.is_in(memberships["audience_id"], pa.array(audience_ids)),
        pc.is_in(memberships["status"], pa.array(statuses)),
    )
    rows = pc.unique(memberships.filter(keep)["row"])
    return set(profiles["profile_id"].take(rows).to_pylist())


def download_batch(platform: Platform, batch_id: str) -> list[pa.Table]:
    listing = platform.call("GET", f"{EXPORT}/batches/{batch_id}/files").json()
    assert listing["_page"]["count"] == len(listing["data"])
    tables = []
    for entry in listing["data"]:
        parts = platform.call("GET", entry["_links"]["self"]["href"]).json()["data"]
        for part in parts:
            response = platform.call("GET", part["_links"]["self"]["href"])
            assert response.status_code == 200
            assert int(response.headers["Content-Length"]) == int(part["length"]) == len(response.content)
            assert response.content[:4] == b"PAR1"
            tables.append(pq.read_table(io.BytesIO(response.content)))
    return tables


def test_export_job_lifecycle_writes_parquet_parts(seeded, platform, audiences):
    wanted = [audiences[1]["id"], audiences[2]["id"]]
    created = platform.call(
        "POST", f"{UPS}/export/jobs", json=export_body(wanted, ("realized", "existing"), "dataSetId")
    )
    assert created.status_code == 200 and created.json()["status"] == "NEW"
    job, seen = wait_for_job(platform, created.json()["id"])
    assert seen[-1] == "SUCCEEDED" and "PROCESSING" in seen
    assert seen == [s for s in ("NEW", "PROCESSING", "SUCCEEDED") if s in seen]  # never out of order

    members = expected_members(seeded[0].db.parent / "aep_data", wanted, ["realized", "existing"])
    tables = download_batch(platform, job["destination"]["batchId"])
    assert len(tables) == -(-len(members) // PART_ROWS) > 1
    assert all(t.schema.equals(EXPORT_SCHEMA) for t in tables)
    assert all(t.num_rows <= PART_ROWS for t in tables)
    exported = pa.concat_tables(tables)
    assert exported.num_rows == job["metrics"]["totalExportedProfileCounter"] == len(members)
    assert set(exported["_id"].to_pylist()) == members
    for row in exported.slice(0, 200).to_pylist():
        ups = dict(row["segmentMembership"])["ups"]
        assert ups and {aid for aid, _ in ups} <= set(wanted)
        assert all(m["status"] in ("realized", "existing") for _, m in ups)
    assert [j["id"] for j in platform.call("GET", f"{UPS}/export/jobs").json()["records"]] == [job["id"]]


def test_export_job_fails_when_fault_set(server, platform, audiences):
    server.set_faults(fail_exports=1)
    failed, _ = wait_for_job(
        platform, platform.call("POST", f"{UPS}/export/jobs", json=export_body([audiences[2]["id"]])).json()["id"]
    )
    assert failed["status"] == "FAILED" and "batchId" not in failed["destination"]
    assert failed["errors"][0]["code"] and failed["errors"][0]["msg"]
    succeeded, _ = wait_for_job(
        platform, platform.call("POST", f"{UPS}/export/jobs", json=export_body([audiences[2]["id"]])).json()["id"]
    )
    assert succeeded["status"] == "SUCCEEDED"


def test_data_access_listing_ranges_and_errors(platform, audiences):
    job, _ = wait_for_job(
        platform, platform.call("POST", f"{UPS}/export/jobs", json=export_body([audiences[2]["id"]])).json()["id"]
    )
    batch_id = job["destination"]["batchId"]
    first = platform.call("GET", f"{EXPORT}/batches/{batch_id}/files", params={"limit": 1}).json()
    assert len(first["data"]) == 1 and first["_links"]["next"]["href"]
    assert first["data"][0]["dataSetFileId"] and first["data"][0]["_links"]["self"]["href"].endswith(
        first["data"][0]["dataSetFileId"]
    )
    part = platform.call("GET", first["data"][0]["_links"]["self"]["href"]).json()["data"][0]
    whole = platform.call("GET", part["_links"]["self"]["href"]).content
    ranged = platform.call("GET", part["_links"]["self"]["href"], headers={"Range": "bytes=4-99"})
    assert ranged.status_code == 206 and ranged.content == whole[4:100]
    assert ranged.headers["Content-Range"] == f"bytes 4-99/{len(whole)}"
    file_path = f"{EXPORT}/files/{first['data'][0]['dataSetFileId']}"
    assert_aep_error(platform.call("GET", file_path, params={"path": "other.parquet"}), 404, "other.parquet")
    assert_aep_error(platform.call("GET", f"{EXPORT}/batches/no-batch/files"), 404, "no-batch")


def test_reset_forgets_connections_and_jobs_but_keeps_population(server, platform, audiences):
    connection_id = platform.call("POST", f"{FLOW}/connections", json=connection_body()).json()["id"]
    job_id = platform.call("POST", f"{UPS}/export/jobs", json=export_body([audiences[0]["id"]])).json()["id"]
    server.reset()
    assert platform.call("GET", f"{FLOW}/connections/{connection_id}").status_code == 404
    assert platform.call("GET", f"{UPS}/export/jobs/{job_id}").status_code == 404
    assert platform.call("GET", f"{UPS}/audiences").json()["_page"]["totalCount"] == 3


def test_seed_after_start_and_cli_reset(aep_sandbox):
    """The fixture's server starts empty: what is seeded later is visible at once; the CLI reset wipes it."""
    platform = Platform(aep_sandbox.url)
    assert platform.call("GET", f"{UPS}/audiences").json()["children"] == []
    result = seed_population(aep_sandbox.db, None, 500, 2, seed=3, dirty_rate=0.0)
    listed = platform.call("GET", f"{UPS}/audiences").json()["children"]
    assert [a["id"] for a in listed] == [a["id"] for a in result.audiences]
    job, _ = wait_for_job(
        platform, platform.call("POST", f"{UPS}/export/jobs", json=export_body([listed[0]["id"]])).json()["id"]
    )
    assert job["metrics"]["totalExportedProfileCounter"] > 0

    reset = subprocess.run(  # noqa: PLW1510 - the return code is asserted
        [sys.executable, "-m", "sandbox.aep", "reset", "--db", str(aep_sandbox.db), "--population"],
        cwd=ROOT,
        env={"PYTHONPATH": f"{ROOT / 'include'}:{ROOT / 'plugins'}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert reset.returncode == 0, reset.stderr
    assert platform.call("GET", f"{UPS}/audiences").json()["children"] == []
    assert platform.call("GET", f"{UPS}/export/jobs/{job['id']}").status_code == 404


@pytest.mark.slow
def test_million_profile_export_is_quick(tmp_path):
    seed_population(tmp_path / "aep.sqlite3", None, 1_000_000, 3, seed=42, dirty_rate=0.01)
    server = start_sandbox("aep", tmp_path, "--job-seconds", "0")
    try:
        platform = Platform(server.url)
        audience_ids = [a["id"] for a in platform.call("GET", f"{UPS}/audiences").json()["children"]]
        started = time.monotonic()
        created = platform.call("POST", f"{UPS}/export/jobs", json=export_body(audience_ids))
        job, _ = wait_for_job(platform, created.json()["id"], timeout=120)
        elapsed = time.monotonic() - started
        rows = sum(t.num_rows for t in download_batch(platform, job["destination"]["batchId"]))
    finally:
        server.stop()
    assert job["status"] == "SUCCEEDED" and rows == job["metrics"]["totalExportedProfileCounter"] > 500_000
    assert elapsed < 30, f"exporting took {elapsed:.1f} s"


def test_nested_directories_and_export_variants_on_the_wire(tmp_path):
    """--file-dirs 2: the batch lists one directory, whose listing holds the next one, whose listing holds
    the files, each entry a ``dataSetFileId`` without ``name`` (Data Access guide, "Directory response");
    --profile-counter absent drops metrics.totalExportedProfileCounter; audiences in the AAM namespace are
    exported under segmentMembership.AAM and refused under segmentNs ups."""
    seeded = seed_population(tmp_path / "aep.sqlite3", None, 600, 2, seed=5, dirty_rate=0.0, email_namespace="email",
                             export_ids=False, audience_namespaces=["AEPSegments", "AAM"])
    server = start_sandbox("aep", tmp_path, "--part-rows", "250", "--job-seconds", "0.2", "--file-dirs", "2",
                           "--profile-counter", "absent")
    try:
        platform = Platform(server.url)
        ids = [a["id"] for a in seeded.audiences]
        assert [a["namespace"] for a in seeded.audiences] == ["AEPSegments", "AAM"]
        wrong = platform.call("POST", f"{UPS}/export/jobs", json=export_body(ids))
        assert_aep_error(wrong, 400, "filter.segments[1].segmentNs must be 'AAM'")
        body = export_body(ids)
        body["filter"]["segments"][1]["segmentNs"] = "AAM"
        job = platform.call("POST", f"{UPS}/export/jobs", json=body).json()
        while (job := platform.call("GET", f"{UPS}/export/jobs/{job['id']}").json())["status"] != "SUCCEEDED":
            assert job["status"] in ("NEW", "PROCESSING")
            time.sleep(0.1)
        assert "totalExportedProfileCounter" not in job["metrics"]
        listing = platform.call("GET", f"{EXPORT}/batches/{job['destination']['batchId']}/files").json()["data"]
        assert len(listing) == 1 and listing[0]["dataSetFileId"].endswith("-dir1")
        level1 = platform.call("GET", listing[0]["_links"]["self"]["href"]).json()["data"]
        assert [e["dataSetFileId"][-5:] for e in level1] == ["-dir2"] and "name" not in level1[0]
        files = platform.call("GET", level1[0]["_links"]["self"]["href"]).json()["data"]
        assert len(files) >= 2 and all("dataSetFileId" in e and "name" not in e for e in files)
        parts = [platform.call("GET", e["_links"]["self"]["href"]).json()["data"][0] for e in files]
        tables = [pq.read_table(io.BytesIO(platform.call("GET", p["_links"]["self"]["href"]).content)) for p in parts]
        table = pa.concat_tables(tables)
        assert "_id" not in table.column_names
        assert {k for row in table["identityMap"].to_pylist() for k, _ in row or []} == {"email", "ECID"}
        assert {k for row in table["segmentMembership"].to_pylist() for k, _ in row or []} == {"ups", "AAM"}
        assert platform.call("GET", f"{EXPORT}/files/{'0' * 32}-dir1").status_code == 404
    finally:
        server.stop()
