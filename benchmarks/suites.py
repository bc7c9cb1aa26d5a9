"""The benchmarks on their own sandboxes: upsert throughput (one task, tasks together, bad records), mapping,
incremental sync, the whole DAG under ``dag.test()``, the AEP download (the real scheduler's: scheduler.py).

Each takes a working directory and its sizes, runs against the sandboxes on loopback and returns a
dict of figures (and, for the upsert, the request times the chart draws).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from benchmarks.support import (
    DEFAULT_LIMIT,
    INTERVAL_S,
    MAPPING_PATH,
    RECORDS_PER_REQUEST,
    ROOT,
    account_allowed,
    contacts_in_hubspot,
    ensure_audience_properties,
    export_parts,
    hubspot_client,
    hubspot_sandbox_args,
    run_json,
    seeded_export,
    subprocess_env,
    upsert_times,
    window_fill,
)



def _hubspot(workdir: Path, rate_limit: int, *args: str):
    from sandbox_process import start_sandbox

    workdir.mkdir(parents=True, exist_ok=True)
    return start_sandbox("hubspot", workdir, *hubspot_sandbox_args(rate_limit), *args)


# --- 1. upsert throughput ---------------------------------------------------------------------------------
def upsert_throughput(
    workdir: Path, contacts: int, rate_limit: int, threads: int, input_path: str, properties: list[str]
) -> dict:
    """``upsert_file`` with the real hook/client over HTTP against a sandbox enforcing ``rate_limit`` / 10 s."""
    from audience_sync.hooks.hubspot import DEFAULT_RATE_LIMIT
    from audience_sync.ratelimit import SAFETY_MARGIN
    from audience_sync.upsert import upsert_file

    sandbox = _hubspot(workdir, rate_limit)
    try:
        client = hubspot_client(sandbox.url)
        ensure_audience_properties(client, properties)
        # The setup calls count in HubSpot's window but not in the upsert hook's fresh limiter (it reads the
        # window's size from the answers, not how full it is): let the window empty first.
        time.sleep(INTERVAL_S)
        client = hubspot_client(sandbox.url)  # a fresh hook: its limiter starts from the configured default
        since = time.time()
        before_429 = sandbox.admin("GET", "stats")["stats"].get("status_429", 0)
        started = time.perf_counter()
        summary = upsert_file(client, input_path, workdir / "upsert", threads=threads, progress_every_s=5.0)
        elapsed = time.perf_counter() - started
        stats = sandbox.admin("GET", "stats")["stats"]
        times = upsert_times(sandbox, since)
        stored = contacts_in_hubspot(sandbox)
    finally:
        sandbox.stop()
    sent = {e.strip().lower() for e in pq.read_table(input_path, columns=["email"]).column("email").to_pylist()}
    rejected = summary["rejected"]
    ceiling = rate_limit * RECORDS_PER_REQUEST / INTERVAL_S
    rate = contacts / elapsed
    # Fastest schedule a rolling window allows from an empty window: request k leaves at floor(k / limit) × W.
    requests = summary["requests"]
    allowed = account_allowed(rate_limit)
    fastest_s = math.floor((requests - 1) / rate_limit) * INTERVAL_S
    return {
        "contacts": contacts,
        "rate_limit": f"{rate_limit}/{INTERVAL_S:.0f}s",
        "threads": threads,
        "limiter_default_before_first_answer": DEFAULT_RATE_LIMIT,
        "limiter_margin": SAFETY_MARGIN,
        "limiter_allowed_per_window": allowed,
        "seconds": round(elapsed, 2),
        "records_per_second": round(rate, 1),
        "ceiling_records_per_second": ceiling,
        "ratio_to_ceiling": round(rate / ceiling, 4),
        "bound_seconds_records_over_ceiling": round(contacts / ceiling, 2),
        "bound_seconds_rolling_window_from_empty": fastest_s,
        "window_fill": window_fill(times, rate_limit, allowed, INTERVAL_S),
        "requests": requests,
        "status_429": stats.get("status_429", 0) - before_429,
        "rejected": rejected,
        "created": summary["created"],
        "records_lost": len(sent - stored) - rejected,
        "request_times": [round(t - times[0], 4) for t in times] if times else [],
    }


# --- 1a. upsert tasks running together -------------------------------------------------------------------
def upsert_together(
    workdir: Path, contacts: int, rate_limit: int, tasks: int, pool_slots: int, input_path: str, properties: list[str]
) -> dict:
    """``tasks`` upsert tasks at once, each in its own process with its own hook and limiter and ``rate_share`` =
    1 / ``pool_slots`` (as the DAG's mapped ``upsert_contacts`` run), each on its share of ``input_path``.

    The account's rate is read window to window from HubSpot's side (the sandbox's request log), so the
    figure counts what the tasks achieved together, whatever each one's limiter believed."""
    table = pq.read_table(input_path).slice(0, contacts)
    share = math.ceil(contacts / tasks)
    workdir.mkdir(parents=True, exist_ok=True)
    chunks = [workdir / f"chunk-{n}.parquet" for n in range(tasks)]
    for n, chunk in enumerate(chunks):
        pq.write_table(table.slice(n * share, share), chunk)
    sandbox = _hubspot(workdir, rate_limit)
    try:
        ensure_audience_properties(hubspot_client(sandbox.url), properties)
        go = workdir / "go"
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "benchmarks.upsert_worker", sandbox.url, str(1 / pool_slots), "2", str(chunk),
                 str(workdir / f"out-{n}"), str(go)],
                cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for n, chunk in enumerate(chunks)
        ]
        time.sleep(INTERVAL_S)  # the setup calls leave the window while the workers start
        while len(list(workdir.glob("go.ready-*"))) < tasks:  # every worker has imported and built its hook
            if any(w.poll() is not None for w in workers):
                break
            time.sleep(0.05)
        started = time.time()
        go.touch()
        outputs = [w.communicate(timeout=3600) for w in workers]
        finished = time.time()
        stats = sandbox.admin("GET", "stats")["stats"]
        times = upsert_times(sandbox, started)
        stored = contacts_in_hubspot(sandbox)
    finally:
        sandbox.stop()
    failed = [err[-2000:] for w, (_, err) in zip(workers, outputs, strict=True) if w.returncode]
    if failed:
        raise RuntimeError("an upsert worker failed:\n" + failed[0])
    summaries = [json.loads(out.strip().splitlines()[-1])["summary"] for out, _ in outputs]
    sent = sum(s["sent"] for s in summaries)
    elapsed = max(times) - started if times else finished - started
    ceiling = rate_limit * RECORDS_PER_REQUEST / INTERVAL_S
    allowed = account_allowed(rate_limit)
    return {
        "contacts": contacts,
        "tasks": tasks,
        "hubspot_pool_slots": pool_slots,
        "rate_share_per_task": round(1 / pool_slots, 4),
        "rate_limit": f"{rate_limit}/{INTERVAL_S:.0f}s",
        "seconds": round(elapsed, 2),
        "records_per_second": round(sent / elapsed, 1),
        "ceiling_records_per_second": ceiling,
        "ratio_to_ceiling": round(sent / elapsed / ceiling, 4),
        "window_fill": window_fill(times, rate_limit, allowed, INTERVAL_S),
        "requests": len(times),
        "status_429": stats.get("status_429", 0),
        "records_lost": sent - sum(s["rejected"] for s in summaries) - len(stored),
    }


