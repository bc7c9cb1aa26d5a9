"""ExportAudiencesOperator's ends of a wait, against the AEP sandbox: a cancelled or unknown job status
fails at once (polling and deferred), and on_kill cancels the job the task started."""

from __future__ import annotations

import asyncio

import pytest
from aep_support import TaskStateStore, seeded
from airflow.sdk.exceptions import TaskDeferred
from sandbox_process import start_sandbox

from audience_sync.clients.aep import AepClient
from audience_sync.hooks.aep import AepHook
from audience_sync.operators.aep import AepExportAbandoned, ExportAudiencesOperator


@pytest.fixture
def slow_aep(tmp_path, monkeypatch):
    server = start_sandbox("aep", tmp_path, "--job-seconds", "60")
    yield seeded(server, monkeypatch, profiles=300)
    server.stop()


def operator(tmp_path, aep, **kwargs) -> ExportAudiencesOperator:
    return ExportAudiencesOperator(
        task_id="export", audiences=[aep.audiences[0]["id"]], output_dir=str(tmp_path / "export"),
        poll_interval=0.2, **kwargs,
    )


def test_on_kill_cancels_the_running_job_and_a_retry_starts_a_new_one(slow_aep, tmp_path):
    store = TaskStateStore()
    op = operator(tmp_path, slow_aep, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"task_state_store": store})
    job_id = store.values["aep_export_job_id"]
    assert op.job_id == job_id
    op.on_kill()
    assert [r["method"] for r in slow_aep.requests(f"/export/jobs/{job_id}", "DELETE")] == ["DELETE"]
    assert AepClient(AepHook()).get_export_job(job_id)["status"] == "CANCELLED"

    trigger = deferred.value.trigger

    async def first_event():
        async for event in trigger.run():
            return event.payload

    with pytest.raises(AepExportAbandoned, match=rf"AEP export job {job_id} was cancelled"):
        op.execute_complete({}, event=asyncio.run(first_event()), **deferred.value.kwargs)

    retry = operator(tmp_path, slow_aep, deferrable=True)  # a cancelled job is not reconnected to
    with pytest.raises(TaskDeferred):
        retry.execute({"task_state_store": store})
    assert store.values["aep_export_job_id"] != job_id
    assert len(slow_aep.requests("/export/jobs", "POST")) == 2


def test_on_kill_without_a_job_calls_nothing(slow_aep, tmp_path):
    operator(tmp_path, slow_aep).on_kill()
    assert slow_aep.requests("/export/jobs") == []


@pytest.mark.parametrize("status", ["", "MYSTERY", "CANCELLED"])
def test_polling_stops_at_once_on_a_status_that_cannot_end(slow_aep, tmp_path, status):
    op = operator(tmp_path, slow_aep, deferrable=False, job_timeout=600)
    settings = AepHook().settings
    body = AepClient.export_job_body([slow_aep.audiences[0]["id"]], settings.export_dataset_id, settings.merge_policy_id)
    job_id = AepClient(AepHook()).create_export_job(body)["id"]
    slow_aep.server.admin("POST", "export-job-status", {"id": job_id, "status": status})
    with pytest.raises(AepExportAbandoned, match=rf"AEP export job {job_id}"):
        op.poll_until_complete(job_id, {})  # the wait after submit_job
    assert len(slow_aep.requests(f"/export/jobs/{job_id}", "GET")) == 1  # one look, no waiting
