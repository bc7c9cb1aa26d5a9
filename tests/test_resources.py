"""The cost line each task logs: its process's own peak memory and CPU."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from audience_sync.resources import MIB, process_usage

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
# A fresh process: the peak is a high-water mark, and a test worker may already have peaked far above.
GROW = """
import json
from audience_sync.resources import MIB, process_usage
before = process_usage()
ballast = bytearray(64 * MIB)
ballast[::4096] = b"x" * len(ballast[::4096])  # touch every page: resident, not just reserved
after = process_usage()
print(json.dumps([before.peak_rss_bytes, after.peak_rss_bytes, before.cpu_user_s + before.cpu_system_s,
                  after.cpu_user_s + after.cpu_system_s]))
"""


def test_the_peak_grows_with_what_the_process_holds():
    env = {**os.environ, "PYTHONPATH": str(PLUGINS)}
    done = subprocess.run([sys.executable, "-c", GROW], env=env, capture_output=True, text=True, check=True)
    peak_before, peak_after, cpu_before, cpu_after = json.loads(done.stdout)
    assert peak_after - peak_before >= 48 * MIB
    assert cpu_after >= cpu_before > 0


def test_the_line_names_memory_in_mib_and_cpu_in_seconds():
    line = process_usage().describe()
    assert re.fullmatch(r"task process peak memory \d+ MiB, CPU \d+\.\d s user \+ \d+\.\d s system", line), line
