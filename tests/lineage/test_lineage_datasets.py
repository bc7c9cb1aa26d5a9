"""The OpenLineage datasets built from the tasks' typed results: names, counts, and the provider's classes."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from audience_sync import lineage
from audience_sync import contracts as c

SETTINGS = SimpleNamespace(org_id="ABC123@AdobeOrg", sandbox_name="dev", export_dataset_id="ds-from-connection")
AEP = "aep://ABC123%40AdobeOrg"
EXPORT = c.ExportResult(
    paths=("file:///data/runs/d/r/export/part-00000.parquet", "file:///data/runs/d/r/export/part-00001.parquet"),
    rows=1200,
    audiences=(c.Audience("aud-1", "VIP"), c.Audience("aud-2", "Churn")),
    job_id=7,
)


@pytest.mark.parametrize(
    ("path", "namespace", "name"),
    [
        ("/data/runs/r/map/rejects/map.parquet", "file", "/data/runs/r/map/rejects/map.parquet"),
        ("file:///data/runs/r/export", "file", "/data/runs/r/export"),
        ("file:///data/runs/r/export/", "file", "/data/runs/r/export"),
        ("s3://aws_default@bucket/audience-sync/runs/x.parquet", "s3://bucket", "audience-sync/runs/x.parquet"),
        ("gs://bucket/a//b/", "gs://bucket", "a/b"),
        ("memory://audience-sync-e2e/runs/r/export", "memory://audience-sync-e2e", "runs/r/export"),
    ],
)
def test_file_datasets_follow_the_naming_spec_without_connection_ids(path, namespace, name):
    ref = lineage.file_dataset(path)
    assert (ref.namespace, ref.name) == (namespace, name)


@pytest.mark.parametrize(
    ("host", "port", "namespace"),
    [
        (None, None, "hubspot://api.hubapi.com"),
        ("https://api.hubapi.com", None, "hubspot://api.hubapi.com"),
        ("http://127.0.0.1:8081", None, "hubspot://127.0.0.1:8081"),
        ("127.0.0.1", 8081, "hubspot://127.0.0.1:8081"),
    ],
)
def test_hubspot_namespace_is_the_api_host(host, port, namespace):
    assert lineage.hubspot_namespace(host, port) == namespace


def test_export_reads_the_audiences_and_the_export_dataset():
    found = lineage.export_lineage(EXPORT.to_xcom(), SETTINGS, "file:///data/runs/d/r/export", dataset_id=None)
    assert [(d.namespace, d.name) for d in found.inputs] == [
        (AEP, "dev/audiences/aud-1"),
        (AEP, "dev/audiences/aud-2"),
        (AEP, "dev/datasets/ds-from-connection"),
    ]
    (output,) = found.outputs
    assert (output.namespace, output.name, output.rows, output.files) == ("file", "/data/runs/d/r/export", 1200, 2)
    chosen = lineage.export_lineage(EXPORT, SETTINGS, "/x", dataset_id="ds-param")
    assert chosen.inputs[-1].name == "dev/datasets/ds-param"


def test_a_file_based_export_reads_its_files_instead_of_a_dataset():
    found = lineage.export_lineage(EXPORT, SETTINGS, "/x", dataset_id="ds-param", source_files="s3://c@b/in/*.csv")
    assert [(d.namespace, d.name) for d in found.inputs][-1] == ("s3://b", "in/*.csv")
    assert not [d for d in found.inputs if "/datasets/" in d.name]


def test_map_plan_and_upsert_chain_through_the_same_names():
    mapped = c.MapResult(
        mapped_paths=("/data/runs/d/r/map/mapped/part-00000.parquet",),
        rejects_path="/data/runs/d/r/map/rejects/map.parquet",
        counts={"exported": 1200, "valid": 1150, "rejected": 50},
        duration_s=1.0,
        audiences=EXPORT.audiences,
        target_properties=("email",),
    )
    plan = c.PlanResult(
        send_paths=("/data/runs/d/r/plan/send/part-00000.parquet", "/data/runs/d/r/plan/send/part-00001.parquet"),
        next_snapshot_path="/data/runs/d/r/plan/next_snapshot.parquet",
        previous_snapshot_path="file:///data/state/d/snapshot.parquet",
        counts={},
        sent_by_audience={},
        duration_s=1.0,
        dry_run=False,
        full_refresh=False,
    )
    summary = c.UpsertSummary(
        records=600, sent=600, created=500, updated=90, rejected=10, requests=6,
        results_path="/data/runs/d/r/upsert/part-00001.results.parquet",
        rejects_path="/data/runs/d/r/upsert/part-00001.rejects.parquet", started_at=0.0, finished_at=1.0,
    )
    export_out = lineage.export_lineage(EXPORT, SETTINGS, "file:///data/runs/d/r/export").outputs
    map_found = lineage.map_lineage(EXPORT.to_xcom(), mapped.to_xcom())
    plan_found = lineage.plan_lineage(mapped, plan.to_xcom())
    upsert_found = lineage.upsert_lineage(plan.send_paths[1], summary.to_xcom(), "hubspot://api.hubapi.com")

    assert map_found.inputs == export_out
    assert [(d.name, d.rows) for d in map_found.outputs] == [
        ("/data/runs/d/r/map/mapped", 1150),
        ("/data/runs/d/r/map/rejects/map.parquet", 50),
    ]
    assert {d.name for d in plan_found.inputs} == {
        "/data/runs/d/r/map/mapped", "/data/runs/d/r/map/rejects/map.parquet", "/data/state/d/snapshot.parquet",
    }
    assert (upsert_found.inputs[0].namespace, upsert_found.inputs[0].name) in {
        (d.namespace, d.name) for d in plan_found.outputs
    }
    contacts, rejects = upsert_found.outputs
    assert (contacts.namespace, contacts.name, contacts.rows) == ("hubspot://api.hubapi.com", "contacts", 590)
    assert (rejects.name, rejects.rows) == ("/data/runs/d/r/upsert/part-00001.rejects.parquet", 10)


def test_operator_lineage_carries_statistics_and_property_names():
    from airflow.providers.openlineage.extractors import OperatorLineage

    found = lineage.properties_lineage("hubspot://h", {"a1": "aep_vip"}, ["email", "aep_vip"]).operator_lineage()
    assert isinstance(found, OperatorLineage)
    (output,) = found.outputs
    assert [f.name for f in output.facets["schema"].fields] == ["aep_vip", "email"]
    assert output.outputFacets == {}
    summary = c.UpsertSummary(3, 3, 2, 1, 0, 1, "/r.parquet", "/x.rejects.parquet", 0.0, 1.0)
    upsert = lineage.upsert_lineage("/send.parquet", summary, "hubspot://h").operator_lineage()
    assert upsert.inputs[0].inputFacets["inputStatistics"].rowCount == 3
    assert upsert.outputs[0].outputFacets["outputStatistics"].rowCount == 3


def test_without_the_provider_the_methods_return_nothing(monkeypatch):
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage.extractors", None)  # import fails
    assert lineage.upsert_lineage(
        "/send.parquet", c.UpsertSummary(1, 1, 1, 0, 0, 1, "/r", "/j", 0.0, 1.0), "hubspot://h"
    ).operator_lineage() is None


def test_a_task_without_a_result_reports_no_dataset():
    """A failed task has no XCom: the provider asks for its lineage all the same (extract_on_failure)."""
    assert lineage.export_lineage(None, SETTINGS, "/x") == lineage.Lineage()
    assert lineage.map_lineage(EXPORT, None) == lineage.Lineage()
    assert lineage.properties_lineage("hubspot://h", None, ["email"]) == lineage.Lineage()
    assert lineage.upsert_lineage("/send.parquet", None, "hubspot://h").operator_lineage().outputs == []


def test_the_snapshot_chain_links_a_run_to_the_next_plan():
    plan = c.PlanResult(("/r/plan/send/part-00000.parquet",), "/r/plan/next.parquet", None, {}, {}, 1.0, False, False)
    gone = c.UpsertSummary(2, 2, 1, 0, 1, 1, "/r/u/0.results.parquet", "/r/u/0.rejects.parquet", 0.0, 1.0,
                         gone=1, gone_path="/r/u/0.gone.parquet")
    candidate = c.SnapshotCandidate("/r/plan/snapshot-candidate.parquet", "/r/expected_counts.json", 1, 1, "")
    built = lineage.candidate_lineage(plan.to_xcom(), [gone], candidate.to_xcom())
    assert [d.name for d in built.inputs] == ["/r/plan/next.parquet", "/r/u/0.rejects.parquet", "/r/u/0.gone.parquet"]
    assert [d.name for d in built.outputs] == ["/r/plan/snapshot-candidate.parquet", "/r/expected_counts.json"]
    committed = lineage.commit_lineage(candidate, c.CommitResult("file:///s/snapshot.parquet", {}).to_xcom())
    assert (committed.inputs[0].name, committed.outputs[0].name) == (
        "/r/plan/snapshot-candidate.parquet", "/s/snapshot.parquet",
    )
    assert lineage.candidate_lineage(plan, [gone], None) == lineage.commit_lineage(candidate, None) == lineage.Lineage()
