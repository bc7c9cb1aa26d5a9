"""Airflow's own processes run against this repository, and a DAG run driven through the REST API.

Used by the real-scheduler test (tests/scheduler/, LocalExecutor on SQLite, as ``airflow standalone``
runs) and by scripts/celery_stack.sh (CeleryExecutor on PostgreSQL and Redis, as docker-compose.yaml
runs). Every process gets its own session so that ``stop()`` can end it with its children: the
api-server does not always exit on SIGTERM.

CLI (the caller exports the AIRFLOW_* settings, the AIRFLOW_CONN_* connections and AUDIENCE_SYNC_BASE_PATH;
``standalone_env`` adds what every stack needs)::

    python scripts/airflow_stack.py run --home DIR [--component "celery worker"] [--conf JSON]
        [--dag-id hubspot_audience_sync] [--timeout 600]
    python scripts/airflow_stack.py unscheduled-config --home DIR   # prints the path of the copy

migrates the database, starts the components, creates the pool, triggers the DAG, waits, prints the
outcome, the task instances and the run report, stops everything and exits 0 only on success.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
DAG_ID = "hubspot_audience_sync"
# What `airflow standalone` runs; a Celery stack adds "celery worker".
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
FINISHED = {"success", "failed"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def standalone_env(home: Path) -> dict[str, str]:
    """The settings every stack here needs, on top of ``os.environ`` (connections, base path, executor...).

    No token: the simple auth manager makes everyone admin. The api-server listens on a free loopback
    port, where tasks reach its execution API, and the log servers get free ports too, so that stacks
    running side by side never clash. The DAG runs unscheduled (a copy of the sync config with
    ``schedule: null`` in ``home``): unpaused, it would start its latest nightly run at once, ahead of ours.
    """
    api_port = free_port()
    sync_config = unscheduled_config(home)
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AUDIENCE_SYNC_CONFIG": str(sync_config),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "include"), str(ROOT / "plugins"), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }


def unscheduled_config(home: Path) -> Path:
    """A copy of the sync config (``AUDIENCE_SYNC_CONFIG`` or the shipped one) in ``home`` with
    ``schedule: null``: unpausing the DAG then starts nothing by itself."""
    home.mkdir(parents=True, exist_ok=True)
    sync_config = home / "sync_config.yaml"
    source = Path(os.environ.get("AUDIENCE_SYNC_CONFIG") or ROOT / "include" / "sync_config.yaml")
    sync_config.write_text(yaml.safe_dump({**yaml.safe_load(source.read_text()), "schedule": None}))
    return sync_config


def airflow(*args: str, env: dict[str, str]) -> None:
    """One ``airflow`` CLI command in the stack's environment; a failure raises with the end of its output."""
    command = [sys.executable, "-m", "airflow", *args]
    done = subprocess.run(command, check=False, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"`airflow {' '.join(args)}` exited {done.returncode}:\n{tail(done.stderr + done.stdout)}")


def tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class AirflowStack:
    """The Airflow components as processes, each logging to ``<log_dir>/<component>.log``."""

    env: dict[str, str]
    log_dir: Path
    components: Iterable[str] = COMPONENTS
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def api(self) -> AirflowApi:
        return AirflowApi(f"http://127.0.0.1:{self.env['AIRFLOW__API__PORT']}", self.check_alive)

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for component in self.components:
            with open(self.log_path(component), "ab") as log:
                self.processes[component] = subprocess.Popen(
                    [sys.executable, "-m", "airflow", *component.split()],
                    env=self.env,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

    def log_path(self, component: str) -> Path:
        return self.log_dir / f"{component.replace(' ', '-')}.log"

    def check_alive(self) -> None:
        for component, process in self.processes.items():
            if process.poll() is not None:
                log = self.log_path(component).read_text(errors="replace")
                raise RuntimeError(f"airflow {component} exited with {process.returncode}; its log ends:\n{tail(log)}")

    def stop(self, grace_s: float = 15) -> None:
        """SIGTERM to every process group, then SIGKILL to whatever is left after ``grace_s``."""
        for process in self.processes.values():
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(process, signal.SIGKILL)  # children (task supervisors, uvicorn) may outlive the leader
            process.wait()
        self.processes.clear()


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


class AirflowApi:
    """The few REST API v2 calls a triggered run needs; waits fail fast when a component has died."""

    def __init__(self, url: str, check_alive: Callable[[], None] = lambda: None) -> None:
        self.url = url
        self.check_alive = check_alive
        self.session = requests.Session()

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, f"{self.url}/api/v2/{path}", timeout=30, **kwargs)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.call(method, path, **kwargs)
        if not response.ok:
            raise RuntimeError(f"{method} /api/v2/{path}: HTTP {response.status_code} {response.text[:500]}")
        return response.json()

    def wait(self, what: str, timeout: float, probe: Callable[[], Any], every: float = 1.0) -> Any:
        """Call ``probe`` until it returns something truthy; a dead component or the timeout raises."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                found = probe()
            except requests.ConnectionError:
                found = None
            if found:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not done after {timeout:.0f} s")
            time.sleep(every)

    def wait_healthy(self, timeout: float = 90) -> None:
        self.wait("api-server health", timeout, lambda: self.call("GET", "monitor/health").ok)

    def wait_for_dag(self, dag_id: str, timeout: float = 90) -> dict:
        """Until the dag-processor has serialized the DAG; an import error of its file raises at once."""

        def parsed() -> dict | None:
            errors = self.json("GET", "importErrors")["import_errors"]
            if errors:
                raise RuntimeError("DAG import errors:\n" + "\n".join(e["stack_trace"] for e in errors))
            response = self.call("GET", f"dags/{dag_id}")
            return response.json() if response.ok else None

        return self.wait(f"DAG {dag_id} parsed", timeout, parsed)

    def set_pool(self, name: str, slots: int, description: str) -> dict:
        body = {"name": name, "slots": slots, "description": description}
        response = self.call("POST", "pools", json=body)
        if response.status_code == 409:  # already there: bring it to the wanted size
            return self.json("PATCH", f"pools/{name}", json=body)
        if not response.ok:
            raise RuntimeError(f"POST /api/v2/pools: HTTP {response.status_code} {response.text[:500]}")
        return response.json()

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        """A manual run (no logical date, like the UI's trigger button); its run id."""
        run = self.json("POST", f"dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self.json("GET", f"dags/{dag_id}/dagRuns/{run_id}")

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> dict:
        def finished() -> dict | None:
            run = self.dag_run(dag_id, run_id)
            return run if run["state"] in FINISHED else None

        return self.wait(f"run {run_id}", timeout, finished, every=2.0)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        """Every task instance of the run, page by page (the API caps a page at ``api.maximum_page_limit``, 100)."""
        found: list[dict] = []
        while True:
            page = self.json(
                "GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100, "offset": len(found)}
            )
            found += page["task_instances"]
            if not page["task_instances"] or len(found) >= page["total_entries"]:
                return found

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """The task's log as text, one line per structured event (``map_index`` ≥ 0 for a mapped task)."""
        body = self.json(
            "GET",
            f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"map_index": map_index, "full_content": "true"},
            headers={"Accept": "application/json"},
        )
        return "\n".join(_log_line(event) for event in body["content"])

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.json("GET", path, params={"deserialize": "true"})["value"]


def _log_line(event: dict | str) -> str:
    if isinstance(event, str):
        return event
    return " ".join(str(event[k]) for k in ("timestamp", "level", "event") if event.get(k) is not None)


def task_table(instances: list[dict]) -> str:
    rows = sorted(instances, key=lambda t: (t["start_date"] or "9", t["task_id"], t["map_index"]))
    lines = [f"{'task':<28} {'map':>3} {'state':<18} {'try':>3} {'seconds':>7}"]
    for t in rows:
        seconds = f"{t['duration']:.1f}" if t.get("duration") is not None else "-"
        state = t["state"] or "none"
        lines.append(f"{t['task_id']:<28} {t['map_index']:>3} {state:<18} {t['try_number']:>3} {seconds:>7}")
    return "\n".join(lines)


def run_once(stack: AirflowStack, dag_id: str, conf: dict, timeout: float) -> dict[str, Any]:
    """Migrate, start, create the pool, trigger, wait: the run, its task instances and phase timings."""
    timings = start_stack(stack, dag_id)
    outcome = trigger_and_wait(stack.api, dag_id, conf, timeout)
    run_s = outcome["timings"]["run_s"]
    outcome["timings"] = {**timings, "run_s": run_s, "total_s": timings["dag_parsed_s"] + run_s}
    return outcome


def start_stack(stack: AirflowStack, dag_id: str) -> dict[str, float]:
    """Migrate the database, start the components, size the pool from the sync config, wait for the DAG;
    seconds since the start at each phase."""
    from audience_sync.config import load_sync_config  # needs plugins/ on sys.path, as the stack has

    timings: dict[str, float] = {}
    started = time.monotonic()
    airflow("db", "migrate", env=stack.env)
    timings["db_migrate_s"] = time.monotonic() - started
    stack.start()
    api = stack.api
    api.wait_healthy()
    timings["api_healthy_s"] = time.monotonic() - started
    config = load_sync_config(stack.env["AUDIENCE_SYNC_CONFIG"])
    api.set_pool(config.hubspot_pool, config.hubspot_pool_slots, "HubSpot API: slots share the account's rate limit")
    api.wait_for_dag(dag_id)
    timings["dag_parsed_s"] = time.monotonic() - started
    return timings


def trigger_and_wait(api: AirflowApi, dag_id: str, conf: dict, timeout: float) -> dict[str, Any]:
    """One manual run on a started stack: the run, its task instances, and the seconds from trigger to done."""
    run_id = api.trigger(dag_id, conf)
    triggered = time.monotonic()
    run = api.wait_for_run(dag_id, run_id, timeout)
    run_s = time.monotonic() - triggered
    return {"run": run, "tasks": api.task_instances(dag_id, run_id), "timings": {"run_s": run_s}}


def print_outcome(api: AirflowApi, dag_id: str, outcome: dict[str, Any]) -> None:
    run, tasks = outcome["run"], outcome["tasks"]
    print(f"\n=== {dag_id} run {run['dag_run_id']}: {run['state']} ===")
    print(task_table(tasks))
    print("timings: " + ", ".join(f"{k} {v:.1f}" for k, v in outcome["timings"].items()))
    for t in tasks:
        if t["state"] in ("failed", "upstream_failed") and t["try_number"]:
            log = api.task_log(dag_id, run["dag_run_id"], t["task_id"], t["try_number"], t["map_index"])
            print(f"\n--- log of {t['task_id']} (map {t['map_index']}, try {t['try_number']}), last lines ---")
            print(tail(log, 40))
    if any(t["task_id"] == "run_report" and t["state"] == "success" for t in tasks):
        from audience_sync.storage import as_path

        report_md = as_path(api.xcom(dag_id, run["dag_run_id"], "run_report")["report"]).with_suffix(".md")
        print(f"\n--- {report_md} ---")
        print(report_md.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["run", "unscheduled-config"])
    parser.add_argument("--home", type=Path, required=True, help="AIRFLOW_HOME (logs go to <home>/stack)")
    parser.add_argument("--component", action="append", default=[], help="run this too, e.g. 'celery worker'")
    parser.add_argument("--dag-id", default=DAG_ID)
    parser.add_argument("--conf", type=json.loads, default={}, help="the run's conf (JSON)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the run")
    args = parser.parse_args(argv)
    if args.command == "unscheduled-config":
        print(unscheduled_config(args.home))
        return 0
    stack = AirflowStack(standalone_env(args.home), args.home / "stack", [*COMPONENTS, *args.component])
    print("starting: " + ", ".join(f"airflow {shlex.join(c.split())}" for c in stack.components), flush=True)
    try:
        outcome = run_once(stack, args.dag_id, args.conf, args.timeout)
        print_outcome(stack.api, args.dag_id, outcome)
    finally:
        stack.stop()
    return 0 if outcome["run"]["state"] == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
