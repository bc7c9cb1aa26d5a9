"""The AEP client against the sandbox serving each export shape the public docs leave open: audiences in
several namespaces, Data Access directories, with or without the profile counter, profiles without ``_id``
and with the email identity under ``Email`` or ``email``. Also the pure checks the export step calls."""

from __future__ import annotations

import time
from collections import Counter

import pyarrow.parquet as pq
import pytest
from sandbox import aep_store, connections, credentials, seed
from sandbox_process import ROOT, start_sandbox

from audience_sync.clients.aep import AepClient, audience_namespace, check_export_count
from audience_sync.errors import InputError
from audience_sync.hooks.aep import AepHook
from audience_sync.hooks.base import ApiError
from audience_sync.mapping import load_mapping, map_export

STATUSES = list(aep_store.MEMBERSHIP_STATUSES)


@pytest.fixture
def aep(tmp_path, monkeypatch):
    """``aep(*server_flags, **seed_options)`` → (client, seed result); servers stop at teardown."""
    servers = []

    def start(*flags: str, **options):
        workdir = tmp_path / f"aep{len(servers)}"
        workdir.mkdir()
        server = start_sandbox("aep", workdir, "--part-rows", "300", "--job-seconds", "0.2", *flags)
        servers.append(server)
        options = {"profiles": 1000, "audiences": 3, "seed": 3, "dirty_rate": 0.01, **options}
        result = seed.seed_population(server.db, **options)
        monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", connections.aep_connection(server.url))
        return AepClient(AepHook()), result, server

    yield start
    for server in servers:
        server.stop()


