"""Shared pieces of the benchmarks: import paths, the machine, seeded exports, sandboxes, rate figures.

Benchmarks print and record figures (ratios against a bound or a baseline measured in the same run);
they never assert on time and never run in CI.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAPPING_PATH = ROOT / "include" / "mappings" / "default.yaml"
STATUSES = ["realized", "existing", "exited"]
RECORDS_PER_REQUEST = 100
INTERVAL_S = 10.0  # HubSpot's rolling window
DEFAULT_LIMIT = 190  # requests per window: HubSpot's default for most accounts (usage guidelines)


def hubspot_sandbox_args(rate_limit: int) -> tuple[str, ...]:
    """The HubSpot sandbox's flags for a benchmark at ``rate_limit`` requests per window.

    --index-delay 0: the sandbox indexes each write for search as the next write arrives. With a delay,
    the first write after the limiter's idle gap indexes the whole previous window (~19,000 contacts) in
    about a second, a stall real HubSpot (which indexes asynchronously) does not have.
    """
    return ("--rate-limit", str(rate_limit), "--interval-ms", str(int(INTERVAL_S * 1000)), "--index-delay", "0")


def account_allowed(rate_limit: int) -> int:
    """Requests per window the limiter lets the whole account send (the limit less its safety margin)."""
    from audience_sync.ratelimit import RollingWindowLimiter

    return RollingWindowLimiter(rate_limit, INTERVAL_S).account_allowed


def setup_paths() -> None:
    """What tests/conftest.py does for pytest: the project's folders on sys.path and a private Airflow home,
    set before anything imports airflow."""
    for folder in ("plugins", "include", "tests", "."):
        path = str((ROOT / folder).resolve())
        if path not in sys.path:
            sys.path.insert(0, path)
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-home-bench-"))
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
    os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(ROOT / "plugins"))
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"


def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# --- data -----------------------------------------------------------------------------------------------
def seeded_export(
    workdir: Path, exported: int, seed: int = 7, dirty_rate: float = 0.01
) -> tuple[list[str], dict[str, str], Path]:
    """An AEP export of exactly ``exported`` nested XDM profiles (the sandbox's export shape) in Parquet parts.

    Returns (part paths, {audience id: property name}, the AEP state file). About 74 % of seeded profiles
    belong to an audience, so the population is seeded larger and the export cut to size.
    """
    from audience_sync.naming import audience_property_names
    from sandbox import seed as seeding

    db = workdir / "aep.sqlite3"
    seeded = seeding.seed_population(
        db, profiles=math.ceil(exported / 0.7) + 100, audiences=3, seed=seed, dirty_rate=dirty_rate
    )
    audiences = [{"id": a["id"], "name": a["name"]} for a in seeded.audiences]
    parts = export_parts(db, [a["id"] for a in audiences], workdir / "export", limit=exported)
    return parts, audience_property_names(audiences), db


def export_parts(
    db: Path, audience_ids: list[str], folder: Path, limit: int | None = None, part_rows: int = 100_000
) -> list[str]:
    """The export job's result for the population now in ``db``, as Parquet parts (like the AEP sandbox's)."""
    from sandbox import aep_store

    profiles, memberships = aep_store.load_population(aep_store.default_data_dir(db))
    table = aep_store.build_export_table(profiles, memberships, audience_ids, STATUSES)
    if limit is not None:
        if table.num_rows < limit:
            raise RuntimeError(f"the seeded population exports {table.num_rows} profiles, fewer than {limit}")
        table = table.slice(0, limit)
    return [str(p) for p in aep_store.write_parts(table, folder, part_rows)]


def mapped_contacts(workdir: Path, contacts: int) -> tuple[str, list[str]]:
    """One mapped Parquet chunk of exactly ``contacts`` valid contacts; returns (path, audience properties)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from audience_sync.mapping import load_mapping, map_export

    parts, properties, _ = seeded_export(workdir, math.ceil(contacts * 1.1) + 50)
    result = map_export(parts, load_mapping(MAPPING_PATH), properties, str(workdir / "map"))
    table = pa.concat_tables(pq.read_table(p) for p in result.mapped_paths)
    if table.num_rows < contacts:
        raise RuntimeError(f"mapping gave {table.num_rows} contacts, fewer than {contacts}")
    path = workdir / f"contacts-{contacts}.parquet"
    pq.write_table(table.slice(0, contacts), path)
    return str(path), list(properties.values())


