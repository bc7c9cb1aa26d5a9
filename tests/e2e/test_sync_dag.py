"""The sync DAG end to end with ``dag.test()`` against both sandboxes over loopback HTTP.

The expected HubSpot state is computed independently, by the per-row baseline mapping of the
parts AEP exported, and compared record for record with what the HubSpot sandbox stores.
"""

from __future__ import annotations

import json
import math
import time

import pendulum
import pyarrow.parquet as pq
import pytest
from e2e_support import (
    ROOT,
    assert_hubspot_matches,
    expected_contacts,
    run_sync,
    start_world,
    upsert_requests,
    write_requests,
)
from sandbox import aep_store, seed


@pytest.fixture
def world(tmp_path, monkeypatch, airflow_db):
    world = start_world(tmp_path, monkeypatch)
    yield world
    world.stop()


def sent_emails(run_folder) -> set[str]:
    """Every email the run's upsert tasks sent (written or rejected)."""
    emails: set[str] = set()
    for path in (run_folder / "upsert").glob("*.parquet"):
        emails |= set(pq.read_table(path, columns=["email"]).column("email").to_pylist())
    return emails


@pytest.mark.parametrize("api_version", ["2026-03", "v3"])
def test_full_run_puts_hubspot_in_the_expected_state(tmp_path, monkeypatch, airflow_db, api_version):
    world = start_world(tmp_path, monkeypatch, api_version=api_version)
    try:
        run = run_sync(world)
        assert run["state"] == "success"
        expected = expected_contacts(run["folder"] / "export", world.audiences)
        assert len(expected) > 1000
        assert_hubspot_matches(world.contacts(), expected)
        report = run["report"]
        assert report["contacts"]["created"] == len(expected)
        assert (run["folder"] / "report.md").read_text().startswith("# ")
        upsert_path = {
            "v3": "/crm/v3/objects/contacts/batch/upsert",
            "2026-03": "/crm/objects/2026-03/contacts/batch/upsert",
        }[api_version]
        versioned = [r["path"] for r in upsert_requests(world.hubspot_requests())]
        assert versioned and set(versioned) == {upsert_path}
    finally:
        world.stop()


def test_incremental_run_sends_only_changes_and_exits(world):
    first = run_sync(world)
    assert first["state"] == "success"
    before = world.contacts()

    # 1% of profiles change in AEP; one member leaves an audience entirely (absent from the export).
    db = world.aep.db
    mutated = seed.mutate_population(db, fraction=0.01, exit_fraction=0.005)
    data_dir = aep_store.default_data_dir(db)
    profiles, memberships = aep_store.load_population(data_dir)
    leaver_email = next(iter(before))
    leaver_ids = {
        p["profile_id"]
        for p in profiles.select(["profile_id", "email", "personal_email"]).to_pylist()
        if (p["email"] or p["personal_email"] or "").strip().lower() == leaver_email
    }
    member_rows = [i for i, pid in enumerate(profiles.column("profile_id").to_pylist()) if pid in leaver_ids]
    keep = [r not in member_rows for r in memberships.column("row").to_pylist()]
    aep_store.save_population(data_dir, profiles, memberships.filter(keep))

    since = time.time()
    second = run_sync(world)
    assert second["state"] == "success"
    counts = second["report"]["contacts"]
    expected_now = expected_contacts(second["folder"] / "export", world.audiences)
    assert leaver_email not in expected_now

    # What changed, by the oracle: new or different mapped values, or statuses that ended.
    first_expected = expected_contacts(first["folder"] / "export", world.audiences)
    changed = {e for e, props in expected_now.items() if first_expected.get(e) != props}
    gone = set(first_expected) - set(expected_now)
    assert sent_emails(second["folder"]) == changed | gone
    assert counts["to_send"] == len(changed | gone)
    assert 0 < counts["to_send"] < 0.1 * len(first_expected)
    assert len(upsert_requests(world.hubspot_requests(since))) == math.ceil(counts["to_send"] / 100)

    after = world.contacts()
    for prop in {a_prop for a_prop in before[leaver_email] if a_prop.startswith("aep_")}:
        if before[leaver_email][prop] in ("realized", "existing"):
            assert after[leaver_email][prop] == "exited"
    assert mutated.changed_ids


def test_dry_run_writes_nothing_to_hubspot(world):
    since = time.time()
    run = run_sync(world, dry_run=True)
    assert run["state"] == "success"
    assert write_requests(world.hubspot_requests(since)) == []
    assert world.contacts() == {}
    report = run["report"]
    assert report["dry_run"] is True
    assert report["contacts"]["to_send"] > 1000
    # A dry run does not advance the snapshot: the next real run still sends everything.
    real = run_sync(world)
    assert real["report"]["contacts"]["to_send"] == report["contacts"]["to_send"]


def test_rerunning_the_same_run_duplicates_nothing(world):
    logical_date = pendulum.datetime(2026, 11, 1, 2, tz="UTC")
    first = run_sync(world, logical_date=logical_date)
    assert first["state"] == "success"
    contacts = world.contacts()
    since = time.time()
    again = run_sync(world, logical_date=logical_date)
    assert again["run_id"] == first["run_id"]
    assert again["state"] == "success"
    assert world.contacts().keys() == contacts.keys()
    # Every batch of the first try is checkpointed: the rerun sends no contact again.
    assert upsert_requests(world.hubspot_requests(since)) == []


def test_object_storage_base_path(world, monkeypatch):
    """A non-local base (fsspec's in-memory filesystem stands in for S3/GCS): every intermediate
    file goes through Airflow's object storage, and the run is as complete as on local disk."""
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.io import attach
    from audience_sync.storage import run_path
    from e2e_support import load_dag
    from fsspec.implementations.memory import MemoryFileSystem

    attach("memory", fs=MemoryFileSystem())  # what a provider does for s3:// or gs://
    monkeypatch.setenv("AUDIENCE_SYNC_BASE_PATH", "memory://audience-sync-e2e")
    dag_run = load_dag().test()
    assert str(dag_run.state) == "success"
    folder = run_path("hubspot_audience_sync", dag_run.run_id)
    assert folder.protocol == "memory"
    report = json.loads((folder / "report.json").read_text())
    assert report["contacts"]["created"] == len(world.contacts()) > 1000
    assert list((folder / "plan" / "send").iterdir())
    assert (ObjectStoragePath("memory://audience-sync-e2e") / "state" / "hubspot_audience_sync" / "snapshot.parquet").exists()
    assert not (world.base / "runs").exists()


def test_a_failed_write_still_gets_a_report_and_never_moves_the_snapshot(world):
    """ensure_audience_properties refuses a mapping target HubSpot lacks: the run fails, run_report still
    writes the report of what ran, and commit_snapshot (a leaf) never runs."""
    mapping = world.base / "mapping_unknown_property.yaml"
    mapping.parent.mkdir(parents=True, exist_ok=True)
    mapping.write_text((ROOT / "tests" / "data" / "bad_inputs" / "mapping_unknown_property.yaml").read_text())
    since = time.time()
    run = run_sync(world, mapping=str(mapping))
    assert run["state"] == "failed"
    assert write_requests(world.hubspot_requests(since)) == []
    report = run["report"]
    assert report is not None and report["dry_run"] is False
    assert report["profiles"]["exported"] > 1000 and report["contacts"]["to_send"] > 1000
    assert report["contacts"]["created"] is None  # no upsert ran
    assert not (world.base / "state" / "hubspot_audience_sync" / "snapshot.parquet").exists()
