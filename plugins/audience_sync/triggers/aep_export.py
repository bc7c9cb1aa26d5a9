"""Waits in the triggerer for an AEP export job to end, freeing the worker slot while AEP segments.

The sync hook runs in a thread (``asyncio.to_thread``): one code path for auth, retries and errors, and it
works both in the triggerer and in ``dag.test()``, which runs triggers inline. Only the connection id and
the job id are serialized, never a token.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from audience_sync.clients.aep import AepClient
from audience_sync.constants import ExportJobStatus
from audience_sync.hooks.aep import AepHook
from audience_sync.hooks.base import ApiError


def wait_outcome(job_id: str | int, job: dict[str, Any]) -> dict[str, Any] | None:
    """What ends the wait for an export job, as the trigger's event payload; None while it still runs.

    SUCCEEDED and FAILED are reported as they are; a cancelled job, or a status that is blank or not one
    AEP documents, is an ``error`` naming it: waiting longer would only run into the deferral's timeout.
    """
    raw = job.get("status")
    status = ExportJobStatus.parse(raw)
    if status is not None and status.is_active:
        return None
    if status in (ExportJobStatus.SUCCEEDED, ExportJobStatus.FAILED):
        return {"status": status.value, "job_id": job_id, "errors": job.get("errors") or []}
    if status is None:
        message = f"AEP export job {job_id} reported an unknown status {raw!r}; expected one of " + ", ".join(
            ExportJobStatus
        )
    else:
        message = f"AEP export job {job_id} was cancelled (status {status.value}); start the run again"
    return {"status": "error", "job_id": job_id, "message": message}


class AepExportJobTrigger(BaseTrigger):
    """Polls ``GET /export/jobs/{id}`` until the job ends.

    :param job_id: the export job.
    :param aep_conn_id: the Airflow connection to AEP.
    :param poll_interval: seconds between two polls.
    """

    def __init__(self, job_id: str | int, aep_conn_id: str = "aep_default", poll_interval: float = 10.0) -> None:
        super().__init__()
        self.job_id = job_id
        self.aep_conn_id = aep_conn_id
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"job_id": self.job_id, "aep_conn_id": self.aep_conn_id, "poll_interval": self.poll_interval},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """One event when the job ends (see :func:`wait_outcome`); an API error ends the wait with an
        ``error`` event that the operator turns into a task failure."""
        client = AepClient(AepHook(self.aep_conn_id))
        while True:
            try:
                job = await asyncio.to_thread(client.get_export_job, self.job_id)
            except ApiError as error:
                yield TriggerEvent({"status": "error", "job_id": self.job_id, "message": str(error)})
                return
            outcome = wait_outcome(self.job_id, job)
            if outcome is not None:
                yield TriggerEvent(outcome)
                return
            self.log.info("AEP export job %s is %s; next check in %.0f s", self.job_id, job.get("status"), self.poll_interval)
            await asyncio.sleep(self.poll_interval)
