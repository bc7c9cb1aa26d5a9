"""AepExportJobTrigger against the AEP sandbox: it ends on SUCCEEDED and FAILED, and ends at once, with an
error naming the status, on a cancelled job or a status AEP does not document (never waits for the timeout)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aep_support import seeded
from sandbox import credentials
from sandbox_process import start_sandbox

from audience_sync.clients.aep import AepClient
from audience_sync.constants import ExportJobStatus
from audience_sync.hooks.aep import AepHook
from audience_sync.triggers.aep_export import AepExportJobTrigger, wait_outcome


@pytest.fixture
def slow_aep(tmp_path, monkeypatch):
    """Export jobs that run for 60 s: long enough to be cancelled or given another status."""
    server = start_sandbox("aep", tmp_path, "--job-seconds", "60")
    yield seeded(server, monkeypatch, profiles=300)
    server.stop()


def start_job(aep) -> tuple[AepClient, int]:
    client = AepClient(AepHook())
    body = AepClient.export_job_body(
        [aep.audiences[0]["id"]], AepHook().settings.export_dataset_id, credentials.AEP_MERGE_POLICY_ID
    )
    return client, client.create_export_job(body)["id"]


def first_event(trigger: AepExportJobTrigger, within_s: float = 10.0) -> dict:
    async def run():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(asyncio.wait_for(run(), within_s))


def test_a_cancelled_job_ends_the_wait_with_an_error(slow_aep):
    client, job_id = start_job(slow_aep)
    answer = client.cancel_export_job(job_id)
    assert answer["status"] is True
    assert client.get_export_job(job_id)["status"] == "CANCELLED"
    started = time.monotonic()
    event = first_event(AepExportJobTrigger(job_id, poll_interval=0.2))
    assert time.monotonic() - started < 5
    assert event["status"] == "error" and event["job_id"] == job_id
    assert "was cancelled (status CANCELLED)" in event["message"]


@pytest.mark.parametrize("status", ["", "ARCHIVED", "CANCELLING"])
def test_a_blank_unknown_or_cancelling_status_ends_the_wait(slow_aep, status):
    client, job_id = start_job(slow_aep)
    slow_aep.server.admin("POST", "export-job-status", {"id": job_id, "status": status})
    event = first_event(AepExportJobTrigger(job_id, poll_interval=0.2))
    assert event["status"] == "error"
    expected = "was cancelled (status CANCELLING)" if status == "CANCELLING" else f"unknown status {status!r}"
    assert expected in event["message"]


def test_a_running_job_keeps_the_trigger_waiting_until_it_succeeds(slow_aep):
    client, job_id = start_job(slow_aep)
    trigger = AepExportJobTrigger(job_id, poll_interval=0.2)
    with pytest.raises(TimeoutError):  # PROCESSING: still waiting after a second
        first_event(trigger, within_s=1.0)
    slow_aep.server.admin("POST", "export-job-status", {"id": job_id, "status": "succeeded"})  # any case
    assert first_event(trigger) == {"status": "SUCCEEDED", "job_id": job_id, "errors": []}


def test_wait_outcome_and_the_status_enum():
    assert wait_outcome(1, {"status": "PROCESSING"}) is None
    assert wait_outcome(1, {"status": "queued"}) is None
    failed = wait_outcome(1, {"status": "FAILED", "errors": [{"code": "0100-000", "msg": "boom"}]})
    assert failed == {"status": "FAILED", "job_id": 1, "errors": [{"code": "0100-000", "msg": "boom"}]}
    assert wait_outcome(1, {})["status"] == "error"  # no status at all
    assert ExportJobStatus.parse(" processing ") is ExportJobStatus.PROCESSING
    assert ExportJobStatus.parse(None) is None and ExportJobStatus.parse("DONE") is None
    assert {s for s in ExportJobStatus if s.is_active} == {"NEW", "QUEUED", "PROCESSING"}
    assert ExportJobStatus.CANCELLED.is_terminal and not ExportJobStatus.NEW.is_terminal


def test_the_serialized_trigger_holds_ids_only():
    path, kwargs = AepExportJobTrigger(42, "aep_default", 3.0).serialize()
    assert path == "audience_sync.triggers.aep_export.AepExportJobTrigger"
    assert kwargs == {"job_id": 42, "aep_conn_id": "aep_default", "poll_interval": 3.0}