# --- HubSpot ---------------------------------------------------------------------------------------------
def hubspot_client(url: str, **extra):
    """The real hook and client, configured like a task: ``AIRFLOW_CONN_HUBSPOT_DEFAULT`` as JSON."""
    from audience_sync.clients.hubspot import HubSpotClient
    from audience_sync.hooks.hubspot import HubSpotHook
    from sandbox.connections import hubspot_connection

    os.environ["AIRFLOW_CONN_HUBSPOT_DEFAULT"] = hubspot_connection(url, oauth=False, **extra)
    return HubSpotClient(HubSpotHook())


def ensure_audience_properties(client, names: list[str]) -> None:
    """Enumeration properties like the ones the DAG's EnsureAudiencePropertiesOperator makes."""
    if "benchmark_audiences" not in {g["name"] for g in client.list_groups()}:
        client.create_group("benchmark_audiences", "Benchmark audiences")
    for name in names:
        if client.get_property(name) is None:
            client.create_property(
                {
                    "name": name,
                    "label": name,
                    "type": "enumeration",
                    "fieldType": "select",
                    "groupName": "benchmark_audiences",
                    "options": [{"label": s.title(), "value": s} for s in STATUSES],
                }
            )


def upsert_requests(sandbox, since: float = 0.0) -> list[dict]:
    """The request log's batch upserts HubSpot accepted (any answer but 429), in arrival order."""
    log = sandbox.admin("GET", f"requests?since={since}")["requests"]
    accepted = [r for r in log if r["method"] == "POST" and r["path"].endswith("/batch/upsert") and r["status"] != 429]
    return sorted(accepted, key=lambda r: r["time"])


def upsert_times(sandbox, since: float = 0.0) -> list[float]:
    """Arrival times of the batch upserts HubSpot accepted."""
    return [r["time"] for r in upsert_requests(sandbox, since)]


def window_counts(times: list[float], interval_s: float) -> list[int]:
    """For each request, how many requests arrived in the window of ``interval_s`` ending with it."""
    counts, start = [], 0
    for end, t in enumerate(times):
        while times[start] <= t - interval_s:
            start += 1
        counts.append(end - start + 1)
    return counts


def window_fill(times: list[float], limit: int, allowed: int, interval_s: float) -> dict:
    """How the server's rolling windows filled: the peak (must stay ≤ limit), and how soon the limiter
    reused its budget: request i + ``allowed`` may leave one window after request i at the earliest, so
    the median of that gap gives the sustained rate as a share of the ceiling, free of the first window's
    burst and of the last, partial window."""
    peak = max(window_counts(times, interval_s), default=0)
    gaps = sorted(times[i + allowed] - times[i] for i in range(len(times) - allowed))
    recycle = gaps[len(gaps) // 2] if gaps else None
    return {
        "peak": peak,
        "peak_ratio": round(peak / limit, 4),
        "median_gap_s_between_request_i_and_i_plus_allowed": None if recycle is None else round(recycle, 3),
        "sustained_ratio": None if recycle is None else round(allowed / limit * interval_s / recycle, 4),
    }


def contacts_in_hubspot(sandbox) -> set[str]:
    return {c["properties"].get("email") for c in sandbox.admin("GET", "contacts")["contacts"]}


# --- subprocesses ----------------------------------------------------------------------------------------
def subprocess_env() -> dict[str, str]:
    """The environment of a benchmark's child process: the project's folders on its import path."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / f) for f in ("plugins", "include", "tests", "."))}


def run_json(args: list[str], timeout: float = 3600) -> dict:
    """Run ``python -m <args>`` from the repository root and parse the JSON its last stdout line holds."""
    done = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=timeout, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
