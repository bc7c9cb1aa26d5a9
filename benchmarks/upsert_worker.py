"""One upsert task's work in its own process, as a mapped ``upsert_contacts`` runs it: the real hook (its
own adaptive limiter, ``rate_share`` = 1 / pool slots) and ``upsert_file`` over one chunk.

    python -m benchmarks.upsert_worker HUBSPOT_URL RATE_SHARE THREADS INPUT OUT_DIR START_AT
waits until the wall-clock time START_AT (so that N workers begin together), then prints one JSON line:
the upsert's summary and its seconds.
"""

from __future__ import annotations

import json
import sys
import time

from benchmarks.support import hubspot_client, setup_paths


def main(argv: list[str]) -> None:
    setup_paths()
    from audience_sync.upsert import upsert_file

    url, share, threads, input_path, out_dir, start_at = argv
    client = hubspot_client(url, rate_share=float(share))
    time.sleep(max(0.0, float(start_at) - time.time()))
    started = time.perf_counter()
    summary = upsert_file(client, input_path, out_dir, threads=int(threads), progress_every_s=60.0)
    print(json.dumps({"seconds": time.perf_counter() - started, "summary": summary}, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
