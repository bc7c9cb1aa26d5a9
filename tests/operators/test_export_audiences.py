"""ExportAudiencesOperator against the AEP sandbox: one export job, waited for by polling or by the trigger,
every Parquet part downloaded in the export schema; failures, retries, resumption and file-based exports."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import subprocess
import sys

import pyarrow as pa
import pytest
from aep_support import TaskStateStore
from airflow.sdk.exceptions import TaskDeferred
from sandbox import aep_store, credentials, seed
from sandbox_process import ROOT

from audience_sync import storage
from audience_sync.clients.aep import AepClient, DownloadSizeMismatch, UnknownAudienceError
from audience_sync.errors import ConfigurationError, InputError
from audience_sync.file_exports import EXPORT_SCHEMA
from audience_sync.hooks.aep import AepHook
from audience_sync.operators.aep import AepExportFailed, ExportAudiencesOperator


def operator(tmp_path, audiences, **kwargs) -> ExportAudiencesOperator:
    kwargs.setdefault("deferrable", False)
    return ExportAudiencesOperator(
        task_id="export", audiences=audiences, output_dir=str(tmp_path / "run" / "export"), poll_interval=0.1, **kwargs
    )


def expected_table(aep) -> pa.Table:
    profiles, memberships = aep_store.load_population(aep_store.default_data_dir(aep.server.db))
    ids = [a["id"] for a in aep.audiences]
    return aep_store.build_export_table(profiles, memberships, ids, list(aep_store.MEMBERSHIP_STATUSES))


def exported(result: dict) -> pa.Table:
    tables = [storage.read_table(path) for path in result["paths"]]
    assert all(t.schema.equals(EXPORT_SCHEMA) for t in tables)
    return pa.concat_tables(tables)


def run_deferred(op, context) -> dict:
    """What the triggerer and the worker do with a deferral: run the trigger, resume with its event."""
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    assert credentials.AEP_CLIENT_SECRET not in json.dumps(trigger.serialize(), default=str)

    async def first_event():
        async for event in trigger.run():
            return event

    event = asyncio.run(first_event())
    return getattr(op, deferred.value.method_name)(context, event=event.payload, **(deferred.value.kwargs or {}))


def test_export_of_three_audiences_over_several_parts(aep, tmp_path):
    result = operator(tmp_path, [a["name"] for a in aep.audiences]).execute({})
    expected = expected_table(aep)
    assert len(result["paths"]) == -(-expected.num_rows // 500) > 1
    assert result["rows"] == expected.num_rows
    assert result["audiences"] == [{**a, "namespace": "ups"} for a in aep.audiences]  # segment-built: ups
    assert exported(result).equals(expected)
    assert len(aep.requests("/export/jobs", "POST")) == 1
    recorded = AepClient(AepHook()).get_export_job(result["job_id"])  # the job as AEP recorded it
    assert recorded["destination"]["segmentPerBatch"] is False
    assert recorded["mergePolicy"]["id"] == credentials.AEP_MERGE_POLICY_ID
    assert [s["status"] for s in recorded["filter"]["segments"]] == [["realized", "existing", "exited"]] * 3


def test_deferrable_export_waits_in_the_trigger(aep, tmp_path):
    store = TaskStateStore()
    result = run_deferred(operator(tmp_path, [aep.audiences[0]["id"]], deferrable=True), {"task_state_store": store})
    assert store.values["aep_export_job_id"] == result["job_id"]
    assert result["rows"] == sum(storage.read_table(p).num_rows for p in result["paths"]) > 0
    assert result["audiences"] == [{**aep.audiences[0], "namespace": "ups"}]


def test_a_retried_task_reconnects_to_its_job(aep, tmp_path):
    store = TaskStateStore()
    ids = [a["id"] for a in aep.audiences]
    with pytest.raises(TaskDeferred):  # attempt 1 started the job, then its worker died while deferred
        operator(tmp_path, ids, deferrable=True).execute({"task_state_store": store})
    job_id = store.values["aep_export_job_id"]
    # Running, or already done on a loaded machine (jobs take 0.3 s here): either way no second job.
    assert AepClient(AepHook()).get_export_job(job_id)["status"] in ("NEW", "PROCESSING", "SUCCEEDED")
    second = operator(tmp_path, ids).execute({"task_state_store": store})  # reconnects to the kept job
    third = operator(tmp_path, ids).execute({"task_state_store": store})  # finds it SUCCEEDED: downloads only
    assert second["job_id"] == third["job_id"] == job_id
    assert second["rows"] == third["rows"] == expected_table(aep).num_rows
    assert len(aep.requests("/export/jobs", "POST")) == 1


def test_failed_job_raises_with_its_errors(aep, tmp_path):
    aep.server.set_faults(fail_exports=1)
    with pytest.raises(AepExportFailed, match=r"AEP export job \d+ FAILED: 0100-000: Profile export failed"):
        operator(tmp_path, [aep.audiences[0]["name"]]).execute({})
    with pytest.raises(AepExportFailed):  # the same through the trigger
        aep.server.set_faults(fail_exports=1)
        run_deferred(operator(tmp_path, [aep.audiences[0]["name"]], deferrable=True), {})


def test_unknown_audience_lists_the_available_ones(aep, tmp_path):
    with pytest.raises(UnknownAudienceError) as error:
        operator(tmp_path, ["Gold Members", "Platinum Whales"]).execute({})
    assert "'Platinum Whales'" in str(error.value)
    assert all(repr(a["name"]) in str(error.value) for a in aep.audiences)
    assert aep.requests("/export/jobs", "POST") == []


def test_export_gets_through_a_5xx_burst(aep, tmp_path, caplog, capfd):
    caplog.set_level(logging.INFO)
    aep.server.set_faults(error_rate=0.3)
    result = operator(tmp_path, [a["id"] for a in aep.audiences]).execute({})
    assert aep.server.admin("GET", "stats")["stats"]["injected_5xx"] > 0
    assert exported(result).equals(expected_table(aep))
    logged = caplog.text + capfd.readouterr().out
    assert "answered 5" in logged and "AEP export job" in logged
    with sqlite3.connect(aep.server.db) as db:
        tokens = [row[0] for row in db.execute("SELECT token FROM tokens")]
    assert tokens and not any(secret in logged for secret in [credentials.AEP_CLIENT_SECRET, *tokens])


def drop_folder(tmp_path):
    """Source files inside an allowed root: the tests' base path (AUDIENCE_SYNC_BASE_PATH)."""
    return tmp_path / "data" / "drop"


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_file_based_exports_give_the_same_rows(aep, tmp_path, fmt):
    ids = [a["id"] for a in aep.audiences]
    files = seed.write_audience_files(aep.server.db, drop_folder(tmp_path), fmt, ids, part_rows=800)
    source = str(drop_folder(tmp_path) / f"*.{fmt}")
    result = operator(tmp_path, [a["name"] for a in aep.audiences], source_files=source).execute({})
    assert aep.requests("/export/jobs", "POST") == []
    assert len(result["paths"]) == len(files) > 1 and result["job_id"] is None
    expected = expected_table(aep)
    assert result["rows"] == expected.num_rows
    columns = ["_id", "personalEmail", "person", "workAddress", "segmentMembership"]
    assert exported(result).select(columns).equals(expected.select(columns))


