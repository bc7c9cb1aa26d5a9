"""The cost line each task logs: its process's own peak memory and CPU."""

from __future__ import annotations

import re

from audience_sync.resources import MIB, process_usage


def test_the_peak_grows_with_what_the_process_holds():
    before = process_usage()
    ballast = bytearray(64 * MIB)
    ballast[:: 4096] = b"x" * len(ballast[:: 4096])  # touch every page: resident, not just reserved
    after = process_usage()
    assert after.peak_rss_bytes - before.peak_rss_bytes >= 48 * MIB
    assert after.cpu_user_s + after.cpu_system_s >= before.cpu_user_s + before.cpu_system_s > 0
    del ballast


def test_the_line_names_memory_in_mib_and_cpu_in_seconds():
    line = process_usage().describe()
    assert re.fullmatch(r"task process peak memory \d+ MiB, CPU \d+\.\d s user \+ \d+\.\d s system", line), line
