"""scripts/celery_stack.sh end to end: PostgreSQL, Redis and a Celery worker under the real scheduler.

Slow and outside CI: it apt-get installs PostgreSQL and Redis and pip installs requirements-celery.txt.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(os.geteuid() != 0 and not shutil.which("sudo"), reason="needs root or sudo for apt-get")
def test_celery_stack_runs_the_sync_on_celery_workers():
    work = Path(tempfile.mkdtemp(prefix="celery-stack-test.", dir="/tmp"))  # postgres must reach it
    try:
        check_run(work)
    finally:
        shutil.rmtree(work)


def check_run(work: Path) -> None:
    done = subprocess.run(
        [str(ROOT / "scripts" / "celery_stack.sh")],
        env={**os.environ, "CELERY_STACK_DIR": str(work), "PROFILES": "1000"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"=== hubspot_audience_sync run \S+: success ===", done.stdout)
    valid = re.search(r"\| profiles valid \| (\d+) \|", done.stdout)
    created = re.search(r"\| contacts created \| (\d+) \|", done.stdout)
    assert valid and created and valid.group(1) == created.group(1)
    # Every task ran on the Celery worker (the deferred export twice: start, then resume).
    worker_log = (work / "airflow" / "stack" / "celery-worker.log").read_text()
    assert len(re.findall(r"Task execute_workload\[\S+\] succeeded", worker_log)) >= 9
    assert "Loaded executor: :CeleryExecutor:" in (work / "airflow" / "stack" / "scheduler.log").read_text()
    # Nothing it started is left running.
    assert not subprocess.run(["pgrep", "-f", str(work)], capture_output=True, check=False).stdout