def test_file_based_export_without_an_audience_fails_naming_it(aep, tmp_path):
    ids = [a["id"] for a in aep.audiences]
    seed.write_audience_files(aep.server.db, drop_folder(tmp_path), "parquet", ids[:2])
    with pytest.raises(InputError) as error:
        operator(tmp_path, ids, source_files=str(drop_folder(tmp_path))).execute({})
    message = str(error.value)
    assert f"{aep.audiences[2]['name']!r} ({ids[2]})" in message and "no member" in message
    assert aep.audiences[0]["name"] not in message


def test_source_files_outside_the_allowed_roots_are_refused_before_any_call(aep, tmp_path):
    ids = [a["id"] for a in aep.audiences]
    seed.write_audience_files(aep.server.db, tmp_path / "elsewhere", "csv", ids)
    for source in [str(tmp_path / "elsewhere"), str(drop_folder(tmp_path) / ".." / ".." / "elsewhere")]:
        with pytest.raises(ConfigurationError) as error:
            operator(tmp_path, ids, source_files=source).execute({})
        assert source in str(error.value) and str(tmp_path / "data") in str(error.value)  # names the roots
    assert aep.requests() == []


def test_an_oversized_source_file_fails_before_it_is_read(aep, tmp_path, monkeypatch):
    ids = [a["id"] for a in aep.audiences]
    (big,) = seed.write_audience_files(aep.server.db, drop_folder(tmp_path), "csv", ids)
    config = tmp_path / "sync_config.yaml"
    config.write_text(f"max_input_bytes: {big.stat().st_size - 1}\n")
    monkeypatch.setenv("AUDIENCE_SYNC_CONFIG", str(config))
    with pytest.raises(InputError, match=rf"{big.name} is {big.stat().st_size:,} bytes, over the limit"):
        operator(tmp_path, ids, source_files=str(big)).execute({})
    assert not list((tmp_path / "run" / "export").glob("part-*"))


