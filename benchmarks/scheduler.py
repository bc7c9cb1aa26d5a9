"""The whole sync DAG under Airflow's real scheduler: LocalExecutor on SQLite, as ``make airflow`` runs it
(scheduler, dag-processor, api-server and triggerer as their own processes, parallelism twice the CPU
count, the ``hubspot_api`` pool at the config's slots), triggered and read back through the REST API.

Two benchmarks share it:

* ``scheduler``: about 100,000 contacts sent at HubSpot's default limit (190 requests / 10 s). The
  figure is the run's wall time against ``records / ceiling``, with the 429s and the time between tasks.
* ``million``: 1,000,000 exported profiles end to end. A first run fills HubSpot (at a raised limit: it
  measures memory, not the rate), then 1 % of the profiles change in AEP and a second run, at the default
  limit, exports, maps and plans the million and sends the changed share. Each task's peak memory is the
  line the resources listener logs in the task's own process (plugins/audience_sync_resources.py).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from benchmarks.support import (
    DEFAULT_LIMIT,
    INTERVAL_S,
    RECORDS_PER_REQUEST,
    ROOT,
    account_allowed,
    hubspot_sandbox_args,
    upsert_requests,
    window_fill,
)

PEAK_LINE = re.compile(r"task process peak memory (\d+) MiB")


def parallelism(pool_slots: int) -> int:
    """LocalExecutor workers as scripts/airflow_local.sh sizes them: twice the CPUs, at least the pool's slots + 2."""
    return max(2 * (os.cpu_count() or 1), pool_slots + 2)


def _parse(stamp: str | None) -> float | None:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else None


def idle_between_tasks(tasks: list[dict], start: float, end: float) -> float:
    """Seconds of [start, end] when no task instance of the run was running: scheduling, queueing and
    process start-up between tasks, as a user waiting on the run sees it."""
    busy = sorted((_parse(t["start_date"]), _parse(t["end_date"])) for t in tasks if t["start_date"] and t["end_date"])
    idle, cursor = 0.0, start
    for began, ended in busy:
        if began > cursor:
            idle += began - cursor
        cursor = max(cursor, ended)
    return idle + max(0.0, end - cursor)


