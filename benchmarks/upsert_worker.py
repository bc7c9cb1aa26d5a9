"""One upsert task's work in its own process, as a mapped ``upsert_contacts`` runs it: the real hook (its
own adaptive limiter, ``rate_share`` = 1 / pool slots) and ``upsert_file`` over one chunk.

    python -m benchmarks.upsert_worker HUBSPOT_URL RATE_SHARE THREADS INPUT OUT_DIR GO_FILE
once its hook is built, creates ``<GO_FILE>.ready-<pid>`` and waits for GO_FILE (so that N workers begin
together however long their imports took), then prints one JSON line: the upsert's summary and its seconds.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from benchmarks.support import hubspot_client, setup_paths


def main(argv: list[str]) -> None:
    setup_paths()
    from audience_sync.upsert import upsert_file

    url, share, threads, input_path, out_dir, go_file = argv
    client = hubspot_client(url, rate_share=float(share))
    go = Path(go_file)
    Path(f"{go}.ready-{os.getpid()}").touch()
    while not go.exists():
        time.sleep(0.01)
    started = time.perf_counter()
    summary = upsert_file(client, input_path, out_dir, threads=int(threads), progress_every_s=60.0)
    print(json.dumps({"seconds": time.perf_counter() - started, "summary": summary}, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
