"""One mapping run in its own process, so its peak resident memory is its own.

The peak is the process's VmHWM (/proc/self/status), not ru_maxrss: Linux carries ru_maxrss over a fork
and exec, so a child of the benchmark (which holds the seeded population) would report the parent's size.

    python -m benchmarks.map_worker {vectorised|baseline} OUT_DIR AUDIENCES_JSON PART [PART ...]
prints one JSON line: seconds, counts and peak RSS in bytes.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from benchmarks.support import MAPPING_PATH, setup_paths


def main(argv: list[str]) -> None:
    setup_paths()
    from audience_sync.mapping import load_mapping, map_export

    from benchmarks.mapping_baseline import map_export_baseline

    implementation, out_dir, audiences, *parts = argv
    function = {"vectorised": map_export, "baseline": map_export_baseline}[implementation]
    mapping = load_mapping(MAPPING_PATH)
    started = time.perf_counter()
    result = function(parts, mapping, json.loads(audiences), out_dir)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "counts": result.counts, "peak_rss_bytes": peak_rss_bytes()}))


def peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError("no VmHWM in /proc/self/status")


if __name__ == "__main__":
    main(sys.argv[1:])