def requests_per_window(times: list[float]) -> list[int]:
    """Requests in each consecutive window from the first one (the last window may be partial)."""
    if not times:
        return []
    windows = [0] * (math.floor((times[-1] - times[0]) / INTERVAL_S) + 1)
    for t in times:
        windows[math.floor((t - times[0]) / INTERVAL_S)] += 1
    return windows


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p90": None}
    return {"median": round(values[len(values) // 2], 4), "p90": round(values[int(len(values) * 0.9)], 4)}


def task_memory(api, dag_id: str, run_id: str, tasks: list[dict]) -> dict[str, float]:
    """Peak memory (MiB) per task from the resources listener's log line; a mapped task's worst index."""
    peaks: dict[str, float] = {}
    for t in tasks:
        if t["state"] != "success" or not t["try_number"]:
            continue
        log = api.task_log(dag_id, run_id, t["task_id"], t["try_number"], t["map_index"])
        found = PEAK_LINE.findall(log)
        if found:
            peaks[t["task_id"]] = max(peaks.get(t["task_id"], 0), float(found[-1]))
    return peaks


def task_seconds(tasks: list[dict]) -> dict[str, float]:
    """Seconds per task; a mapped task from its first index's start to its last index's end."""
    spans: dict[str, list[float]] = {}
    for t in tasks:
        began, ended = _parse(t["start_date"]), _parse(t["end_date"])
        if began is None or ended is None:
            continue
        span = spans.setdefault(t["task_id"], [began, ended])
        span[0], span[1] = min(span[0], began), max(span[1], ended)
    return {task: round(ended - began, 2) for task, (began, ended) in sorted(spans.items(), key=lambda kv: kv[1][0])}


class _Stack:
    """Both sandboxes, seeded, and the Airflow components, as ``make airflow`` would run them."""

    def __init__(self, workdir: Path, profiles: int, pool_slots: int, hubspot_limit: int, chunk_rows: int | None):
        from e2e_support import start_world

        from scripts.airflow_stack import AirflowStack, standalone_env

        workdir.mkdir(parents=True, exist_ok=True)
        settings = yaml.safe_load((ROOT / "include" / "sync_config.yaml").read_text())
        settings["hubspot_pool_slots"] = pool_slots
        if chunk_rows:
            settings["chunk_rows"] = chunk_rows
        config = workdir / "sync_config.yaml"
        config.write_text(yaml.safe_dump(settings))
        self.patch = pytest.MonkeyPatch()
        self.patch.setenv("AUDIENCE_SYNC_CONFIG", str(config))
        self.patch.setenv("AUDIENCE_SYNC_BASE_PATH", (workdir / "data").as_uri())
        self.patch.setenv("AIRFLOW__CORE__PARALLELISM", str(parallelism(pool_slots)))
        self.world = start_world(
            workdir,
            self.patch,
            profiles=profiles,
            hubspot_args=hubspot_sandbox_args(hubspot_limit),
            aep_args=("--part-rows", "250000", "--job-seconds", "0.3"),
        )
        self.airflow = AirflowStack(standalone_env(workdir / "airflow"), workdir / "airflow" / "stack")
        self.settings = settings

    def start(self) -> dict[str, float]:
        from scripts.airflow_stack import DAG_ID, start_stack

        return start_stack(self.airflow, DAG_ID)

    def restart_hubspot(self, limit: int) -> None:
        """The same HubSpot (its state file, its port, so the connection holds) at another rate limit."""
        from sandbox_process import start_sandbox

        hubspot = self.world.hubspot
        port = int(hubspot.url.rsplit(":", 1)[1])
        hubspot.stop()
        self.world.hubspot = start_sandbox("hubspot", Path(hubspot.db).parent, *hubspot_sandbox_args(limit), port=port)

    def run(self, conf: dict, timeout: float, limit: int) -> dict:
        """Trigger one run and wait; its figures."""
        from scripts.airflow_stack import DAG_ID, trigger_and_wait

        api = self.airflow.api
        since = time.time()
        before_429 = self.world.hubspot.admin("GET", "stats")["stats"].get("status_429", 0)
        outcome = trigger_and_wait(api, DAG_ID, conf, timeout)
        run, tasks = outcome["run"], outcome["tasks"]
        run_id = run["dag_run_id"]
        status_429 = self.world.hubspot.admin("GET", "stats")["stats"].get("status_429", 0) - before_429
        report_path = self.world.run_folder(run_id) / "report.json"
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
        contacts = report.get("contacts", {})
        records = int(contacts.get("to_send", 0))
        began, ended = _parse(run["start_date"]), _parse(run["end_date"])
        upserts = [t for t in tasks if t["task_id"] == "upsert_contacts" and t["start_date"] and t["end_date"]]
        upsert_began = min((_parse(t["start_date"]) for t in upserts), default=None)
        upsert_ended = max((_parse(t["end_date"]) for t in upserts), default=None)
        ceiling = limit * RECORDS_PER_REQUEST / INTERVAL_S
        bound = records / ceiling
        wall = ended - began if began and ended else outcome["timings"]["run_s"]
        accepted = upsert_requests(self.world.hubspot, since)
        times = [r["time"] for r in accepted]
        served = sorted(r["seconds"] for r in accepted)
        allowed = account_allowed(limit)
        upsert_s = (upsert_ended - upsert_began) if upserts else None
        return {
            "state": run["state"],
            "run_id": run_id,
            "exported_profiles": report.get("profiles", {}).get("exported"),
            "records_sent": records,
            "contacts": {k: contacts.get(k) for k in ("to_send", "created", "updated", "exited", "rejected")},
            "upsert_tasks": len(upserts),
            "upsert_requests": len(times),
            "status_429": status_429,
            "rate_limit": f"{limit}/{INTERVAL_S:.0f}s",
            "ceiling_records_per_second": ceiling,
            "wall_seconds": round(wall, 1),
            "trigger_to_done_seconds": round(outcome["timings"]["run_s"], 1),
            "bound_seconds_records_over_ceiling": round(bound, 1),
            "goal_seconds": round(1.10 * bound + 60, 1),
            "ratio_wall_to_bound": round(wall / bound, 3) if bound else None,
            "seconds_between_tasks": round(idle_between_tasks(tasks, began, ended), 1) if began and ended else None,
            "upsert_phase_seconds": round(upsert_s, 1) if upsert_s else None,
            "upsert_phase_ratio_to_ceiling": round(records / upsert_s / ceiling, 4) if upsert_s else None,
            "upsert_window_fill": window_fill(times, limit, allowed, INTERVAL_S),
            # the sandbox's own time per upsert: when it nears (threads × tasks) / (limit / window), the two
            # cores, not the limiter, set the pace
            "upsert_server_seconds": _quantiles(served),
            "upsert_requests_per_window": requests_per_window(times),
            "upsert_task_spans_s": sorted(
                (round(_parse(t["start_date"]) - upsert_began, 1), round(_parse(t["end_date"]) - upsert_began, 1))
                for t in upserts
            ),
            "task_seconds": task_seconds(tasks),
            "task_peak_memory_mib": task_memory(api, DAG_ID, run_id, tasks),
            "report_steps_s": {s["step"]: s["duration_s"] for s in report.get("steps", [])},
        }

    def stop(self) -> None:
        self.airflow.stop()
        self.world.stop()
        self.patch.undo()


def whole_dag(workdir: Path, profiles: int, pool_slots: int = 4) -> dict:
    """``profiles`` seeded (about 70 % become valid audience members), one full run at the default limit."""
    stack = _Stack(workdir, profiles, pool_slots, DEFAULT_LIMIT, chunk_rows=None)
    try:
        startup = stack.start()
        figures = stack.run({}, timeout=1800, limit=DEFAULT_LIMIT)
    finally:
        stack.stop()
    return {
        "seeded_profiles": profiles,
        "executor": "LocalExecutor",
        "parallelism": parallelism(pool_slots),
        "hubspot_pool_slots": pool_slots,
        "chunk_rows": stack.settings["chunk_rows"],
        "stack_start_seconds": round(startup["dag_parsed_s"], 1),
        **figures,
    }


def million(workdir: Path, exported: int, fill_limit: int = 2000, changed: float = 0.01) -> dict:
    """``exported`` profiles in the AEP export, a full run to fill HubSpot, then 1 % changed and a second run."""
    from sandbox import seed

    profiles = math.ceil(exported / 0.745)  # about 74.5 % of seeded profiles belong to an audience
    stack = _Stack(workdir, profiles, 4, fill_limit, chunk_rows=None)
    try:
        stack.start()
        first = stack.run({}, timeout=3600, limit=fill_limit)
        mutated = seed.mutate_population(stack.world.aep.db, fraction=changed, exit_fraction=changed / 2)
        stack.restart_hubspot(DEFAULT_LIMIT)
        second = stack.run({}, timeout=3600, limit=DEFAULT_LIMIT)
    finally:
        stack.stop()
    return {
        "seeded_profiles": profiles,
        "changed_profiles": len(mutated.changed_ids),
        "memory_goal_mib_per_task": 1536,
        "full_run": first,
        "changed_run": second,
        "worst_task_peak_memory_mib": max(
            [*first["task_peak_memory_mib"].values(), *second["task_peak_memory_mib"].values()], default=None
        ),
    }
