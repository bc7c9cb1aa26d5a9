"""The export and map side of the sync DAG end to end (``dag.test()`` against both sandboxes): an export
that lost data, or a param pointing outside the allowed roots, fails the run before any HubSpot write;
the export shapes the public docs leave open (no ``_id``, the ``Email`` namespace, audiences outside
``ups``) sync; an audience renamed in AEP keeps its HubSpot property. Populations are small on purpose."""

from __future__ import annotations

import json
import re
import sqlite3
import time

import pyarrow.parquet as pq
import pytest
from audience_sync.clients.hubspot import HubSpotClient
from audience_sync.hooks.hubspot import HubSpotHook
from e2e_support import ROOT, assert_hubspot_matches, expected_contacts, run_sync, start_world, write_requests
from sandbox import aep_store, seed

PROFILES = 300


@pytest.fixture
def make_world(tmp_path, monkeypatch, airflow_db):
    worlds = []

    def make(**options):
        workdir = tmp_path / f"world{len(worlds)}"
        workdir.mkdir()
        world = start_world(workdir, monkeypatch, profiles=PROFILES, **options)
        worlds.append(world)
        return world

    yield make
    for world in worlds:
        world.stop()


def assert_failed_before_any_write(world, run, since: float, output: str, *fragments: str) -> None:
    assert run["state"] == "failed"
    assert write_requests(world.hubspot_requests(since)) == []
    assert world.contacts() == {}
    assert not (run["folder"] / "map" / "mapped").exists()  # nothing mapped, so nothing could be sent
    for fragment in fragments:
        assert fragment in output, f"{fragment!r} not in the run's log"


def test_a_missing_audience_file_fails_before_any_write(make_world, capfd):
    world = make_world()
    ids = [a["id"] for a in world.audiences]
    drop = world.base / "drop"
    seed.write_audience_files(world.aep.db, drop, "csv", ids[:2])  # the third audience's file is missing
    since = time.time()
    run = run_sync(world, audiences=ids, source_files=str(drop))
    missing = world.audiences[2]
    assert_failed_before_any_write(
        world, run, since, capfd.readouterr().out, f"{missing['name']!r} ({missing['id']})", "no member"
    )


def test_zero_downloaded_parts_against_a_non_zero_job_count_fails_before_any_write(make_world, capfd):
    world = make_world(aep_args=("--job-seconds", "0.3", "--profile-counter", "off-by-one"))
    data_dir = aep_store.default_data_dir(world.aep.db)
    profiles, memberships = aep_store.load_population(data_dir)
    aep_store.save_population(data_dir, profiles, memberships.slice(0, 0))  # the job exports no part...
    since = time.time()
    run = run_sync(world)  # ... but reports one exported profile
    assert_failed_before_any_write(
        world, run, since, capfd.readouterr().out, "reports 1 exported profiles but 0 rows were read"
    )


@pytest.mark.parametrize("param", ["mapping", "source_files"])
def test_a_path_param_outside_the_allowed_roots_fails_naming_the_roots(make_world, tmp_path, capfd, param):
    world = make_world()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    if param == "mapping":
        value = outside / "mapping.yaml"
        value.write_text((ROOT / "include" / "mappings" / "default.yaml").read_text())
    else:
        seed.write_audience_files(world.aep.db, outside, "csv", [a["id"] for a in world.audiences])
        value = outside
    since = time.time()
    run = run_sync(world, **{param: str(value)})
    assert_failed_before_any_write(
        world, run, since, capfd.readouterr().out, "outside the allowed roots", str(ROOT / "include"), str(world.base)
    )


def test_an_oversized_export_file_fails_before_any_write(make_world, tmp_path, monkeypatch, capfd):
    config = (ROOT / "include" / "sync_config.yaml").read_text()
    small = tmp_path / "sync_config.yaml"
    small.write_text(re.sub(r"(?m)^max_input_bytes:.*$", "max_input_bytes: 2000", config))
    monkeypatch.setenv("AUDIENCE_SYNC_CONFIG", str(small))
    world = make_world()
    since = time.time()
    run = run_sync(world)
    assert_failed_before_any_write(world, run, since, capfd.readouterr().out, "over the limit of 2,000 bytes")
    assert not list((run["folder"] / "export").glob("part-*.parquet"))  # never downloaded


def test_an_export_without_ids_and_with_email_namespace_keys_syncs(make_world):
    world = make_world(email_namespace="Email", export_ids=False)
    run = run_sync(world)
    assert run["state"] == "success"
    export = run["folder"] / "export"
    found = world.contacts()
    assert len(found) == run["report"]["profiles"]["valid"] > 0.4 * PROFILES
    # The oracle reads the same population exported with _id (the sandbox's reference shape).
    profiles, memberships = aep_store.load_population(aep_store.default_data_dir(world.aep.db))
    reference = aep_store.build_export_table(
        profiles, memberships, [a["id"] for a in world.audiences], list(aep_store.MEMBERSHIP_STATUSES)
    )
    oracle = export.parent / "reference"
    oracle.mkdir()
    pq.write_table(reference, oracle / "part-00000.parquet")
    ids = pq.read_table(sorted(export.glob("part-*.parquet")), columns=["_id"]).column("_id")
    assert ids.null_count == len(ids) > 0  # AEP exported no _id (the export schema keeps the column, null)
    assert_hubspot_matches(found, expected_contacts(oracle, world.audiences))


def test_audiences_outside_the_ups_namespace_sync(make_world):
    """The sandbox refuses an export job whose segmentNs is not the audience's namespace, and exports each
    audience's memberships under its own namespace: every audience must reach HubSpot."""
    world = make_world(audience_namespaces=("AEPSegments", "AAM", "CustomerUpload"))
    run = run_sync(world)
    assert run["state"] == "success"
    found = world.contacts()
    for prop in ("aep_gold_members", "aep_newsletter_subscribers", "aep_churn_risk"):
        members = [c for c in found.values() if c.get(prop) in ("realized", "existing", "exited")]
        assert members, f"no contact has a status in {prop}: its audience's namespace was not read"


def test_an_audience_renamed_in_aep_keeps_its_property_and_gets_the_new_label(make_world):
    world = make_world()
    ids = [a["id"] for a in world.audiences]
    first = run_sync(world, audiences=ids)
    assert first["state"] == "success"
    registry = world.base / "state" / "hubspot_audience_sync" / "audience_properties.json"
    assert json.loads(registry.read_text())[ids[0]] == "aep_gold_members"
    with sqlite3.connect(world.aep.db) as db:
        db.execute("UPDATE audiences SET body = json_set(body, '$.name', 'Gold VIP') WHERE id = ?", (ids[0],))
    before = {p["name"] for p in HubSpotClient(HubSpotHook()).list_properties()}

    second = run_sync(world, audiences=ids)
    assert second["state"] == "success"
    client = HubSpotClient(HubSpotHook())
    after = {p["name"] for p in client.list_properties()}
    assert after == before and "aep_gold_vip" not in after  # no new property
    assert client.get_property("aep_gold_members")["label"] == "Gold VIP"
    assert json.loads(registry.read_text())[ids[0]] == "aep_gold_members"
    assert second["report"]["contacts"]["to_send"] == 0  # same members, same property: nothing to send
