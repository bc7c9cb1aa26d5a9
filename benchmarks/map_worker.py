"""One mapping run in its own process, so its peak resident memory is its own.

The peak is the process's VmHWM (see audience_sync.resources): a child of the benchmark, which holds
the seeded population, would otherwise report the parent's size.

    python -m benchmarks.map_worker {vectorised|baseline} OUT_DIR AUDIENCES_JSON PART [PART ...]
prints one JSON line: seconds, counts and peak RSS in bytes.
"""

from __future__ import annotations

import json
import sys
import time

from benchmarks.support import MAPPING_PATH, setup_paths


def main(argv: list[str]) -> None:
    setup_paths()
    from audience_sync.mapping import load_mapping, map_export
    from audience_sync.resources import peak_rss_bytes

    from benchmarks.mapping_baseline import map_export_baseline

    implementation, out_dir, audiences, *parts = argv
    function = {"vectorised": map_export, "baseline": map_export_baseline}[implementation]
    mapping = load_mapping(MAPPING_PATH)
    started = time.perf_counter()
    result = function(parts, mapping, json.loads(audiences), out_dir)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "counts": result.counts, "peak_rss_bytes": peak_rss_bytes()}))


if __name__ == "__main__":
    main(sys.argv[1:])
