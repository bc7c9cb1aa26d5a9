"""Run the benchmarks and write ``benchmarks/results/latest.json`` and the upsert chart.

    python -m benchmarks.run [--quick] [--only NAME ...] [--out DIR]

Figures are ratios against a bound or against a baseline measured in the same run; nothing here asserts
on time, and CI never runs it (tests/benchmarks/test_bench_smoke.py runs the code paths on toy sizes).
Full sizes take about 40 minutes on 2 cores (the million profiles under the scheduler, 15 of them);
``--quick`` takes about four.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.support import DEFAULT_LIMIT, ROOT, machine, setup_paths

NAMES = ("upsert", "mapping", "incremental", "e2e", "download", "concurrency", "scheduler", "million")


@dataclass(frozen=True)
class Sizes:
    upsert_contacts: int = 50_000
    upsert_scaled_limit: int = 1_000
    mapping_profiles: int = 1_000_000
    mapping_baseline_profiles: int = 100_000
    incremental_profiles: int = 100_000
    e2e_profiles: int = 145_000  # seeded; about 100,000 of them are valid audience members
    e2e_pool_slots: tuple[int, ...] = (1, 4)
    download_profiles: int = 1_000_000
    scheduler_profiles: int = 145_000  # seeded; about 100,000 contacts sent
    million_exported: int = 1_000_000


FULL = Sizes()
QUICK = Sizes(
    upsert_contacts=2_000,
    upsert_scaled_limit=1_000,
    mapping_profiles=20_000,
    mapping_baseline_profiles=5_000,
    incremental_profiles=3_000,
    e2e_profiles=1_500,
    e2e_pool_slots=(1,),
    download_profiles=5_000,
    scheduler_profiles=1_500,
    million_exported=5_000,
)


def run(sizes: Sizes, only: list[str], out: Path, workdir: Path) -> dict:
    from benchmarks import scheduler, suites
    from benchmarks.chart import upsert_chart
    from benchmarks.support import mapped_contacts

    latest = out / "latest.json"
    # --only refreshes its own sections and keeps the others of the last run.
    keep = latest.exists() and set(only) != set(NAMES)
    results: dict = json.loads(latest.read_text()) if keep else {}
    results.update(machine=machine(), sizes=asdict(sizes), started_at=_now())
    if "upsert" in only:
        data = workdir / "upsert-data"
        path, properties = mapped_contacts(data, sizes.upsert_contacts)
        runs = {}
        for label, limit, threads in (
            ("default_limit", DEFAULT_LIMIT, 2),
            ("scaled_limit", sizes.upsert_scaled_limit, 4),
        ):
            print(f"[upsert] {sizes.upsert_contacts:,} contacts at {limit}/10s, {threads} threads", flush=True)
            runs[label] = suites.upsert_throughput(
                workdir / f"upsert-{label}", sizes.upsert_contacts, limit, threads, path, properties
            )
            print(_brief(runs[label]), flush=True)
        chart = upsert_chart(runs, out / "upsert_rate.png")
        results["upsert"] = {k: {n: v for n, v in r.items() if n != "request_times"} for k, r in runs.items()}
        results["upsert"]["chart"] = str(chart.relative_to(ROOT)) if chart.is_relative_to(ROOT) else str(chart)
        # 1% bad records, every email batch holding one refused as a whole; "mixed": half an option the property
        # lacks (the same value each time), half malformed emails (each its own)
        for mode, kinds in (("400", "mixed"), ("400_silent", "mixed"), ("400", "repeated"), ("400", "unique")):
            label = f"bad_1pct_whole_batch_{mode}" + ("" if kinds == "mixed" else f"_{kinds}")
            print(f"[upsert] {sizes.upsert_contacts:,} contacts, 1% bad ({kinds}), whole-batch refusals ({mode})",
                  flush=True)
            results["upsert"][label] = suites.upsert_isolation(
                workdir / f"upsert-{label}", sizes.upsert_contacts, sizes.upsert_scaled_limit, 4, path, properties,
                mode, kinds=kinds,
            )
            print(_brief(results["upsert"][label]), flush=True)
    if "concurrency" in only:
        path, properties = mapped_contacts(workdir / "concurrency-data", sizes.upsert_contacts)
        results["concurrency"] = {}
        for tasks in (1, 2, 4):  # the shipped 4 pool slots: a busy pool or the last chunks, and a full pool
            label = f"tasks_{tasks}_of_4_slots"
            print(f"[concurrency] {sizes.upsert_contacts:,} contacts at {DEFAULT_LIMIT}/10s, {tasks} task(s) at once",
                  flush=True)
            results["concurrency"][label] = suites.upsert_together(
                workdir / f"concurrency-{label}", sizes.upsert_contacts, DEFAULT_LIMIT, tasks, 4, path, properties
            )
            print(_brief(results["concurrency"][label]), flush=True)
    if "mapping" in only:
        print(
            f"[mapping] {sizes.mapping_profiles:,} profiles (baseline on {sizes.mapping_baseline_profiles:,})",
            flush=True,
        )
        results["mapping"] = suites.mapping_speed(
            workdir / "mapping", sizes.mapping_profiles, sizes.mapping_baseline_profiles
        )
        print(_brief(results["mapping"]), flush=True)
    if "incremental" in only:
        print(f"[incremental] {sizes.incremental_profiles:,} profiles, 1% changed", flush=True)
        results["incremental"] = suites.incremental_sync(workdir / "incremental", sizes.incremental_profiles)
        print(_brief(results["incremental"]), flush=True)
    if "e2e" in only:
        results["e2e"] = {}
        for slots in sizes.e2e_pool_slots:
            print(f"[e2e] dag.test() on {sizes.e2e_profiles:,} seeded profiles, hubspot_pool_slots={slots}", flush=True)
            figures = suites.end_to_end(workdir / f"e2e-{slots}", sizes.e2e_profiles, slots)
            results["e2e"][f"pool_slots_{slots}"] = figures
            print(_brief(figures), flush=True)
    if "download" in only:
        print(f"[download] AEP export of {sizes.download_profiles:,} seeded profiles through Data Access", flush=True)
        results["download"] = suites.export_download(workdir / "download", sizes.download_profiles)
        print(_brief(results["download"]), flush=True)
    if "scheduler" in only:
        print(f"[scheduler] the DAG under LocalExecutor, {sizes.scheduler_profiles:,} seeded profiles", flush=True)
        results["scheduler"] = scheduler.whole_dag(workdir / "scheduler", sizes.scheduler_profiles)
        print(_brief(results["scheduler"]), flush=True)
    if "million" in only:
        print(f"[million] {sizes.million_exported:,} exported profiles end to end under the scheduler", flush=True)
        results["million"] = scheduler.million(workdir / "million", sizes.million_exported)
        print(_brief(results["million"]), flush=True)
    for name in only:
        results[name]["measured_at"] = _now()
    results["finished_at"] = _now()
    out.mkdir(parents=True, exist_ok=True)
    latest.write_text(json.dumps(results, indent=2) + "\n")
    return results


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _brief(figures: dict) -> str:
    return "  " + json.dumps({k: v for k, v in figures.items() if k != "request_times"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes (seconds), for a smoke check")
    parser.add_argument("--only", action="append", choices=NAMES, help="run only this benchmark (repeatable)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="where latest.json goes")
    args = parser.parse_args(argv)
    setup_paths()
    workdir = Path(tempfile.mkdtemp(prefix="audience-sync-bench-"))
    try:
        run(QUICK if args.quick else FULL, args.only or list(NAMES), args.out, workdir)
    finally:
        from benchmarks.suites import cleanup

        cleanup(workdir)
    print(f"wrote {args.out / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