# --- 1b. isolating bad records from whole-batch refusals ----------------------------------------------------
BAD_KINDS = ("mixed", "repeated", "unique")


def with_bad_records(
    input_path: str, properties: list[str], fraction: float, out: Path, seed: int = 11, kinds: str = "mixed"
) -> tuple[str, list[int]]:
    """A copy of ``input_path`` where ``fraction`` of the rows (random, fixed seed) carry a value HubSpot refuses:
    an option the audience property lacks (INVALID_OPTION, the same value each time: "repeated"), a malformed
    email (INVALID_EMAIL, each its own: "unique"), or the two alternately ("mixed")."""
    import random

    if kinds not in BAD_KINDS:
        raise ValueError(f"kinds is one of {BAD_KINDS}, not {kinds!r}")
    table = pq.read_table(input_path).to_pandas()
    rows = sorted(random.Random(seed).sample(range(len(table)), max(1, round(len(table) * fraction))))
    for n, row in enumerate(rows):
        if kinds == "unique" or (kinds == "mixed" and n % 2):
            table.loc[row, "email"] = f"not-an-email-{n}"
        else:
            table.loc[row, properties[0]] = "platinum"
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out, index=False)
    return str(out), rows


def upsert_isolation(
    workdir: Path, contacts: int, rate_limit: int, threads: int, input_path: str, properties: list[str], mode: str,
    bad_fraction: float = 0.01, kinds: str = "mixed",
) -> dict:
    """``upsert_file`` on a chunk with ``bad_fraction`` bad records against a sandbox that refuses every email batch
    holding one as a whole (``--upsert-errors``: "400" names the bad values, "400_silent" names nothing).

    Reports good records per second against the ceiling (rate limit × 100 per 10 s) and the extra requests the
    isolation costs per rejected record (requests beyond one per batch, over the rejects)."""
    from audience_sync.upsert import upsert_file

    path, bad_rows = with_bad_records(input_path, properties, bad_fraction, workdir / "bad.parquet", kinds=kinds)
    bad = len(bad_rows)
    # each batch holding an unforeseeable bad record costs at least one refused request
    batches_with_bad = len({row // RECORDS_PER_REQUEST for row in bad_rows})
    sandbox = _hubspot(workdir, rate_limit, "--upsert-errors", mode)
    try:
        client = hubspot_client(sandbox.url)
        ensure_audience_properties(client, properties)
        time.sleep(INTERVAL_S * 5 / rate_limit)  # a high limit: the few setup calls barely touch the window
        client = hubspot_client(sandbox.url)
        started = time.perf_counter()
        summary = upsert_file(client, path, workdir / "upsert", threads=threads, progress_every_s=5.0)
        elapsed = time.perf_counter() - started
        refused = sum(1 for r in sandbox.admin("GET", "requests")["requests"] if r["status"] == 400)
        stored = contacts_in_hubspot(sandbox)
    finally:
        sandbox.stop()
    good = summary["created"] + summary["updated"]
    batches = math.ceil(contacts / RECORDS_PER_REQUEST)
    ceiling = rate_limit * RECORDS_PER_REQUEST / INTERVAL_S
    extra = summary["requests"] - batches
    return {
        "contacts": contacts,
        "mode": mode,
        "bad_kinds": kinds,
        "rate_limit": f"{rate_limit}/{INTERVAL_S:.0f}s",
        "threads": threads,
        "bad_records": bad,
        "rejected": summary["rejected"],
        "rejected_by_category": summary["rejected_by_category"],
        "good_records": good,
        "seconds": round(elapsed, 2),
        "good_records_per_second": round(good / elapsed, 1),
        "ceiling_records_per_second": ceiling,
        "ratio_to_ceiling": round(good / elapsed / ceiling, 4),
        # where the rate limit, not the machine, is the bottleneck: good records per request over 100
        "ratio_to_ceiling_when_rate_bound": round(good / summary["requests"] / RECORDS_PER_REQUEST, 4),
        "requests": summary["requests"],
        "refused_requests": refused,
        "requests_without_bad_records": batches,
        "extra_requests_per_isolated_reject": round(extra / max(summary["rejected"], 1), 2),
        "batches_holding_a_bad_record": batches_with_bad,
        "ratio_bound_if_each_such_batch_is_refused_once": round(
            (contacts - bad) / (batches + batches_with_bad) / RECORDS_PER_REQUEST, 4
        ),
        "records_lost": contacts - bad - len(stored),
    }


# --- 2. mapping ---------------------------------------------------------------------------------------------
def mapping_speed(workdir: Path, profiles: int, baseline_profiles: int) -> dict:
    """Vectorised ``map_export`` on ``profiles`` nested profiles vs the per-row baseline on a sample, each in
    its own process (peak RSS per process)."""
    started = time.perf_counter()
    parts, properties, db = seeded_export(workdir, profiles)
    sample = export_parts(db, list(properties), workdir / "sample", limit=baseline_profiles)
    generated_s = time.perf_counter() - started
    audiences = json.dumps(properties)
    fast = run_json(["benchmarks.map_worker", "vectorised", str(workdir / "fast"), audiences, *parts])
    fast_sample = run_json(["benchmarks.map_worker", "vectorised", str(workdir / "fast-sample"), audiences, *sample])
    slow = run_json(["benchmarks.map_worker", "baseline", str(workdir / "slow"), audiences, *sample])
    fast_rate = profiles / fast["seconds"]
    slow_rate = baseline_profiles / slow["seconds"]
    same_size_rate = baseline_profiles / fast_sample["seconds"]
    return {
        "profiles": profiles,
        "parts": len(parts),
        "generate_seconds": round(generated_s, 1),
        "vectorised_seconds": round(fast["seconds"], 2),
        "vectorised_profiles_per_second": round(fast_rate),
        "vectorised_peak_rss_mib": round(fast["peak_rss_bytes"] / 2**20, 1),
        "vectorised_counts": fast["counts"],
        "baseline_profiles": baseline_profiles,
        "baseline_seconds": round(slow["seconds"], 2),
        "baseline_profiles_per_second": round(slow_rate),
        "baseline_peak_rss_mib": round(slow["peak_rss_bytes"] / 2**20, 1),
        "ratio_per_profile_throughput": round(fast_rate / slow_rate, 1),
        "ratio_note": (
            f"vectorised throughput on {profiles:,} profiles / baseline throughput on a {baseline_profiles:,} sample"
        ),
        "vectorised_on_sample_seconds": round(fast_sample["seconds"], 3),
        "ratio_same_sample": round(same_size_rate / slow_rate, 1),
        "counts_agree_on_sample": fast_sample["counts"] == slow["counts"],
    }


# --- 3. incremental -----------------------------------------------------------------------------------------
def _sync_once(
    client, parts: list[str], properties: dict[str, str], previous: str | None, out: Path, threads: int
) -> dict:
    """What the DAG does, through the same functions: map → plan → upsert each chunk → committable snapshot."""
    from audience_sync import incremental
    from audience_sync.mapping import load_mapping, map_export
    from audience_sync.upsert import upsert_file

    mapped = map_export(parts, load_mapping(MAPPING_PATH), properties, str(out / "map"))
    planned = incremental.plan(
        mapped.mapped_paths,
        previous,
        list(properties.values()),
        False,
        str(out / "plan"),
        hold_emails=incremental.rejected_emails(mapped.rejects_path),
    )
    summaries = [upsert_file(client, p, out / "upsert", threads=threads) for p in planned.send_paths]
    rejected = [e for s in summaries for e in incremental.rejected_emails(s["rejects_path"])]
    snapshot = incremental.next_snapshot_without(planned.next_snapshot_path, rejected, previous)
    return {
        "valid": mapped.counts["valid"],
        "plan": planned.counts,
        "records": sum(s["sent"] for s in summaries),
        "requests": sum(s["requests"] for s in summaries),
        "rejected": sum(s["rejected"] for s in summaries),
        "snapshot": snapshot,
    }


def incremental_sync(workdir: Path, profiles: int, fraction: float = 0.01) -> dict:
    from sandbox import seed as seeding

    parts, properties, db = seeded_export(workdir, profiles)
    sandbox = _hubspot(workdir / "hubspot", 100_000)  # a high limit: this measures what is sent, not how fast
    try:
        client = hubspot_client(sandbox.url)
        ensure_audience_properties(client, list(properties.values()))
        full = _sync_once(client, parts, properties, None, workdir / "run1", threads=4)
        exported_ids = set()
        for part in parts:
            exported_ids |= set(pq.read_table(part, columns=["_id"]).column("_id").to_pylist())
        # ``fraction`` of the profiles changed: half of them in their attributes, half by leaving an audience
        # (an exited membership; the seeded profiles hold about 1.4 memberships each)
        mutated = seeding.mutate_population(db, fraction=fraction / 2, exit_fraction=fraction / 2 / 1.4)
        changed_in_export = len(exported_ids & set(mutated.changed_ids))
        parts2 = export_parts(db, list(properties), workdir / "export2", limit=profiles)
        since = time.time()
        second = _sync_once(client, parts2, properties, full["snapshot"], workdir / "run2", threads=4)
        upserts = len(upsert_times(sandbox, since))
        stored = contacts_in_hubspot(sandbox)
    finally:
        sandbox.stop()
    return {
        "profiles": profiles,
        "mutated_fraction": fraction,
        "mutated_profiles_in_export": changed_in_export,
        "exited_memberships": mutated.exited_memberships,
        "full_sync": {k: full[k] for k in ("valid", "records", "requests", "rejected")},
        "incremental": {k: second[k] for k in ("plan", "records", "requests", "rejected")},
        "incremental_upsert_calls_seen_by_hubspot": upserts,
        "records_per_profile": round(second["records"] / profiles, 5),
        "requests_per_profile": round(second["requests"] / profiles, 6),
        "records_vs_changed_profiles": round(
            second["records"] / max(changed_in_export + mutated.exited_memberships, 1), 3
        ),
        "contacts_in_hubspot": len(stored),
        "records_lost": full["valid"] - full["rejected"] - len(stored),
    }


# --- 4. the whole DAG ---------------------------------------------------------------------------------------
def _airflow_db() -> None:
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)


def end_to_end(workdir: Path, profiles: int, pool_slots: int) -> dict:
    """``dag.test()`` of the sync DAG against both sandboxes at HubSpot's default limit (190 / 10 s).

    ``pool_slots``: the config's ``hubspot_pool_slots``; each upsert task gets 1/slots of the limit.
    ``dag.test()`` runs mapped tasks one after another, so only 1 uses the whole budget there.
    """
    import pytest
    import yaml
    from e2e_support import run_sync, start_world

    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "sync_config.yaml"

    settings = yaml.safe_load((ROOT / "include" / "sync_config.yaml").read_text())
    settings["hubspot_pool_slots"] = pool_slots
    config.write_text(yaml.safe_dump(settings))
    patch = pytest.MonkeyPatch()
    patch.setenv("AUDIENCE_SYNC_CONFIG", str(config))
    patch.setenv("AUDIENCE_SYNC_BASE_PATH", (workdir / "data").as_uri())
    _airflow_db()
    world = start_world(workdir, patch, profiles=profiles, aep_args=("--part-rows", "100000", "--job-seconds", "0.3"))
    try:
        started = time.perf_counter()
        run = run_sync(world)
        elapsed = time.perf_counter() - started
        report = run["report"] or {}
        contacts = report.get("contacts", {})
        requests = world.hubspot_requests()
        upserts = [r for r in requests if r["method"] == "POST" and r["path"].endswith("/batch/upsert")]
        status_429 = sum(1 for r in requests if r["status"] == 429)
        stored = len(world.contacts())
    finally:
        world.stop()
        patch.undo()
    records = int(contacts.get("to_send", 0))
    bound = records / (DEFAULT_LIMIT * RECORDS_PER_REQUEST / INTERVAL_S)
    return {
        "seeded_profiles": profiles,
        "state": run["state"],
        "hubspot_pool_slots": pool_slots,
        "rate_share_per_upsert_task": round(1 / pool_slots, 4),
        "records_sent": records,
        "upsert_requests": len(upserts),
        "status_429": status_429,
        "contacts_in_hubspot": stored,
        "contacts_created": contacts.get("created"),
        "seconds": round(elapsed, 1),
        "lower_bound_seconds": round(bound, 1),
        "ratio_bound_over_wall": round(bound / elapsed, 3),
        "steps_s": {s["step"]: s["duration_s"] for s in report.get("steps", [])},
        "upsert_rate_per_s": report.get("upsert_rate_per_s"),
    }


def cleanup(path: Path) -> None:
    if os.environ.get("BENCH_KEEP") != "1":
        shutil.rmtree(path, ignore_errors=True)


# --- 5. AEP export download ----------------------------------------------------------------------------------
def export_download(workdir: Path, profiles: int, part_rows: int = 250_000) -> dict:
    """An AEP export job of three audiences over ``profiles`` seeded profiles, then every Parquet part
    downloaded through the Data Access API with the real hook and client (streamed, size-checked).
    The download is timed apart from the job, which the sandbox builds in a second or two."""
    from audience_sync.clients.aep import AepClient
    from audience_sync.config import load_sync_config
    from audience_sync.hooks.aep import AepHook
    from sandbox import connections, credentials
    from sandbox import seed as seeding
    from sandbox_process import start_sandbox

    workdir.mkdir(parents=True, exist_ok=True)
    seeded = seeding.seed_population(workdir / "aep.sqlite3", profiles=profiles, audiences=3, seed=5)
    sandbox = start_sandbox("aep", workdir, "--part-rows", str(part_rows), "--job-seconds", "0.1")
    try:
        os.environ["AIRFLOW_CONN_AEP_DEFAULT"] = connections.aep_connection(sandbox.url)
        client = AepClient(AepHook())
        job = client.create_export_job(
            AepClient.export_job_body(
                [a["id"] for a in seeded.audiences], credentials.AEP_DATASET_ID, credentials.AEP_MERGE_POLICY_ID
            )
        )
        while (job := client.get_export_job(job["id"]))["status"] not in ("SUCCEEDED", "FAILED"):
            time.sleep(0.2)
        started = time.perf_counter()
        (workdir / "download").mkdir(exist_ok=True)
        download = client.download_export(job, workdir / "download", load_sync_config().max_input_bytes)
        rows, size, parts = download.rows, download.bytes, len(download.paths)
        seconds = time.perf_counter() - started
    finally:
        sandbox.stop()
    return {
        "seeded_profiles": profiles,
        "exported_rows": rows,
        "parts": parts,
        "megabytes": round(size / 1e6, 1),
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds),
        "megabytes_per_second": round(size / 1e6 / seconds, 1),
    }
