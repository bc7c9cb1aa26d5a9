"""OpenLineage events of a real sync: ``airflow dags test`` against both sandboxes, with the OpenLineage
provider's listener writing every event through the OpenLineage client's file transport.

The run is a separate process because the provider decides when it is first imported whether it is
enabled (``[openlineage] transport`` set): the test session's own Airflow keeps it off for every other test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest
from e2e_support import ROOT, start_world
from sandbox import credentials

from audience_sync.hooks.hubspot import EMAIL_PATTERN

SECRETS = (
    credentials.HUBSPOT_PRIVATE_APP_TOKEN,
    credentials.HUBSPOT_CLIENT_SECRET,
    credentials.HUBSPOT_REFRESH_TOKEN,
    credentials.AEP_CLIENT_SECRET,
)


@pytest.fixture
def world(tmp_path, monkeypatch, airflow_db):
    world = start_world(tmp_path, monkeypatch, profiles=300)
    yield world
    world.stop()


def run_with_lineage(events_dir: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_dir / "event"), "append": False}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "audience-sync-tests",
        "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True",
    }
    return subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "hubspot_audience_sync"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )


def completed(events: list[dict]) -> dict[str, list[dict]]:
    """COMPLETE events of task runs, by task id (a mapped task has one per map index)."""
    by_task: dict[str, list[dict]] = {}
    for event in events:
        name = event["job"]["name"]
        if event["eventType"] == "COMPLETE" and "." in name:
            by_task.setdefault(name.split(".", 1)[1], []).append(event)
    return by_task


def datasets(event: dict, side: str) -> dict[tuple[str, str], dict]:
    return {(d["namespace"], d["name"]): d for d in event[side]}


def test_sync_reports_what_each_task_read_and_wrote(world, tmp_path):
    events_dir = tmp_path / "openlineage"
    events_dir.mkdir()
    finished = run_with_lineage(events_dir)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    texts = [path.read_text() for path in sorted(events_dir.glob("event-*.json"))]
    assert texts, "the OpenLineage listener wrote no event"
    by_task = completed([json.loads(text) for text in texts])
    run_dir = next((world.base / "runs" / "hubspot_audience_sync").iterdir())
    aep = f"aep://{quote(credentials.AEP_ORG_ID, safe='')}"
    hubspot = f"hubspot://{world.hubspot.url.split('://', 1)[1]}"
    report = json.loads((run_dir / "report.json").read_text())

    (export,) = by_task["export_audiences"]
    inputs = datasets(export, "inputs")
    for audience in world.audiences:
        assert (aep, f"prod/audiences/{audience['id']}") in inputs
    assert (aep, f"prod/datasets/{credentials.AEP_DATASET_ID}") in inputs
    (export_folder,) = export["outputs"]
    assert (export_folder["namespace"], export_folder["name"]) == ("file", str(run_dir / "export"))
    exported = export_folder["outputFacets"]["outputStatistics"]["rowCount"]
    assert exported == report["profiles"]["exported"] > 0

    (mapped,) = by_task["map_contacts"]
    assert datasets(mapped, "inputs").keys() == {("file", str(run_dir / "export"))}
    outputs = datasets(mapped, "outputs")
    rejects_file = run_dir / "map" / "rejects" / "map.parquet"
    rejects = outputs[("file", str(rejects_file))]
    assert rejects["outputFacets"]["outputStatistics"]["rowCount"] == pq.read_metadata(rejects_file).num_rows > 0
    assert ("file", str(run_dir / "map" / "mapped")) in outputs

    (plan,) = by_task["plan_sync"]
    send_chunks = {name for namespace, name in datasets(plan, "outputs") if "/plan/send/" in name}
    assert send_chunks

    (properties,) = by_task["ensure_audience_properties"]
    (written,) = properties["outputs"]
    assert (written["namespace"], written["name"]) == (hubspot, "contacts/properties")
    fields = {f["name"] for f in written["facets"]["schema"]["fields"]}
    assert {"email", "firstname"} <= fields and any(f.startswith("aep_") for f in fields)

    upserts = by_task["upsert_contacts"]
    assert {name for u in upserts for (_, name) in datasets(u, "inputs")} == send_chunks
    created = 0
    for upsert in upserts:
        outputs = datasets(upsert, "outputs")
        created += outputs[(hubspot, "contacts")]["outputFacets"]["outputStatistics"]["rowCount"]
        assert any(name.endswith(".rejects.parquet") for (namespace, name) in outputs if namespace == "file")
    assert created == report["contacts"]["created"] == len(world.contacts())

    (candidate,) = by_task["build_snapshot_candidate"]
    upsert_rejects = {name for u in upserts for (_, name) in datasets(u, "outputs") if name.endswith(".rejects.parquet")}
    assert upsert_rejects <= {name for (_, name) in datasets(candidate, "inputs")}
    (commit,) = by_task["commit_snapshot"]
    snapshot = world.base / "state" / "hubspot_audience_sync" / "snapshot.parquet"
    assert [(d["namespace"], d["name"]) for d in commit["outputs"]] == [("file", str(snapshot))]
    assert datasets(commit, "inputs").keys() == {
        (d["namespace"], d["name"]) for d in candidate["outputs"] if d["name"].endswith(".parquet")
    }

    everything = "\n".join(texts)
    assert not [s for s in SECRETS if s in everything]
    assert not EMAIL_PATTERN.findall(everything), "an email-like string is in an OpenLineage event"
