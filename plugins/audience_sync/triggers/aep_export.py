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
from audience_sync.hooks.aep import AepHook
from audience_sync.hooks.base import ApiError

TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED"})


class AepExportJobTrigger(BaseTrigger):
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
        """Poll ``GET /export/jobs/{id}`` until SUCCEEDED or FAILED; an API error ends the wait with an
        ``error`` event that the operator turns into a task failure."""
        client = AepClient(AepHook(self.aep_conn_id))
        while True:
            try:
                job = await asyncio.to_thread(client.get_export_job, self.job_id)
            except ApiError as error:
                yield TriggerEvent({"status": "error", "job_id": self.job_id, "message": str(error)})
                return
            status = str(job.get("status", "")).upper()
            if status in TERMINAL_STATUSES:
                yield TriggerEvent({"status": status, "job_id": self.job_id, "errors": job.get("errors") or []})
                return
            self.log.info("AEP export job %s is %s; next check in %.0f s", self.job_id, status, self.poll_interval)
            await asyncio.sleep(self.poll_interval)
