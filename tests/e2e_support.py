"""Running the sync DAG in process (``dag.test()``) against both sandboxes, and the independent
oracle its results are checked against (the per-row baseline mapping of what AEP exported)."""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import requests
from sandbox import connections, seed
from sandbox_process import SandboxProcess, start_sandbox

ROOT = Path(__file__).resolve().parents[1]
DAG_ID = "hubspot_audience_sync"


@dataclass
class SyncWorld:
    """Both sandboxes, seeded, with the Airflow connections pointing at them."""

    hubspot: SandboxProcess
    aep: SandboxProcess
    audiences: list[dict]
    base: Path
    runs: list[dict] = field(default_factory=list)

    def contacts(self) -> dict[str, dict[str, Any]]:
        """HubSpot's state: email → properties, straight from the sandbox's store."""
        stored = self.hubspot.admin("GET", "contacts")["contacts"]
        emails = [c["properties"].get("email") for c in stored]
        assert len(emails) == len(set(emails)), "a contact exists twice in HubSpot"
        return {c["properties"]["email"]: c["properties"] for c in stored}

    def hubspot_requests(self, since: float = 0.0) -> list[dict]:
        return self.hubspot.admin("GET", f"requests?since={since}")["requests"]

    def run_folder(self, run_id: str) -> Path:
        from audience_sync.storage import run_path

        return self.base / "runs" / DAG_ID / run_path(DAG_ID, run_id).name

    def stop(self) -> None:
        self.hubspot.stop()
        self.aep.stop()


def start_world(
    workdir: Path,
    monkeypatch,
    profiles: int = 1500,
    api_version: str = "2026-03",
    hubspot_args: tuple[str, ...] = ("--index-delay", "0.3"),
    aep_args: tuple[str, ...] = ("--part-rows", "600", "--job-seconds", "0.3"),
    **seed_options: Any,
) -> SyncWorld:
    """``seed_options``: the export shape (``sandbox.seed.seed_population``: email_namespace, export_ids,
    audience_namespaces)."""
    aep_dir = workdir / "aep"
    hubspot_dir = workdir / "hubspot"
    aep_dir.mkdir()
    hubspot_dir.mkdir()
    # 1% dirt keeps the map rejects (about 3%) under the mass-change guard's max_reject_fraction (5%)
    seeded = seed.seed_population(
        aep_dir / "aep.sqlite3", profiles=profiles, audiences=3, seed=7, dirty_rate=0.01, **seed_options
    )
    aep = start_sandbox("aep", aep_dir, *aep_args)
    hubspot = start_sandbox("hubspot", hubspot_dir, *hubspot_args)
    monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", connections.aep_connection(aep.url))
    monkeypatch.setenv(
        "AIRFLOW_CONN_HUBSPOT_DEFAULT", connections.hubspot_connection(hubspot.url, api_version=api_version)
    )
    base = Path(os.environ["AUDIENCE_SYNC_BASE_PATH"].removeprefix("file://"))
    return SyncWorld(hubspot, aep, [{"id": a["id"], "name": a["name"]} for a in seeded.audiences], base)


def load_dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "hubspot_audience_sync.py"))
    assert bag.import_errors == {}, bag.import_errors
    return bag.dags[DAG_ID]


def run_sync(world: SyncWorld, logical_date=None, **conf: Any) -> dict:
    """One ``dag.test()`` run; returns its state, run id and (when written) its report."""
    dag = load_dag()
    kwargs = {"run_conf": conf or None}
    if logical_date is not None:  # the same date twice reruns the same run (same run id)
        kwargs["logical_date"] = kwargs["run_after"] = logical_date
    dag_run = dag.test(**kwargs)
    folder = world.run_folder(dag_run.run_id)
    report_path = folder / "report.json"
    outcome = {
        "state": str(dag_run.state),
        "run_id": dag_run.run_id,
        "folder": folder,
        "report": json.loads(report_path.read_text()) if report_path.exists() else None,
    }
    world.runs.append(outcome)
    return outcome


def expected_contacts(export_folder: Path, audiences: list[dict], mapping_path: str | None = None) -> dict[str, dict]:
    """The oracle: the per-row baseline mapping of the parts AEP exported, as HubSpot should hold them."""
    from audience_sync.mapping import load_mapping
    from audience_sync.naming import audience_property_names
    from benchmarks.mapping_baseline import map_export_baseline

    mapping = load_mapping(mapping_path or ROOT / "include" / "mappings" / "default.yaml")
    properties = audience_property_names(audiences)
    out = export_folder.parent / "oracle"
    result = map_export_baseline(sorted(glob.glob(str(export_folder / "*.parquet"))), mapping, properties, str(out))
    expected: dict[str, dict] = {}
    for path in result.mapped_paths:
        for row in pq.read_table(path).to_pylist():
            expected[row["email"]] = {k: v for k, v in row.items() if not k.startswith("_") and v is not None}
    return expected


def assert_hubspot_matches(found: dict[str, dict], expected: dict[str, dict]) -> None:
    """Record for record: same emails, and every expected property value as HubSpot stores it."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    assert not missing and not extra, f"{len(missing)} contact(s) missing, {len(extra)} unexpected"
    wrong = [
        (email, name)
        for email, properties in expected.items()
        for name, value in properties.items()
        if found[email].get(name) != value
    ]
    assert not wrong, f"{len(wrong)} property value(s) differ, first: {wrong[:3]}"


def upsert_requests(requests_log: list[dict]) -> list[dict]:
    return [r for r in requests_log if r["method"] == "POST" and r["path"].endswith("/batch/upsert")]


def write_requests(requests_log: list[dict]) -> list[dict]:
    """Requests that change HubSpot's CRM data (searches and OAuth token refreshes change nothing)."""
    return [
        r
        for r in requests_log
        if r["method"] in ("POST", "PATCH", "PUT", "DELETE") and "/search" not in r["path"] and "/oauth/" not in r["path"]
    ]


def health(url: str) -> bool:
    return requests.get(f"{url}/_sandbox/health", timeout=2).ok
