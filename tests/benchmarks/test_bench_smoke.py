"""The benchmark code paths on toy sizes, so `make bench` cannot rot unseen. No timing is asserted."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from benchmarks.run import QUICK, run

TOY = replace(
    QUICK,
    upsert_contacts=300,
    mapping_profiles=3_000,
    mapping_baseline_profiles=1_000,
    incremental_profiles=1_500,
    e2e_profiles=600,
    download_profiles=2_000,
)


def test_every_benchmark_runs_and_records_its_figures(tmp_path, monkeypatch, airflow_db):
    for name in ("AIRFLOW_CONN_HUBSPOT_DEFAULT", "AIRFLOW_CONN_AEP_DEFAULT"):
        monkeypatch.setenv(name, "")  # restored after the test: the benchmarks set them for themselves
    out = tmp_path / "results"
    run(TOY, ["upsert", "mapping", "incremental", "e2e", "download"], out, tmp_path / "work")
    results = json.loads((out / "latest.json").read_text())

    assert results["machine"]["cpu_count"] >= 1 and results["machine"]["python"]
    for label in ("default_limit", "scaled_limit"):
        upsert = results["upsert"][label]
        assert upsert["records_lost"] == 0 and upsert["rejected"] == 0
        assert upsert["created"] == upsert["contacts"] == 300
        assert upsert["requests"] == 3 and upsert["status_429"] == 0
        assert upsert["records_per_second"] > 0 and upsert["ratio_to_ceiling"] > 0
        assert 0 < upsert["window_fill"]["peak"] <= int(upsert["rate_limit"].split("/")[0])
    assert (out / "upsert_rate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for label in ("400", "400_silent", "400_repeated", "400_unique"):
        isolation = results["upsert"][f"bad_1pct_whole_batch_{label}"]
        assert isolation["records_lost"] == 0 and isolation["rejected"] == isolation["bad_records"] == 3
        assert isolation["good_records"] == 297 and isolation["ratio_to_ceiling"] > 0
        assert 0 < isolation["ratio_to_ceiling_when_rate_bound"] < 1
        assert isolation["refused_requests"] >= 1
    named = results["upsert"]["bad_1pct_whole_batch_400"]
    assert named["extra_requests_per_isolated_reject"] <= 1  # the refusal names the value: one resend per batch

    mapping = results["mapping"]
    assert mapping["vectorised_counts"]["exported"] == 3_000
    assert mapping["counts_agree_on_sample"] is True
    assert mapping["vectorised_peak_rss_mib"] > 0 and mapping["ratio_per_profile_throughput"] > 0

    incremental = results["incremental"]
    assert incremental["records_lost"] == 0
    assert incremental["full_sync"]["records"] == incremental["full_sync"]["valid"] > 1_000
    changed = incremental["mutated_profiles_in_export"] + incremental["exited_memberships"]
    assert 0 < incremental["incremental"]["records"] <= changed
    assert incremental["incremental_upsert_calls_seen_by_hubspot"] == incremental["incremental"]["requests"]

    e2e = results["e2e"]["pool_slots_1"]
    assert e2e["state"] == "success"
    assert e2e["contacts_in_hubspot"] == e2e["records_sent"] == e2e["contacts_created"] > 300
    assert e2e["status_429"] == 0 and e2e["ratio_bound_over_wall"] > 0

    download = results["download"]
    assert download["exported_rows"] > 1_000 and download["parts"] >= 1 and download["rows_per_second"] > 0


@pytest.mark.slow
def test_the_real_executor_benchmarks_run_and_record_their_figures(tmp_path, monkeypatch, airflow_db):
    """The benchmarks that start processes (upsert tasks together; Airflow's scheduler with a LocalExecutor)."""
    for name in ("AIRFLOW_CONN_HUBSPOT_DEFAULT", "AIRFLOW_CONN_AEP_DEFAULT"):
        monkeypatch.setenv(name, "")
    out = tmp_path / "results"
    run(replace(TOY, million_exported=3_000), ["concurrency", "scheduler", "million"], out, tmp_path / "work")
    results = json.loads((out / "latest.json").read_text())

    for tasks in (1, 2, 4):
        together = results["concurrency"][f"tasks_{tasks}_of_4_slots"]
        assert together["records_lost"] == 0 and together["status_429"] == 0
        assert together["requests"] == tasks * math.ceil(math.ceil(300 / tasks) / 100)  # 3, 4 and 4 requests
    whole = results["scheduler"]
    assert whole["state"] == "success" and whole["status_429"] == 0 and whole["records_sent"] > 300
    assert whole["seconds_between_tasks"] > 0
    assert set(whole["task_peak_memory_mib"]) >= {"map_contacts", "upsert_contacts"}
    million = results["million"]
    assert million["full_run"]["state"] == million["changed_run"]["state"] == "success"
    assert 0 < million["changed_run"]["records_sent"] < million["full_run"]["records_sent"]
    assert 0 < million["worst_task_peak_memory_mib"] < 1536
