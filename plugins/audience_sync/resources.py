"""What a task process cost: its peak resident memory and CPU time, for the line each task logs at its end.

The peak is VmHWM from /proc/self/status, not ``ru_maxrss``: Linux carries ``ru_maxrss`` over fork and
exec, so a task forked from its supervisor (or a benchmark's child) would report its parent's size.
Elsewhere (macOS) ``ru_maxrss`` is the best there is.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass
from pathlib import Path

MIB = 2**20


@dataclass(frozen=True)
class ProcessUsage:
    peak_rss_bytes: int
    cpu_user_s: float
    cpu_system_s: float

    def describe(self) -> str:
        return (
            f"task process peak memory {self.peak_rss_bytes / MIB:.0f} MiB, "
            f"CPU {self.cpu_user_s:.1f} s user + {self.cpu_system_s:.1f} s system"
        )


def peak_rss_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024  # bytes on macOS, kB elsewhere


def process_usage() -> ProcessUsage:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return ProcessUsage(peak_rss_bytes(), usage.ru_utime, usage.ru_stime)
