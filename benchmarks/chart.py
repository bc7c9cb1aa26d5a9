"""PNG of an upsert run as HubSpot saw it: records per second, and requests in the rolling window vs the limit."""

from __future__ import annotations

from bisect import bisect_right
from pathlib import Path

from benchmarks.support import RECORDS_PER_REQUEST


def window_counts_at(times: list[float], grid: list[float], interval: float) -> list[int]:
    """Requests that arrived in (t - interval, t], for each t of ``grid`` (``times`` sorted)."""
    return [bisect_right(times, t) - bisect_right(times, t - interval) for t in grid]


def upsert_chart(runs: dict[str, dict], path: Path) -> Path:
    """One column per upsert run (``runs``: name → figures with ``request_times``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(runs), figsize=(6.5 * len(runs), 7), squeeze=False, sharex="col")
    for column, (name, run) in enumerate(runs.items()):
        times = run["request_times"]
        limit = int(run["rate_limit"].split("/")[0])
        interval = float(run["rate_limit"].split("/")[1].rstrip("s"))
        top, bottom = axes[0][column], axes[1][column]
        seconds = int(times[-1]) + 1 if times else 1
        per_second = [0] * seconds
        for t in times:
            per_second[int(t)] += RECORDS_PER_REQUEST
        top.bar(range(seconds), per_second, width=1.0, align="edge", color="#4c72b0", label="records sent, per second")
        top.axhline(limit * RECORDS_PER_REQUEST / interval, color="#c44e52", linestyle="--", label="ceiling (average)")
        top.set_ylabel("records / s")
        top.set_title(f"{name}: {run['contacts']:,} contacts at {run['rate_limit']}, {run['threads']} threads")
        top.legend(loc="upper right", fontsize=8)
        grid = [i / 10 for i in range(seconds * 10 + 1)]
        bottom.plot(
            grid,
            window_counts_at(times, grid, interval),
            color="#55a868",
            label=f"upserts in the last {interval:.0f} s",
        )
        bottom.axhline(limit, color="#c44e52", linestyle="--", label=f"HubSpot limit ({limit})")
        bottom.set_ylim(0, limit * 1.15)
        bottom.set_xlabel("seconds since the first upsert")
        bottom.set_ylabel("requests in rolling window")
        bottom.legend(loc="lower right", fontsize=8)
    fig.suptitle("Batch upserts as the HubSpot sandbox received them (from /_sandbox/requests)", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
