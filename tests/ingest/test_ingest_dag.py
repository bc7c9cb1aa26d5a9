"""The hubspot_to_aep_ingest DAG end to end (``dag.test()``) against the AEP and HubSpot sandboxes: the first
run creates the whole chain once, the second creates nothing and reports the flows' runs; without an OAuth
app in hubspot_default the DAG fails saying why."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from audience_sync import storage
from sandbox import connections
from sandbox_process import start_sandbox

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "hubspot_to_aep_ingest"
KINDS = ("source connection", "dataset", "target connection", "mapping set", "dataflow")


@pytest.fixture
def world(tmp_path, monkeypatch, airflow_db):
    """Both sandboxes, hubspot_default as an OAuth app (form b), and a config that polls every 0.3 s."""
    servers = {}
    for name in ("aep", "hubspot"):
        folder = tmp_path / name
        folder.mkdir()
        servers[name] = start_sandbox(name, folder)
    servers["aep"].set_faults(extra={"flow_run_seconds": 1.0})
    monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", connections.aep_connection(servers["aep"].url))
    monkeypatch.setenv(
        "AIRFLOW_CONN_HUBSPOT_DEFAULT", connections.hubspot_connection_form(servers["hubspot"].url, "oauth")
    )
    config = yaml.safe_load((ROOT / "include" / "ingest_config.yaml").read_text())
    config["runs"].update(poll_seconds=0.3, timeout_seconds=60)
    path = tmp_path / "ingest_config.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("AUDIENCE_SYNC_INGEST_CONFIG", str(path))
    yield servers
    for server in servers.values():
        server.stop()


def run_dag(retries: bool = True):
    """``retries=False`` for runs expected to fail: the task retries would only add their delays."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / f"{DAG_ID}.py"))
    assert bag.import_errors == {}, bag.import_errors
    dag = bag.dags[DAG_ID]
    if not retries:
        for task in dag.tasks:
            task.retries = 0
    dag_run = dag.test()
    results = {ti.task_id: ti.xcom_pull(task_ids=ti.task_id) for ti in dag_run.get_task_instances()}
    return dag_run, results


def writes(server) -> list[tuple[str, str]]:
    logged = server.admin("GET", "requests")["requests"]
    return [(r["method"], r["path"]) for r in logged if r["method"] in ("POST", "PATCH", "PUT", "DELETE")]


def test_first_run_creates_the_chain_once_the_second_creates_nothing_and_reports_runs(world, capsys):
    first, results = run_dag()
    log = "".join(capsys.readouterr())  # dag.test() prints the task logs
    assert str(first.state) == "success"
    chain = results["ensure_dataflows"]
    assert chain["created"] == 10
    assert sorted({i["kind"] for i in chain["items"]}) == sorted(KINDS)
    assert {i["object_path"] for i in chain["items"]} == {"Hubspot.Contacts", "Hubspot.Companies"}
    creates = [path for method, path in writes(world["aep"]) if method == "POST" and "/ims/" not in path]
    assert len(creates) == 11  # base connection + 2 × (source, dataset, target, mapping set, flow)

    explored = results["explore"]
    assert {"Hubspot.Contacts", "Hubspot.Companies", "Hubspot.Deals"} <= set(explored["objects"])
    contacts = next(t for t in explored["tables"] if t["path"] == "Hubspot.Contacts")
    preview = pq.read_table(contacts["preview_file"])
    assert preview.num_rows == contacts["rows"] == 8
    assert "Properties_Email_Value" in preview.column_names
    assert "Hubspot.Contacts: 8 column(s), 8 preview row(s)" in log
    assert "@example.com" not in log  # preview values stay out of the log

    assert "Pausing task as DEFERRED" in log and "still running" in log  # deferred while the runs ran
    runs = {r["flow_id"]: r for r in results["flow_runs"]["runs"]}
    assert len(runs) == 2 and all(r["status"] == "success" for r in runs.values())
    assert sorted((r["records_read"], r["records_ingested"], r["records_failed"]) for r in runs.values()) == [
        (40, 40, 0),
        (120, 118, 2),
    ]
    assert storage.read_json(results["flow_runs"]["report_file"])["totals"]["records_ingested"] == 158

    before = len(writes(world["aep"]))
    second, again = run_dag()
    assert str(second.state) == "success"
    assert again["ensure_dataflows"]["created"] == 0
    assert [i["id"] for i in again["ensure_dataflows"]["items"]] == [i["id"] for i in chain["items"]]
    assert [w for w in writes(world["aep"])[before:] if "/ims/" not in w[1]] == []
    assert {r["flow_id"] for r in again["flow_runs"]["runs"]} == set(runs)
    assert again["flow_runs"]["totals"]["runs"] >= 2


def test_trigger_mode_starts_a_run_of_each_one_time_flow(world):
    path = Path(os.environ["AUDIENCE_SYNC_INGEST_CONFIG"])
    config = yaml.safe_load(path.read_text())
    config["flow"]["frequency"] = "once"
    config["runs"]["mode"] = "trigger"
    path.write_text(yaml.safe_dump(config))
    dag_run, results = run_dag()
    assert str(dag_run.state) == "success"
    runs = results["flow_runs"]["runs"]
    assert len(runs) == 4 and {r["status"] for r in runs} == {"success"}  # the scheduled one and the triggered one
    assert sum(1 for method, path in writes(world["aep"]) if path.endswith("/flowservice/runs")) == 2


def test_a_failed_run_fails_the_dag_with_adobes_error(world, capsys):
    world["aep"].set_faults(extra={"flow_run_seconds": 0.5, "fail_runs": 1})
    dag_run, results = run_dag(retries=False)
    assert str(dag_run.state) == "failed"
    log = "".join(capsys.readouterr())
    assert "AEP flow run(s) failed" in log and "CONNECTOR-1001-500" in log
    assert results["ensure_dataflows"]["created"] == 10


def test_without_an_oauth_app_the_dag_fails_saying_why(world, monkeypatch, capsys):
    monkeypatch.setenv(
        "AIRFLOW_CONN_HUBSPOT_DEFAULT", connections.hubspot_connection_form(world["hubspot"].url, "token")
    )
    dag_run, results = run_dag(retries=False)
    assert str(dag_run.state) == "failed"
    assert results["connect"]["skipped"] and results["connect"]["connection_id"] is None
    assert "needs AEP's Flow Service HubSpot base connection" in "".join(capsys.readouterr())
    assert writes(world["aep"]) == []
