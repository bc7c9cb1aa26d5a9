"""Waits in the triggerer until no run of the given dataflows is in progress, freeing the worker slot while
AEP ingests. As the export trigger: the sync hook runs in a thread, and only ids and the connection id are
serialized. The event carries no run data: the operator reads the runs again to report them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from audience_sync.clients.flow_service import FlowServiceClient
from audience_sync.errors import PermanentError
from audience_sync.hooks.aep import AepHook
from audience_sync.hooks.base import ApiError
from audience_sync.ingest import check_run_status, is_active


def waiting_for(client: FlowServiceClient, flow_ids: list[str], not_before: dict[str, float]) -> list[str]:
    """The flows to keep waiting for: one with a run in progress, or without a run although its start time
    (``not_before``, epoch seconds) has passed. An unknown run status raises."""
    now = time.time()
    pending = []
    for flow_id in flow_ids:
        runs = client.list_runs(flow_id)
        for run in runs:
            check_run_status(run)
        if any(is_active(run) for run in runs) or (not runs and not_before.get(flow_id, now + 1) <= now):
            pending.append(flow_id)
    return pending


class FlowRunsTrigger(BaseTrigger):
    def __init__(
        self,
        flow_ids: list[str],
        not_before: dict[str, float],
        aep_conn_id: str = "aep_default",
        poll_interval: float = 30.0,
    ) -> None:
        super().__init__()
        self.flow_ids = list(flow_ids)
        self.not_before = dict(not_before)
        self.aep_conn_id = aep_conn_id
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "flow_ids": self.flow_ids,
                "not_before": self.not_before,
                "aep_conn_id": self.aep_conn_id,
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        client = FlowServiceClient(AepHook(self.aep_conn_id))
        while True:
            try:
                pending = await asyncio.to_thread(waiting_for, client, self.flow_ids, self.not_before)
            except (ApiError, PermanentError) as error:
                yield TriggerEvent({"status": "error", "message": str(error)})
                return
            if not pending:
                yield TriggerEvent({"status": "done"})
                return
            self.log.info("AEP flow(s) %s still running; next check in %.1f s", ", ".join(pending), self.poll_interval)
            await asyncio.sleep(self.poll_interval)