def test_download_checks_the_reported_length(aep, tmp_path):
    result = operator(tmp_path, [aep.audiences[0]["id"]]).execute({})
    client = AepClient(AepHook())
    batch_id = client.get_export_job(result["job_id"])["destination"]["batchId"]
    file_id, name, length = next(client.iter_export_parts(batch_id))
    part = {"name": name, "length": length}
    target = tmp_path / "again.parquet"
    written = client.download_part(file_id, part["name"], target, part["length"])
    assert written == part["length"] == target.stat().st_size
    with pytest.raises(DownloadSizeMismatch, match=f"wrote {part['length']} bytes, Data Access reported"):
        client.download_part(file_id, part["name"], tmp_path / "short.parquet", part["length"] + 1)
    assert sorted(p.name for p in tmp_path.glob("*.parquet")) == ["again.parquet"]
    assert not list(tmp_path.glob(".*.tmp"))


DAG_FILE = """
import json, sys
from airflow.sdk import DAG, task
from audience_sync.operators.aep import ExportAudiencesOperator

with DAG("aep_export_under_dag_test", schedule=None) as dag:
    export = ExportAudiencesOperator(
        task_id="export", audiences={audiences!r}, output_dir="{out}/{{{{ dag.dag_id }}}}/export", poll_interval=0.2
    )

    @task
    def keep(result):
        with open("{out}/result.json", "w") as handle:
            json.dump(result, handle)

    keep(export.output)

if __name__ == "__main__":
    sys.exit(0 if dag.test().state == "success" else 1)
"""


def test_deferred_export_under_dag_test(aep, tmp_path):
    """dag.test() runs the trigger inline (and drops defer kwargs: the operator copes)."""
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "export_dag.py").write_text(DAG_FILE.format(audiences=[a["name"] for a in aep.audiences], out=tmp_path))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": str(ROOT / "plugins"),
    }
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    run = subprocess.run([sys.executable, str(dags / "export_dag.py")], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["rows"] == expected_table(aep).num_rows and len(result["paths"]) > 1
    assert all("aep_export_under_dag_test/export/part-" in p for p in result["paths"])
    assert len(aep.requests("/export/jobs", "POST")) == 1
    assert "running trigger in line" in run.stdout + run.stderr
    assert credentials.AEP_CLIENT_SECRET not in run.stdout + run.stderr