def run_export(client: AepClient, audiences: list[dict]) -> dict:
    body = AepClient.export_job_body(audiences, credentials.AEP_DATASET_ID, credentials.AEP_MERGE_POLICY_ID)
    job = client.create_export_job(body)
    deadline = time.monotonic() + 30
    while (job := client.get_export_job(job["id"]))["status"] in ("NEW", "PROCESSING"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert job["status"] == "SUCCEEDED", job
    return job


MAX_PART_BYTES = 10 * 2**20


def download(client: AepClient, job: dict, folder, max_part_bytes: int = MAX_PART_BYTES) -> tuple[list[str], int]:
    folder.mkdir(parents=True, exist_ok=True)
    result = client.download_export(job, folder, max_part_bytes)
    assert result.bytes == sum((folder / p).stat().st_size for p in result.paths)
    return result.paths, result.rows


def expected_rows(db, audience_ids: list[str]) -> int:
    profiles, memberships = aep_store.load_population(aep_store.default_data_dir(db))
    return aep_store.build_export_table(profiles, memberships, audience_ids, STATUSES).num_rows


# --- audience namespaces ----------------------------------------------------------------------------------


def test_audience_namespace_of_the_audiences_api():
    assert audience_namespace({"namespace": "AEPSegments"}) == "ups"  # Platform-built
    assert audience_namespace({}) == audience_namespace({"namespace": None}) == "ups"
    assert audience_namespace({"namespace": "aepsegments"}) == "ups"
    assert audience_namespace({"namespace": "AAM"}) == "AAM"
    assert audience_namespace({"namespace": "CustomerAudienceUpload"}) == "CustomerAudienceUpload"


def test_audiences_export_and_map_under_their_own_namespace(aep, tmp_path):
    client, seeded, _ = aep(audience_namespaces=["AEPSegments", "AAM"])
    resolved = client.resolve_audiences([a["name"] for a in seeded.audiences])
    assert [a["namespace"] for a in resolved] == ["ups", "AAM", "ups"]
    job = run_export(client, resolved)
    assert [s["segmentNs"] for s in job["filter"]["segments"]] == ["ups", "AAM", "ups"]
    paths, rows = download(client, job, tmp_path / "export")
    keys = {ns for p in paths for row in pq.read_table(p)["segmentMembership"].to_pylist() for ns, _ in row or []}
    assert keys == {"ups", "AAM"}

    properties = {a["id"]: f"aep_a{i}" for i, a in enumerate(resolved)}
    mapping = load_mapping(ROOT / "include" / "mappings" / "default.yaml")
    namespaces = {a["id"]: a["namespace"] for a in resolved}
    result = map_export(paths, mapping, properties, str(tmp_path / "map"), audience_namespaces=namespaces)
    mapped = pq.ParquetFile(result.mapped_paths[0]).read().to_pandas()
    assert all(mapped[p].notna().any() for p in properties.values())  # AAM statuses read too
    unread = map_export(paths, mapping, properties, str(tmp_path / "ups-only"))  # everything read under ups
    assert pq.ParquetFile(unread.mapped_paths[0]).read().to_pandas()["aep_a1"].isna().all()


def test_the_sandbox_refuses_an_audience_exported_in_the_wrong_namespace(aep):
    client, seeded, _ = aep(audience_namespaces=["AEPSegments", "AAM"])
    wrong = [{"id": seeded.audiences[1]["id"], "namespace": "ups"}]
    body = AepClient.export_job_body(wrong, credentials.AEP_DATASET_ID, credentials.AEP_MERGE_POLICY_ID)
    with pytest.raises(ApiError) as error:
        client.create_export_job(body)
    assert error.value.status == 400 and "segmentNs must be 'AAM'" in str(error.value)


# --- Data Access directories ------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_parts_behind_nested_directories_are_all_downloaded(aep, tmp_path, depth):
    client, seeded, server = aep("--file-dirs", str(depth))
    ids = [a["id"] for a in seeded.audiences]
    job = run_export(client, ids)
    parts = list(client.iter_export_parts(job["destination"]["batchId"]))
    want = expected_rows(server.db, ids)
    assert len(parts) == -(-want // 300) > 1
    assert all(name.endswith(".parquet") and length > 0 for _, name, length in parts)
    _, rows = download(client, job, tmp_path / "export")
    assert rows == want == job["metrics"]["totalExportedProfileCounter"]
    listings = server.admin("GET", "requests")["requests"]
    assert sum("/export/files/" in r["path"] for r in listings) >= depth + len(parts)


def test_directories_nested_beyond_the_bound_fail_clearly(aep):
    client, seeded, _ = aep("--file-dirs", "3")
    job = run_export(client, [seeded.audiences[0]["id"]])
    with pytest.raises(InputError, match="nests deeper than 2 levels"):
        list(client.iter_export_parts(job["destination"]["batchId"], max_depth=2))


# --- the profile counter ----------------------------------------------------------------------------------


def test_check_export_count_compares_with_the_job_counter():
    job = {"id": 7, "metrics": {"totalExportedProfileCounter": 20}}
    check_export_count(job, 20)
    with pytest.raises(InputError, match="job 7 reports 20 exported profiles but 19 rows were read"):
        check_export_count(job, 19)
    with pytest.raises(InputError, match="reports 20 exported profiles but 0 rows"):  # no part downloaded
        check_export_count(job, 0)
    check_export_count({"id": 7, "metrics": {"totalExportedProfileCounter": "20"}}, 20)  # a string count
    check_export_count({"id": 7, "metrics": {}}, 5)  # absent: nothing to compare with
    check_export_count({"id": 7}, 5)
    with pytest.raises(InputError, match="'many' is not a number"):
        check_export_count({"id": 7, "metrics": {"totalExportedProfileCounter": "many"}}, 5)


@pytest.mark.parametrize("counter", ["exact", "absent", "off-by-one"])
def test_rows_read_are_checked_against_the_served_counter(aep, tmp_path, counter):
    client, seeded, server = aep("--profile-counter", counter)
    ids = [a["id"] for a in seeded.audiences]
    job = run_export(client, ids)
    rows = expected_rows(server.db, ids)
    assert ("totalExportedProfileCounter" in job["metrics"]) == (counter != "absent")
    if counter == "off-by-one":
        with pytest.raises(InputError, match=f"reports {rows + 1} exported profiles but {rows} rows were read"):
            download(client, job, tmp_path / "export")
    else:
        assert download(client, job, tmp_path / "export")[1] == rows


def test_a_job_without_a_batch_is_refused(aep, tmp_path):
    client, _, _ = aep()
    with pytest.raises(InputError, match="job 5 has no destination.batchId"):
        client.download_export({"id": 5, "status": "SUCCEEDED", "destination": {}}, tmp_path, MAX_PART_BYTES)


def test_a_part_over_the_size_cap_fails_before_it_is_downloaded(aep, tmp_path):
    client, seeded, server = aep()
    job = run_export(client, [a["id"] for a in seeded.audiences])
    file_id, name, length = next(client.iter_export_parts(job["destination"]["batchId"]))

    def file_calls() -> int:  # listing the file's parts and downloading one both GET /files/{id}
        return sum(r["path"].endswith(f"/files/{file_id}") for r in server.admin("GET", "requests")["requests"])

    before = file_calls()
    with pytest.raises(InputError, match=rf"AEP file {file_id} part '{name}' is {length:,} bytes, over the limit"):
        download(client, job, tmp_path / "export", max_part_bytes=length - 1)
    assert not list((tmp_path / "export").iterdir())  # nothing written
    assert file_calls() == before + 1  # listed again, never downloaded


# --- exported profile shapes ------------------------------------------------------------------------------


@pytest.mark.parametrize(("email_namespace", "export_ids"), [("Email", True), ("email", False), ("Email", False)])
def test_exports_map_alike_whatever_the_id_and_email_key(aep, tmp_path, email_namespace, export_ids):
    """The same population exported with ``Email`` or ``email`` identity keys, with or without ``_id``, maps
    to the same contacts and the same reject categories."""
    client, seeded, server = aep(email_namespace=email_namespace, export_ids=export_ids)
    ids = [a["id"] for a in seeded.audiences]
    paths, rows = download(client, run_export(client, ids), tmp_path / "export")
    schema = pq.read_schema(paths[0])
    assert ("_id" in schema.names) == export_ids
    keys = {k for p in paths for row in pq.read_table(p, columns=["identityMap"])["identityMap"].to_pylist()
            for k, _ in row or []}
    assert email_namespace in keys and "ECID" in keys

    profiles, memberships = aep_store.load_population(aep_store.default_data_dir(server.db))
    reference = aep_store.build_export_table(profiles, memberships, ids, STATUSES)  # _id and "Email"
    pq.write_table(reference, tmp_path / "reference.parquet")
    mapping = load_mapping(ROOT / "include" / "mappings" / "default.yaml")
    properties = {a: f"aep_a{i}" for i, a in enumerate(ids)}
    got = map_export(paths, mapping, properties, str(tmp_path / "map"))
    want = map_export([str(tmp_path / "reference.parquet")], mapping, properties, str(tmp_path / "ref"))
    assert got.counts == want.counts and got.counts["valid"] > 0.9 * rows

    def contacts(result):
        table = pq.ParquetFile(result.mapped_paths[0]).read()
        return sorted(zip(table["email"].to_pylist(), table["aep_a0"].to_pylist(), strict=True))

    assert contacts(got) == contacts(want)
    rejects = pq.read_table(got.rejects_path).to_pandas()
    assert rejects["record_id"].notna().sum() >= len(rejects) - Counter(rejects["category"])["MISSING_EMAIL"]
    if not export_ids:  # named by the primary identity, e.g. "email:...", "ecid:..."
        assert rejects["record_id"].dropna().str.match(r"^(email|ecid):").all()
